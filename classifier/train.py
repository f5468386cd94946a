"""Train a model version on our corpus (plus staff corrections), judge it on a fixed held-out
split, and activate it only if it is not worse than the active one."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from classifier.corpus import CORPUS_DIR, Example, corpus_digest, load_corpus
from classifier.evaluate import metrics, read_labelled
from classifier.model import ALLOWED_TYPES, ORDER, ModelRefused, PriorityModel
from classifier.pipeline import build_pipeline
from classifier.registry import ModelRegistry

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
HELD_OUT_PERCENT = 20
CORRECTION_WEIGHT = 3.0  # a staff decision counts three corpus rows
SERVICE_MIN_ROWS = 3  # a service with fewer labelled rows is not proposed (nothing to learn)


def is_held_out(example_id: str) -> bool:
    """A fixed split by the row's id, independent of file order and of rows added later."""
    return int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    train = [e for e in examples if not is_held_out(e.id)]
    held = [e for e in examples if is_held_out(e.id)]
    return train, held


def extra_examples(path: Path) -> list[Example]:
    """Labelled rows from a CSV or JSON Lines file (classifier.evaluate.read_labelled), e.g.
    what `intake znuny import` wrote, as training examples."""
    return [
        Example(
            id=f"extra-{path.stem}-{number}",
            lang=row.lang,
            style=row.style,
            subject=row.subject,
            body=row.body,
            priority=row.priority,
            hard_case=None,
        )
        for number, row in enumerate(read_labelled(path), 1)
    ]


def fit(examples: Sequence[Example], weights: Sequence[float] | None = None) -> Pipeline:
    """Deterministic: fixed seeds, unshuffled calibration folds."""
    pipeline = build_pipeline()
    params = {"model__sample_weight": list(weights)} if weights is not None else {}
    pipeline.fit([e.text for e in examples], [e.priority.value for e in examples], **params)
    # numpy integers in the vocabulary become one skops node each (slow to load, large file);
    # plain ints are stored as JSON.
    for _, transformer in pipeline.named_steps["features"].transformer_list:
        if hasattr(transformer, "vocabulary_"):
            transformer.vocabulary_ = {term: int(i) for term, i in transformer.vocabulary_.items()}
    return pipeline


def fit_service_head(
    features: sparse.csr_matrix,
    services: Sequence[str | None],
    weights: Sequence[float] | None = None,
    seed: int = 13,
) -> CalibratedClassifierCV | None:
    """The second head: a calibrated classifier over the priority pipeline's features that
    proposes the Leistungskatalog service. Rows without a service (older corrections) are
    skipped, and so are services with fewer than SERVICE_MIN_ROWS rows. None when fewer than
    two services remain."""
    counts: dict[str, int] = {}
    for service in services:
        if service:
            counts[service] = counts.get(service, 0) + 1
    known = {s for s, n in counts.items() if n >= SERVICE_MIN_ROWS}
    if len(known) < 2:
        return None
    keep = [i for i, s in enumerate(services) if s in known]
    y = [str(services[i]) for i in keep]
    # A linear SVM: as good as a logistic regression here and several times quicker to train
    # (classifier/compare.py), calibrated to probabilities like the priority head.
    model = LinearSVC(C=0.5, class_weight="balanced", random_state=seed)
    folds = min(5, min(counts[s] for s in known))
    head = CalibratedClassifierCV(model, method="sigmoid", cv=folds, ensemble=False)
    params = (
        {"sample_weight": np.asarray([weights[i] for i in keep])} if weights is not None else {}
    )
    head.fit(features[keep], y, **params)
    return head


def features_of(pipeline: Pipeline, texts: Sequence[str]) -> sparse.csr_matrix:
    union = pipeline.named_steps["features"]
    return sparse.hstack([t.transform(list(texts)) for _, t in union.transformer_list]).tocsr()


def score_service(model: PriorityModel, examples: Sequence[Example]) -> dict[str, Any]:
    """Accuracy of the proposed service on the rows that have one."""
    labelled = [e for e in examples if e.service]
    predictions = model.predict_many([(e.subject, e.body) for e in labelled])
    hits = sum(p.service == e.service for p, e in zip(predictions, labelled, strict=True))
    return {"n": len(labelled), "accuracy": round(hits / len(labelled), 4) if labelled else 0.0}


def score(model: PriorityModel, examples: Sequence[Example]) -> dict[str, Any]:
    predictions = model.predict_many([(e.subject, e.body) for e in examples])
    return metrics(
        [e.priority.value for e in examples],
        [p.priority.value for p in predictions],
        [p.confidence for p in predictions],
    )


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    held_out: dict[str, Any]
    activated: bool
    reason: str


