"""Measure proposals against labels: accuracy, macro-F1, per-class scores, Kritisch recall,
the confusion matrix and the calibration error; write a JSON report and a PNG figure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from intake.domain import Priority

LABELS = [p.value for p in Priority]


@dataclass(frozen=True)
class Labelled:
    subject: str
    body: str
    priority: Priority
    lang: str = ""  # de or en: the row's `lang` column, else guessed from the text
    style: str = ""  # mail or chat: the row's `style` column, else mail when it has a subject


def read_labelled(path: Path) -> list[Labelled]:
    """JSON Lines or CSV with subject, body and priority (or the external set's priority_4).

    Bodies with escaped newlines (the two characters backslash-n) are unescaped. Rows without
    `lang` get the guessed language; rows without `style` are mail when they have a subject
    (a chat message has none), else chat."""
    from intake.language import guess_language

    rows: list[dict[str, Any]]
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        # csv reads quoted line breaks itself; splitting lines first would cut a row at any
        # of the characters str.splitlines() takes for one (form feed, U+2028...).
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    items: list[Labelled] = []
    for number, row in enumerate(rows, 1):
        label = row.get("priority_4") or row.get("priority")
        try:
            priority = Priority(str(label))
        except ValueError:
            raise ValueError(f"{path}: row {number}: unknown priority {label!r}") from None
        body = str(row.get("body") or "").replace("\\n", "\n")
        subject = str(row.get("subject") or "")
        lang = str(row.get("lang") or guess_language(f"{subject} {body}"))
        style = str(row.get("style") or ("mail" if subject else "chat"))
        items.append(Labelled(subject, body, priority, lang, style))
    return items


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def metrics(
    truth: Sequence[str], proposed: Sequence[str], confidence: Sequence[float]
) -> dict[str, Any]:
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, proposed, labels=LABELS, zero_division=0
    )
    correct = np.asarray([t == p for t, p in zip(truth, proposed, strict=True)], dtype=float)
    return {
        "n": len(truth),
        "accuracy": round(float(accuracy_score(truth, proposed)), 4),
        "macro_f1": round(float(np.mean(f1)), 4),
        "kritisch_recall": round(float(recall[0]), 4),
        "per_class": {
            label: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for label, p, r, f, s in zip(LABELS, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {
            "labels": LABELS,
            "rows_true_columns_proposed": confusion_matrix(truth, proposed, labels=LABELS).tolist(),
        },
        "calibration_error": round(
            expected_calibration_error(np.asarray(confidence, dtype=float), correct), 4
        ),
    }


def metrics_by(
    groups: Sequence[str],
    truth: Sequence[str],
    proposed: Sequence[str],
    confidence: Sequence[float],
) -> dict[str, dict[str, Any]]:
    """The metrics for each group (a language, a style) separately, groups in sorted order."""
    report: dict[str, dict[str, Any]] = {}
    for group in sorted(set(groups)):
        inside = [i for i, g in enumerate(groups) if g == group]
        report[group] = metrics(
            [truth[i] for i in inside],
            [proposed[i] for i in inside],
            [confidence[i] for i in inside],
        )
    return report


def write_figure(
    report: dict[str, Any], confidence: Sequence[float], correct: Sequence[bool], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    matrix = np.asarray(report["confusion_matrix"]["rows_true_columns_proposed"])
    left.imshow(matrix, cmap="Blues")
    left.set_xticks(range(4), LABELS)
    left.set_yticks(range(4), LABELS)
    left.set_xlabel("Vorschlag")
    left.set_ylabel("Richtig")
    left.set_title(f"Konfusionsmatrix (Makro-F1 {report['macro_f1']:.2f})")
    for (i, j), value in np.ndenumerate(matrix):
        left.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > matrix.max() / 2 else "black",
        )
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    edges = np.linspace(0, 1, 11)
    centres, accuracy = [], []
    for low, high in pairwise(edges):
        inside = (conf > low) & (conf <= high)
        if inside.any():
            centres.append(conf[inside].mean())
            accuracy.append(hit[inside].mean())
    right.plot([0, 1], [0, 1], "--", color="grey", label="perfekt kalibriert")
    right.plot(centres, accuracy, "o-", label="Modell")
    right.set_xlabel("Konfidenz")
    right.set_ylabel("Anteil richtig")
    right.set_title(f"Zuverlässigkeit (ECE {report['calibration_error']:.3f})")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
