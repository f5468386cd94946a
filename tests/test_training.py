"""Training, evaluation and model versions: deterministic, gated, reversible, hand-checked."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier.corpus import CORPUS_DIR, load_corpus
from classifier.evaluate import expected_calibration_error, metrics, read_labelled
from classifier.model import ModelRefused, PriorityModel
from classifier.registry import ModelRegistry
from classifier.train import fit, is_held_out, train_version
from intake.domain import Priority

PER_PRIORITY = 40


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced slice of the corpus, a few dozen rows per priority: enough to learn (the
    activation test checks that it does), quick to train."""
    rows = [
        json.loads(line)
        for p in sorted(CORPUS_DIR.glob("*.jsonl"))
        for line in p.read_text().splitlines()
        if line.strip()
    ]
    random.Random(5).shuffle(rows)
    picked: list[dict[str, str]] = []
    for p in Priority:
        picked += [r for r in rows if r["priority"] == p.value][:PER_PRIORITY]
    directory = tmp_path_factory.mktemp("corpus")
    (directory / "small.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in picked) + "\n"
    )
    return directory


def test_training_twice_gives_the_same_model(small_corpus: Path) -> None:
    examples = load_corpus(small_corpus)[:200]
    texts = [e.text for e in examples[:40]]
    first = fit(examples).predict_proba(texts)
    second = fit(examples).predict_proba(texts)
    assert np.array_equal(first, second)


def test_the_held_out_split_is_fixed_by_id() -> None:
    ids = [f"row-{i}" for i in range(2000)]
    held = [i for i in ids if is_held_out(i)]
    assert held == [i for i in ids if is_held_out(i)]
    assert 0.17 < len(held) / len(ids) < 0.23


def test_a_new_version_is_activated_only_if_it_is_not_worse(
    small_corpus: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    first = train_version(small_corpus, models)
    assert first.activated and first.reason == "no active model yet"
    assert first.held_out["kritisch_recall"] >= 0.5  # the slice is enough to learn from
    registry = ModelRegistry(models)
    assert registry.active_version() == first.version
    # Careless corrections (critical outages "corrected" to Niedrig) must not replace it:
    # the held-out rows still say what is right.
    from dataclasses import replace as with_changes

    examples = load_corpus(small_corpus)
    wrong = [
        with_changes(e, id=f"correction-{i}", priority=Priority.NIEDRIG)
        for i, e in enumerate(
            e for e in examples if e.priority is Priority.KRITISCH and not is_held_out(e.id)
        )
    ]
    second = train_version(small_corpus, models, corrections=wrong)
    assert not second.activated and "worse" in second.reason
    assert second.held_out["kritisch_recall"] < first.held_out["kritisch_recall"]
    assert registry.active_version() == first.version
    # Both versions are listed; switching back and forth works (rollback).
    assert [c["version"] for c in registry.versions()] == [first.version, second.version]
    registry.activate(second.version)
    assert registry.load().version == second.version
    registry.activate(first.version)
    assert registry.load().version == first.version


def test_a_model_file_round_trips_and_a_foreign_scikit_learn_version_is_refused(
    small_corpus: Path, tmp_path: Path
) -> None:
    result = train_version(small_corpus, tmp_path)
    model = PriorityModel.load(result.path)
    again = PriorityModel.load(result.path)
    text = ("Server", "Der Produktivserver hängt seit einer Stunde, kein Workaround")
    assert model.predict(*text) == again.predict(*text)
    card_path = result.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    # The service head lives in the same file and proposes a service of the catalogue.
    proposed = model.predict(*text)
    assert proposed.service in card["service_head"] and card["held_out_service"]["n"] > 0
    assert proposed.service_confidence is not None and 0 < proposed.service_confidence <= 1
    card["scikit_learn"] = "0.24.2"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelRefused, match=r"trained with scikit-learn 0\.24\.2"):
        PriorityModel.load(result.path)


