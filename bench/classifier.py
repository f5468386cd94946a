"""Classifier figures for docs/CLASSIFIER.md: held-out split and the external data set.

Writes docs/classifier/{held-out,external}.{json,png}. Run with `make bench`.
"""

from __future__ import annotations

import json
from pathlib import Path

from classifier.corpus import load_corpus
from classifier.evaluate import metrics, read_labelled, write_figure
from classifier.registry import ModelRegistry
from classifier.train import split

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = ROOT.parent / "shared" / "data" / "external" / "bueck-tickets-de5-part.csv"
OUT = ROOT / "docs" / "classifier"


def evaluate(name: str, items: list[tuple[str, str, str]]) -> dict[str, object]:
    model = ModelRegistry(ROOT / "models").load()
    predictions = model.predict_many([(s, b) for s, b, _ in items])
    truth = [t for _, _, t in items]
    proposed = [p.priority.value for p in predictions]
    confidence = [p.confidence for p in predictions]
    report = {"model_version": model.version, "data": name, **metrics(truth, proposed, confidence)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_figure(
        report,
        confidence,
        [t == p for t, p in zip(truth, proposed, strict=True)],
        OUT / f"{name}.png",
    )
    return report


def main() -> None:
    _, held = split(load_corpus())
    reports = [evaluate("held-out", [(e.subject, e.body, e.priority.value) for e in held])]
    if EXTERNAL.exists():
        external = read_labelled(EXTERNAL)
        reports.append(
            evaluate("external", [(i.subject, i.body, i.priority.value) for i in external])
        )
    for r in reports:
        print(
            f"{r['data']}: n={r['n']} macro-F1 {r['macro_f1']} Kritisch recall {r['kritisch_recall']} "
            f"accuracy {r['accuracy']} calibration error {r['calibration_error']}"
        )


if __name__ == "__main__":
    main()
