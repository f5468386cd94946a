"""Train the priority model on our own corpus and write it to models/ with its model card."""

from __future__ import annotations

import argparse
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from classifier.corpus import CORPUS_DIR, Example, corpus_digest, load_corpus
from classifier.model import ALLOWED_TYPES, ORDER, decide
from classifier.pipeline import build_pipeline

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def cross_validated_metrics(examples: list[Example], folds: int = 5) -> dict[str, Any]:
    """Out-of-fold scores of the full decision (calibration plus the cost-sensitive choice)."""
    texts = [e.text for e in examples]
    labels = np.asarray([e.priority.value for e in examples])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=7)
    proba = cross_val_predict(build_pipeline(), texts, labels, cv=splitter, method="predict_proba")
    classes = sorted(set(labels))
    proba = proba[:, [classes.index(p.value) for p in ORDER]]
    predicted = np.asarray([decide(p).value for p in proba])
    names = [p.value for p in ORDER]
    return {
        "folds": folds,
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "recall": {
            n: round(float(r), 4)
            for n, r in zip(
                names, recall_score(labels, predicted, labels=names, average=None), strict=True
            )
        },
        "confusion_matrix": {
            "labels": names,
            "rows_true_columns_proposed": confusion_matrix(
                labels, predicted, labels=names
            ).tolist(),
        },
    }


def train(
    corpus_dir: Path = CORPUS_DIR,
    out_dir: Path = MODELS_DIR,
    name: str = "priority",
    evaluate: bool = True,
) -> Path:
    examples = load_corpus(corpus_dir)
    if not examples:
        raise SystemExit(f"no training examples in {corpus_dir}")
    digest = corpus_digest(examples)
    pipeline = build_pipeline().fit(
        [e.text for e in examples], [e.priority.value for e in examples]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.skops"
    sio.dump(pipeline, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    unexpected = {
        t
        for t in sio.get_untrusted_types(file=path)
        if t not in ALLOWED_TYPES and not t.startswith("sklearn.")
    }
    if unexpected:
        path.unlink()
        raise SystemExit(f"the pipeline contains unreviewed types: {sorted(unexpected)}")
    now = datetime.now(UTC)
    counts = {p.value: sum(e.priority is p for e in examples) for p in ORDER}
    card = {
        "version": f"{name}-{now:%Y%m%d}-{digest[:8]}",
        "trained_at": now.isoformat(timespec="seconds"),
        "corpus_sha256": digest,
        "examples": len(examples),
        "per_priority": counts,
        "languages": {
            lang: sum(e.lang == lang for e in examples)
            for lang in sorted({e.lang for e in examples})
        },
        "scikit_learn": sklearn.__version__,
        "cross_validation": cross_validated_metrics(examples) if evaluate else None,
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--no-eval", action="store_true", help="skip the cross-validation")
    args = parser.parse_args()
    path = train(args.corpus, args.out, evaluate=not args.no_eval)
    print(path.with_suffix(".json").read_text())


if __name__ == "__main__":
    main()