def test_the_service_head_skips_rows_without_a_service_and_rare_services() -> None:
    from scipy import sparse

    from classifier.train import fit_service_head

    rng = np.random.default_rng(3)
    services = ["stoerung", "beratung"] * 20 + [None] * 10 + ["vertrag"] * 2
    x = sparse.csr_matrix(rng.random((len(services), 6)))
    head = fit_service_head(x, services)
    assert head is not None and list(head.classes_) == ["beratung", "stoerung"]
    assert fit_service_head(x, [None] * len(services)) is None


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    active = ModelRegistry(Path(__file__).resolve().parent.parent / "models")
    source = active.path_of(active.active_version() or "")
    tampered = tmp_path / source.name
    data = bytearray(source.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    tampered.write_bytes(bytes(data))
    shutil.copy(source.with_suffix(".json"), tampered.with_suffix(".json"))
    with pytest.raises(ModelRefused):
        PriorityModel.load(tampered)


def test_metrics_match_a_hand_checked_example() -> None:
    truth = ["Kritisch", "Kritisch", "Hoch", "Mittel", "Niedrig", "Niedrig"]
    proposed = ["Kritisch", "Hoch", "Hoch", "Niedrig", "Niedrig", "Niedrig"]
    confidence = [0.9, 0.6, 0.8, 0.7, 0.95, 0.85]
    report = metrics(truth, proposed, confidence)
    assert report["accuracy"] == round(4 / 6, 4)
    # F1: Kritisch 2/3 (P 1, R 0.5), Hoch 2/3 (P 0.5, R 1), Mittel 0, Niedrig 0.8 (P 2/3, R 1)
    assert report["macro_f1"] == round((2 / 3 + 2 / 3 + 0 + 0.8) / 4, 4)
    assert report["kritisch_recall"] == 0.5
    assert report["per_class"]["Niedrig"] == {
        "precision": 0.6667,
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert report["confusion_matrix"]["rows_true_columns_proposed"] == [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 2],
    ]
    # Bins (0.5,0.6]: conf .6, wrong; (0.6,0.7]: .7 wrong; (0.7,0.8]: .8 right;
    # (0.8,0.9]: .9 and .85 right; (0.9,1]: .95 right.
    expected = (0.6 + 0.7 + 0.2 + (1 - 0.875) * 2 + 0.05) / 6
    assert report["calibration_error"] == round(expected, 4)
    assert expected_calibration_error(np.asarray([1.0]), np.asarray([1.0])) == 0.0


def test_the_external_csv_format_is_read_with_its_four_level_mapping(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        'subject,body,priority,priority_4\nA,"Zeile 1\\nZeile 2",very_low,Niedrig\n',
        encoding="utf-8",
    )
    (item,) = read_labelled(path)
    assert item.priority is Priority.NIEDRIG and item.body == "Zeile 1\nZeile 2"


def test_train_with_corrections_learns_what_staff_decided(
    small_corpus: Path,
    tmp_path: Path,
    cfg,
    sessions,
    model,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from intake.cli import main
    from intake.db import store
    from intake.db.tables import Correction
    from intake.mail.parse import parse_email
    from intake.service import IntakeService
    from tests.support.factories import make_mail

    service = IntakeService(cfg, sessions, model)
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    receipt = service.receive(
        parse_email(make_mail(subject="Frage", body="Wie exportiere ich Statistiken?"), at)
    )
    with sessions.begin() as session:
        ticket = store.ticket_by_number(session, receipt.ticket_number or "")
        assert ticket is not None
        for new in ("Mittel", "Hoch"):  # the later decision counts
            session.add(
                Correction(
                    ticket_id=ticket.id,
                    old_priority="Niedrig",
                    new_priority=new,
                    staff="anna",
                    reason="test",
                    model_version=model.version,
                    created_at=at,
                )
            )
    with sessions() as session:
        rows = store.corrected_requests(session)
        assert [(r.subject, r.priority, r.service) for r in rows] == [("Frage", "Hoch", None)]

    monkeypatch.setenv("INTAKE_DATABASE__URL", cfg.database.url)
    monkeypatch.setenv("INTAKE_CLASSIFIER__MODELS_DIR", str(tmp_path / "models"))
    assert main(["train", "--data", str(small_corpus), "--include-corrections"]) == 0
    out = capsys.readouterr().out
    assert "(1 corrections)" in out and "activated: no active model yet" in out
    card = ModelRegistry(tmp_path / "models").versions()[0]
    assert card["corrections"] == 1 and card["training_rows"] > 1


def test_extra_rows_from_a_history_import_train_alongside_the_corpus(
    small_corpus: Path, tmp_path: Path
) -> None:
    """`intake train --extra FILE.csv` (the columns `intake znuny import` writes): the rows are
    trained on; the held-out split, and so the gate, stays the corpus's."""
    from classifier.train import extra_examples

    history = tmp_path / "history.csv"
    history.write_text(
        "source_id,created,subject,body,priority,initial_priority,changed_by_agent\n"
        "znuny-1,2026-10-01 09:00:00,Drucker druckt nicht,Seit heute\\nkein Druck.,Kritisch,Mittel,1\n"
        "znuny-2,2026-10-02 09:00:00,Frage,Wie exportiere ich Statistiken?,Niedrig,Niedrig,0\n"
        "znuny-3,2026-10-03 09:00:00,Langsam,Die Suche dauert Minuten.,Hoch,Hoch,0\n",
        encoding="utf-8",
    )
    extra = extra_examples(history)
    assert [(e.subject, e.priority) for e in extra] == [
        ("Drucker druckt nicht", Priority.KRITISCH),
        ("Frage", Priority.NIEDRIG),
        ("Langsam", Priority.HOCH),
    ]
    assert extra[0].body == "Seit heute\nkein Druck."
    plain = train_version(small_corpus, tmp_path / "plain")
    more = train_version(small_corpus, tmp_path / "more", extra=extra)
    plain_card = json.loads(plain.path.with_suffix(".json").read_text())
    card = json.loads(more.path.with_suffix(".json").read_text())
    assert card["extra_rows"] == 3
    assert card["training_rows"] == plain_card["training_rows"] + 3
    assert card["training_sha256"] != plain_card["training_sha256"]
    assert card["held_out"]["n"] == plain_card["held_out"]["n"]
