"""Choose the model by measurement: grouped cross-validation of the candidate pipelines.

    python -m classifier.compare [--folds 5] [--out var/compare.json]

Folds are grouped by the corpus rows' `scenario` (StratifiedGroupKFold), so retellings of one
situation never sit on both sides. Every candidate is judged as the product uses it: the
cost-sensitive decision and the security floor of classifier/model.py on calibrated
probabilities; reported overall, per language and per style: macro-F1, Kritisch recall, ECE.
Also measured: training time on all rows, the median time for one request and the throughput
of a batch. The service head is measured the same way on the rows that have a service.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy import sparse
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import FeatureUnion

from classifier.corpus import CORPUS_DIR, Example, load_corpus
from classifier.evaluate import metrics, metrics_by
from classifier.features import has_security_incident
from classifier.model import ORDER, apply_floors, decide
from classifier.pipeline import build_features, build_model
from classifier.train import fit_service_head

# name: (feature variant, model variants averaged)
CANDIDATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "current: words1-2 + char_wb3-5 + criteria, LR": ("words+charwb35", ("lr",)),
    "words1-2 + char2-5 + criteria, LR": ("words+char25", ("lr",)),
    "words1-2 + char2-5 + criteria, LinearSVC": ("words+char25", ("svc",)),
    "words1-2 + char_wb3-5 + criteria, LinearSVC": ("words+charwb35", ("svc",)),
    "ensemble: mean of LR + LinearSVC (char2-5)": ("words+char25", ("lr", "svc")),
    "ensemble: mean of LR + LinearSVC (char_wb3-5)": ("words+charwb35", ("lr", "svc")),
}
PRIORITIES = [p.value for p in ORDER]


def _transform(union: FeatureUnion, texts: Sequence[str]) -> sparse.csr_matrix:
    return sparse.hstack([t.transform(texts) for _, t in union.transformer_list]).tocsr()


def _probabilities(models: list[Any], x: sparse.csr_matrix) -> np.ndarray:
    total = np.zeros((x.shape[0], len(ORDER)))
    for model in models:
        classes = list(model.classes_)
        total += np.asarray(model.predict_proba(x))[:, [classes.index(p) for p in PRIORITIES]]
    return total / len(models)


def _decide_all(probs: np.ndarray, texts: Sequence[str]) -> tuple[list[str], list[float]]:
    proposed, confidence = [], []
    for row, text in zip(probs, texts, strict=True):
        criteria = ("Sicherheits-/Datenschutzvorfall",) if has_security_incident(text) else ()
        priority = apply_floors(decide(row), criteria)
        proposed.append(priority.value)
        confidence.append(float(row[ORDER.index(priority)]))
    return proposed, confidence


def _summary(
    truth: list[str], proposed: list[str], confidence: list[float], examples: list[Example]
) -> dict[str, Any]:
    def short(m: dict[str, Any]) -> dict[str, Any]:
        keys = ("n", "macro_f1", "kritisch_recall", "calibration_error", "accuracy")
        return {k: m[k] for k in keys}

    overall = metrics(truth, proposed, confidence)
    return {
        **short(overall),
        "confusion_matrix": overall["confusion_matrix"]["rows_true_columns_proposed"],
        "by_language": {
            k: short(v)
            for k, v in metrics_by([e.lang for e in examples], truth, proposed, confidence).items()
        },
        "by_style": {
            k: short(v)
            for k, v in metrics_by([e.style for e in examples], truth, proposed, confidence).items()
        },
    }


def _timings(union: FeatureUnion, models: list[Any], texts: list[str]) -> dict[str, float]:
    def predict(batch: list[str]) -> np.ndarray:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return _probabilities(models, _transform(union, batch))

    singles = []
    for text in texts[:200]:
        start = time.perf_counter()
        predict([text])
        singles.append(time.perf_counter() - start)
    batch = (texts * (4000 // max(1, len(texts)) + 1))[:4000]
    start = time.perf_counter()
    predict(batch)
    elapsed = time.perf_counter() - start
    return {
        "single_ms_median": round(1000 * statistics.median(singles), 3),
        "batch_per_second": round(len(batch) / elapsed),
    }


def compare(
    examples: list[Example],
    folds: int = 5,
    candidates: dict[str, tuple[str, tuple[str, ...]]] = CANDIDATES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Each feature variant and base model is fitted once per fold; an ensemble averages the
    probabilities of base models fitted for the single candidates."""
    y = np.asarray([e.priority.value for e in examples])
    groups = np.asarray([e.scenario for e in examples])
    splits = list(
        StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=7).split(
            np.zeros(len(y)), y, groups
        )
    )
    texts = [e.text for e in examples]
    needed = {(f, m) for f, ms in candidates.values() for m in ms}
    oof: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[tuple[str, str], float] = {}
    full: dict[tuple[str, str], tuple[Any, Any]] = {}
    for variant in sorted({f for f, _ in needed}):
        models = sorted(m for f, m in needed if f == variant)
        for model in models:
            oof[(variant, model)] = np.zeros((len(examples), len(ORDER)))
        for number, (train_idx, test_idx) in enumerate(splits, 1):
            union = build_features(variant)
            x_train = union.fit_transform([texts[i] for i in train_idx]).tocsr()
            x_test = _transform(union, [texts[i] for i in test_idx])
            for model in models:
                fitted = build_model(model).fit(x_train, y[train_idx])
                oof[(variant, model)][test_idx] = _probabilities([fitted], x_test)
            log(f"  {variant}: fold {number}/{folds} done")
        for model in models:
            started = time.perf_counter()
            union = build_features(variant)
            x_all = union.fit_transform(texts).tocsr()
            fitted = build_model(model).fit(x_all, y)
            seconds[(variant, model)] = time.perf_counter() - started
            full[(variant, model)] = (union, fitted)
    results: dict[str, Any] = {}
    for name, (variant, heads) in candidates.items():
        probs = np.mean([oof[(variant, m)] for m in heads], axis=0)
        proposed, confidence = _decide_all(probs, texts)
        union = full[(variant, heads[0])][0]
        results[name] = {
            **_summary(list(y), proposed, confidence, examples),
            # the features are fitted once for all heads; the models each on them
            "train_seconds_all_rows": round(sum(seconds[(variant, m)] for m in heads), 1),
            **_timings(union, [full[(variant, m)][1] for m in heads], texts),
        }
        r = results[name]
        log(
            f"{name}: macro-F1 {r['macro_f1']:.3f}  Kritisch recall {r['kritisch_recall']:.3f}  "
            f"ECE {r['calibration_error']:.3f}  train {r['train_seconds_all_rows']:.0f}s  "
            f"single {r['single_ms_median']} ms  batch {r['batch_per_second']}/s"
        )
    results["service head"] = _compare_service(examples, splits, log)
    return {"rows": len(examples), "folds": folds, "grouped_by": "scenario", "results": results}