def train_version(
    corpus_dir: Path = CORPUS_DIR,
    models_dir: Path = MODELS_DIR,
    corrections: Sequence[Example] = (),
    now: datetime | None = None,
    name: str = "priority",
    extra: Sequence[Example] = (),
) -> TrainResult:
    examples = load_corpus(corpus_dir)
    if not examples:
        raise ValueError(f"no training examples in {corpus_dir}")
    train_rows, held = split(examples)
    # Extra rows (Znuny's history) train like the corpus; the held-out part stays the corpus's,
    # so the gate compares versions on the same requests.
    rows = [*train_rows, *extra, *corrections]
    weights = [1.0] * (len(train_rows) + len(extra)) + [CORRECTION_WEIGHT] * len(corrections)
    pipeline = fit(rows, weights)
    head = fit_service_head(
        features_of(pipeline, [e.text for e in rows]), [e.service for e in rows], weights
    )
    digest = corpus_digest(rows)
    moment = now or datetime.now(UTC)
    version = f"{name}-{moment:%Y%m%d-%H%M%S}-{digest[:8]}"
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{version}.skops"
    bundle = {"priority": pipeline, "service": head}  # one file: both heads share the features
    sio.dump(bundle, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    unexpected = {
        t
        for t in sio.get_untrusted_types(file=path)
        if t not in ALLOWED_TYPES and not t.startswith("sklearn.")
    }
    if unexpected:
        path.unlink()
        raise ModelRefused(f"the pipeline contains unreviewed types: {sorted(unexpected)}")
    card: dict[str, Any] = {
        "version": version,
        "trained_at": moment.isoformat(timespec="seconds"),
        "scikit_learn": sklearn.__version__,
        "training_sha256": digest,
        "training_rows": len(rows),
        "corrections": len(corrections),
        "extra_rows": len(extra),
        "per_priority": {p.value: sum(e.priority is p for e in rows) for p in ORDER},
        "languages": {
            lang: sum(e.lang == lang for e in rows) for lang in sorted({e.lang for e in rows})
        },
        "services": {
            s: sum(e.service == s for e in rows)
            for s in sorted({e.service for e in rows if e.service})
        },
        "service_head": None if head is None else [str(c) for c in head.classes_],
        "held_out_rows": len(held),
        "size_bytes": path.stat().st_size,
    }
    _write_card(path, card)
    candidate = PriorityModel.load(path)
    card["held_out"] = score(candidate, held)
    if head is not None:
        card["held_out_service"] = score_service(candidate, held)
    _write_card(path, card)
    registry = ModelRegistry(models_dir)
    activated, reason = _gate(registry, card["held_out"], held)
    if activated:
        registry.activate(version)
    return TrainResult(version, path, card["held_out"], activated, reason)


def _write_card(path: Path, card: dict[str, Any]) -> None:
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def _gate(
    registry: ModelRegistry, new: dict[str, Any], held: Sequence[Example]
) -> tuple[bool, str]:
    """The new model must match the active one on the same held-out rows in macro-F1 and Kritisch recall."""
    if registry.active_version() is None:
        return True, "no active model yet"
    try:
        active = registry.load()
    except Exception as exc:  # an unreadable active model is no bar to a working one
        return True, f"active model unusable ({exc})"
    old = score(active, held)
    worse = [
        f"{key} {new[key]:.4f} < {old[key]:.4f}"
        for key in ("macro_f1", "kritisch_recall")
        if new[key] < old[key]
    ]
    if worse:
        return False, f"kept {active.version}: new model is worse ({'; '.join(worse)})"
    return True, (
        f"better or equal than {active.version} "
        f"(macro-F1 {new['macro_f1']:.4f} vs {old['macro_f1']:.4f}, "
        f"Kritisch recall {new['kritisch_recall']:.4f} vs {old['kritisch_recall']:.4f})"
    )


def main() -> int:
    """`make train` / `python -m classifier.train`: a new version from the shipped corpus."""
    result = train_version()
    held = result.held_out
    print(f"trained {result.version} -> {result.path}")
    print(
        f"held-out: macro-F1 {held['macro_f1']:.3f}, Kritisch recall {held['kritisch_recall']:.3f}, "
        f"calibration error {held['calibration_error']:.3f}"
    )
    print(("activated: " if result.activated else "not activated: ") + result.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
