"""`intake classify`, `intake train`, `intake evaluate`, `intake model …`: the classifier."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intake.config import Config
from intake.db.engine import make_engine, make_sessions


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.corpus import Example
    from classifier.train import extra_examples, train_version
    from intake.corrections import training_corrections

    corrections: list[Example] = []
    if args.include_corrections:
        sessions = make_sessions(make_engine(cfg.database.url))
        with sessions() as session:
            corrections = training_corrections(session)
    extra = [row for path in args.extra for row in extra_examples(path)]
    result = train_version(
        args.data or cfg.classifier.corpus_dir,
        cfg.classifier.models_dir,
        corrections,
        extra=extra,
    )
    held = result.held_out
    more = f", {len(extra)} extra rows" if args.extra else ""
    print(f"trained {result.version} ({len(corrections)} corrections{more}) -> {result.path}")
    print(
        f"held-out: macro-F1 {held['macro_f1']:.3f}, Kritisch recall {held['kritisch_recall']:.3f}, "
        f"accuracy {held['accuracy']:.3f}, calibration error {held['calibration_error']:.3f}"
    )
    print(("activated: " if result.activated else "not activated: ") + result.reason)
    return 0


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.evaluate import metrics, metrics_by, read_labelled, write_figure
    from classifier.registry import ModelRegistry

    model = ModelRegistry(cfg.classifier.models_dir).load(args.version, cfg.classifier.review_below)
    items = read_labelled(args.data)
    predictions = model.predict_many([(i.subject, i.body) for i in items])
    truth = [i.priority.value for i in items]
    proposed = [p.priority.value for p in predictions]
    confidence = [p.confidence for p in predictions]
    report = {
        "model_version": model.version,
        "data": str(args.data),
        **metrics(truth, proposed, confidence),
        "by_language": metrics_by([i.lang for i in items], truth, proposed, confidence),
        "by_style": metrics_by([i.style for i in items], truth, proposed, confidence),
    }
    report_path = args.report or Path("var/evaluation") / f"{args.data.stem}-{model.version}.json"
    figure_path = args.figure or report_path.with_suffix(".png")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_figure(
        report, confidence, [t == p for t, p in zip(truth, proposed, strict=True)], figure_path
    )
    print(f"model {model.version} on {args.data} ({report['n']} requests)")
    print(
        f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
        f"Kritisch recall {report['kritisch_recall']:.3f}  calibration error {report['calibration_error']:.3f}"
    )
    print(f"{'':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'n':>6}")
    for label, row in report["per_class"].items():
        print(
            f"{label:<10}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}{row['support']:>6}"
        )
    labels = report["confusion_matrix"]["labels"]
    print("confusion (rows: true, columns: proposed): " + " ".join(f"{x[:4]:>5}" for x in labels))
    for label, row in zip(
        labels, report["confusion_matrix"]["rows_true_columns_proposed"], strict=True
    ):
        print(f"  {label:<10}" + " ".join(f"{n:>5}" for n in row))
    for title, key in (("language", "by_language"), ("style", "by_style")):
        for group, part in report[key].items():
            print(
                f"{title} {group:<5} n {part['n']:>5}  accuracy {part['accuracy']:.3f}  "
                f"macro-F1 {part['macro_f1']:.3f}  Kritisch recall {part['kritisch_recall']:.3f}  "
                f"calibration error {part['calibration_error']:.3f}"
            )
    print(f"report: {report_path}  figure: {figure_path}")
    return 0


def cmd_model_list(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.registry import ModelRegistry

    registry = ModelRegistry(cfg.classifier.models_dir)
    active = registry.active_version()
    for card in registry.versions():
        held = card.get("held_out") or {}
        mark = "*" if card["version"] == active else " "
        print(
            f"{mark} {card['version']:<44} rows {card.get('training_rows', '?'):>5}  "
            f"macro-F1 {held.get('macro_f1', float('nan')):.3f}  "
            f"Kritisch recall {held.get('kritisch_recall', float('nan')):.3f}"
        )
    return 0


def cmd_model_activate(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.model import ModelRefused
    from classifier.registry import ModelRegistry, UnknownVersion

    try:
        ModelRegistry(cfg.classifier.models_dir).activate(args.version)
    except (UnknownVersion, ModelRefused) as exc:
        print(f"intake: {exc}", file=sys.stderr)
        return 1
    print(f"active model: {args.version} (running services pick it up when restarted)")
    return 0


def cmd_classify(cfg: Config, args: argparse.Namespace) -> int:
    from classifier.registry import ModelRegistry

    model = ModelRegistry(cfg.classifier.models_dir).load(review_below=cfg.classifier.review_below)
    if args.text is not None:
        items: list[tuple[str | None, str | None]] = [(None, args.text)]
    else:
        items = []
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                subject, body = row.get("subject"), row["body"]  # a null body is the empty text
                if not isinstance(subject, str | None) or not isinstance(body, str | None):
                    raise ValueError("subject and body are text or null")
                items.append((subject, body))
            except (ValueError, KeyError, AttributeError):
                print(
                    f'intake: line {number}: expected {{"subject": ..., "body": ...}}',
                    file=sys.stderr,
                )
                return 1
    for prediction in model.predict_many(items):
        print(
            json.dumps(
                {
                    "priority": prediction.priority.value,
                    "confidence": prediction.confidence,
                    "probabilities": {p.value: v for p, v in prediction.probabilities.items()},
                    "needs_review": prediction.needs_review,
                    "model_version": prediction.model_version,
                    "service": prediction.service,
                    "service_confidence": prediction.service_confidence,
                    "explanation": {
                        "criteria": list(prediction.explanation.criteria),
                        "terms": [
                            {"term": t.term, "weight": t.weight}
                            for t in prediction.explanation.terms
                        ],
                    },
                },
                ensure_ascii=False,
            )
        )
    return 0