def _compare_service(
    examples: list[Example], splits: list[tuple[np.ndarray, np.ndarray]], log: Callable[[str], None]
) -> dict[str, Any]:
    """The service head on the chosen features, judged on the rows with a service label."""
    truth: list[str] = []
    proposed: list[str] = []
    confidence: list[float] = []
    labelled: list[Example] = []
    for train_idx, test_idx in splits:
        rows = [examples[i] for i in train_idx]
        union = build_features()
        x = union.fit_transform([e.text for e in rows]).tocsr()
        head = fit_service_head(x, [e.service for e in rows])
        test = [examples[i] for i in test_idx if examples[i].service]
        if head is None or not test:
            continue
        probs = np.asarray(head.predict_proba(_transform(union, [e.text for e in test])))
        classes = [str(c) for c in head.classes_]
        for e, row in zip(test, probs, strict=True):
            truth.append(str(e.service))
            proposed.append(classes[int(row.argmax())])
            confidence.append(float(row.max()))
            labelled.append(e)
    labels = sorted(set(truth))
    from sklearn.metrics import f1_score

    correct = np.asarray([t == p for t, p in zip(truth, proposed, strict=True)], dtype=float)
    from classifier.evaluate import expected_calibration_error

    per_class = f1_score(truth, proposed, labels=labels, average=None, zero_division=0)
    report = {
        "n": len(truth),
        "accuracy": round(float(correct.mean()), 4) if truth else 0.0,
        "macro_f1": round(float(np.mean(per_class)), 4) if truth else 0.0,
        "calibration_error": round(expected_calibration_error(np.asarray(confidence), correct), 4),
        "per_class_f1": {
            label: round(float(f), 4) for label, f in zip(labels, per_class, strict=True)
        },
    }
    log(
        f"service head: accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
        f"ECE {report['calibration_error']:.3f}"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=CORPUS_DIR)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", action="append", help="candidate names containing this")
    parser.add_argument("--out", type=Path, default=Path("var/compare.json"))
    args = parser.parse_args(argv)
    chosen = {
        k: v for k, v in CANDIDATES.items() if not args.only or any(o in k for o in args.only)
    }
    report = compare(load_corpus(args.data), args.folds, chosen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
