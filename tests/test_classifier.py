"""The priority classifier: safe loading, cautious decisions, explanations, the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from classifier.corpus import load_corpus
from classifier.features import _GATES, CRITERIA, find_criteria
from classifier.model import ModelRefused, PriorityModel, decide
from intake.domain import Priority

ROOT = Path(__file__).resolve().parent.parent


def test_a_model_file_with_unreviewed_code_is_refused(tmp_path: Path) -> None:
    crafted = tmp_path / "evil.skops"
    sio.dump(Pipeline([("run", FunctionTransformer(os.system))]), crafted)
    with pytest.raises(ModelRefused, match="unreviewed types"):
        PriorityModel.load(crafted)


def test_a_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelRefused):
        PriorityModel.load(broken)


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.9, 0.05, 0.03, 0.02], Priority.KRITISCH),
        ([0.05, 0.05, 0.1, 0.8], Priority.NIEDRIG),
        ([0.0, 0.1, 0.35, 0.55], Priority.NIEDRIG),
        # A one-in-three chance of a critical request is enough to raise it.
        ([0.34, 0.56, 0.05, 0.05], Priority.KRITISCH),
        ([0.15, 0.75, 0.05, 0.05], Priority.HOCH),
        # Torn between Hoch and Niedrig: never the implausible Mittel in between.
        ([0.0, 0.5, 0.005, 0.495], Priority.HOCH),
    ],
)
def test_the_decision_prefers_over_prioritising_a_possibly_critical_request(
    probabilities: list[float], expected: Priority
) -> None:
    assert decide(np.asarray(probabilities)) is expected


def test_criteria_see_negated_workarounds() -> None:
    assert "Kein Workaround" in find_criteria("Es gibt keinen Workaround.")
    assert "Workaround vorhanden" not in find_criteria("Es gibt keinen Workaround.")
    assert "Workaround vorhanden" in find_criteria("Als Workaround legen wir Tickets manuell an.")
    assert "Test-/Staging-System" in find_criteria("Auf dem Testsystem startet der Daemon nicht")


def test_the_shipped_model_proposes_with_confidence_and_reasons(model: PriorityModel) -> None:
    prediction = model.predict(
        "Produktivsystem down",
        "Seit 8 Uhr ist unser Znuny-Produktivsystem komplett ausgefallen, auch nach dem Neustart. "
        "Niemand kann arbeiten, es gibt keinen Workaround.",
    )
    assert prediction.priority is Priority.KRITISCH
    assert abs(sum(prediction.probabilities.values()) - 1) < 0.01
    assert prediction.confidence == prediction.probabilities[Priority.KRITISCH]
    assert prediction.model_version == model.version and model.version.startswith("priority-")
    assert "Neustart ohne Erfolg" in prediction.explanation.criteria
    assert prediction.explanation.terms and all(t.weight > 0 for t in prediction.explanation.terms)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wie kann ich in Znuny eine neue Queue anlegen und Agenten zuordnen?", Priority.NIEDRIG),
        (
            "DRINGEND!!! Wir möchten ein neues Feld im Kundenportal, bitte Angebot schicken.",
            Priority.NIEDRIG,
        ),
        (
            "Hello, could you send us a quote for a training on process management?",
            Priority.NIEDRIG,
        ),
        (
            "Our production Znuny is completely down since the update, restart did not help, nobody can work, no workaround.",
            Priority.KRITISCH,
        ),
    ],
)
def test_clear_requests_get_the_offers_priority(
    model: PriorityModel, text: str, expected: Priority
) -> None:
    assert model.predict(None, text).priority is expected


def test_the_shipped_model_is_trained_on_our_corpus_and_small(model: PriorityModel) -> None:
    card = model.card or {}
    assert card["training_rows"] + card["held_out_rows"] >= 2000
    assert card["corrections"] == 0  # the shipped model comes from classifier/data alone
    assert card["held_out"]["macro_f1"] >= 0.85 and card["held_out"]["kritisch_recall"] >= 0.9
    assert card["size_bytes"] < 15 * 1024 * 1024
    assert card["scikit_learn"] and card["training_sha256"]


@pytest.mark.parametrize(
    ("text", "criterion"),
    [
        ("Produktivsystem steht, es gibt leider keinen Workaround.", "Kein Workaround"),
        ("Wir haben keine Umgehung gefunden, nichts geht.", "Kein Workaround"),
        ("No workaround, production is down.", "Kein Workaround"),
        (
            "DRINGEND: Bitte ein Angebot für eine Erweiterung des Kundenportals",
            "Wunsch/Erweiterung/Angebot",
        ),
        (
            "DRINGEND: Bitte ein Angebot für eine Erweiterung des Kundenportals",
            "Dringlichkeitswort",
        ),
        ("Auf dem Testsystem startet der Daemon nicht mehr", "Test-/Staging-System"),
        ("Nur bei einem Kollegen fehlen die Benachrichtigungen", "Einzelne Benutzer betroffen"),
        ("Seit heute früh kann sich niemand mehr anmelden", "Alle Benutzer betroffen"),
        ("Neustart des Servers hat nicht geholfen, weiterhin Fehler 500", "Neustart ohne Erfolg"),
        (
            "Nach dem Neustart läuft es wieder, bitte Ursache prüfen",
            "Nach Neustart wieder in Ordnung",
        ),
        ("Als Workaround erfassen wir Tickets vorerst manuell", "Workaround vorhanden"),
    ],
)
def test_the_explanation_names_the_offers_criteria_in_hard_cases(
    model: PriorityModel, text: str, criterion: str
) -> None:
    assert criterion in model.predict(None, text).explanation.criteria


def test_the_classifier_reads_a_bounded_prefix_of_a_huge_request(model: PriorityModel) -> None:
    question = "Kleine Frage: wie ändere ich die Farbe der Ticketübersicht? Eilt nicht.\n"
    filler = "Logzeile ohne Belang\n" * 5_000  # 105,000 characters before the alarm
    alarm = "Produktivsystem komplett ausgefallen, niemand kann arbeiten, kein Workaround.\n" * 50
    alone = model.predict("Frage", question)
    huge = model.predict("Frage", question + filler + alarm, max_chars=20_000)
    assert alone.priority is Priority.NIEDRIG or alone.priority is Priority.MITTEL
    # The alarm lies beyond what the classifier reads: the proposal is the question's.
    assert huge.priority is alone.priority
    # Within the bound the same alarm is read and decides.
    assert model.predict("Frage", question + alarm).priority is Priority.KRITISCH


OUTAGE = "Totalausfall/Absturz/Hänger"
QUESTION = "Frage zur Nutzung"


@pytest.mark.parametrize(
    "text",
    [
        "Kein Ausfall, nur eine Frage zur Signatur.",
        "Das System ist nicht abgestürzt, es ist nur langsam.",
        "Seit 10 Uhr läuft wieder alles, bitte nur die Ursache prüfen.",
        "Das Portal ist wieder erreichbar.",
        "The outage is resolved, please tell us the cause.",
        "Production works again, just curious why it happened.",
        "500 Tickets in der Queue, wie archiviere ich die?",
        "We imported 502 tickets yesterday.",
    ],
)
def test_negated_resolved_and_counted_words_are_no_outage(text: str) -> None:
    assert OUTAGE not in find_criteria(text)


@pytest.mark.parametrize(
    "text",
    [
        "Produktion zeigt nur noch HTTP 500.",
        "Fehler 503 beim Aufruf von index.pl",
        "Internal Server Error auf dem Produktivsystem",
        "Es ist kein Test: das Produktivsystem ist ausgefallen.",
        "Läuft wieder? Nein, der Server ist immer noch abgestürzt.",
    ],
)
def test_error_codes_in_an_error_context_and_real_outages_still_count(text: str) -> None:
    assert OUTAGE in find_criteria(text)


def test_every_criterion_match_passes_its_quick_gate() -> None:
    """A criterion's pattern runs only on texts holding one of its gate words, so every text
    the pattern matches (the corpus and phrases the corpus lacks) must hold one."""
    phrases = [
        "unser znuny ist komplett weg",
        "der server ist komplett tot",
        "geht gar nichts mehr",
    ]
    texts = [e.text.lower() for e in load_corpus()] + phrases
    for name, gate in _GATES.items():
        for text in texts:
            for match in CRITERIA[name].finditer(text):
                assert any(word in match.group() for word in gate), (name, match.group())


def test_an_outage_said_without_the_word_is_found() -> None:
    assert OUTAGE in find_criteria("Unser Znuny ist seit heute früh komplett weg.")
    assert OUTAGE in find_criteria("Der Server ist komplett tot.")
    assert OUTAGE in find_criteria("jetzt ist es wirklich kritisch, alles steht")
    assert OUTAGE in find_criteria("Die Produktion steht still.")
    assert OUTAGE not in find_criteria("Was steht alles in der Dokumentation?")


def test_resolution_is_its_own_criterion() -> None:
    assert "Problem behoben/läuft wieder" in find_criteria("Seit 10 Uhr läuft wieder alles.")
    assert "Problem behoben/läuft wieder" in find_criteria("Issue resolved, it works again.")
    assert "Problem behoben/läuft wieder" not in find_criteria("Der Daemon läuft nicht.")
    # A negation before a comma belongs to the clause before it.
    assert "Problem behoben/läuft wieder" in find_criteria(
        "Das System war 20 Minuten nicht erreichbar, läuft jetzt wieder."
    )


def test_criteria_match_whole_words_and_need_a_subject() -> None:
    assert QUESTION not in find_criteria("Ihre Anfrage zum Ticketsystem ist eingegangen.")
    assert "Alle Benutzer betroffen" not in find_criteria(
        "Alle Filter sind weg, sämtliche Queues leer"
    )
    assert "Alle Benutzer betroffen" in find_criteria("Alle Agenten sehen eine leere Übersicht.")
    assert "Alle Benutzer betroffen" in find_criteria("All users are locked out.")


def test_a_question_mark_does_not_make_a_malfunction_a_usage_question() -> None:
    assert QUESTION not in find_criteria("Warum geht der Mailversand seit heute nicht mehr?")
    assert QUESTION in find_criteria("Wie kann ich eine Signatur pro Queue festlegen?")


def test_a_request_that_only_says_no_outage_is_not_critical(model: PriorityModel) -> None:
    prediction = model.predict(None, "Kein Ausfall, nur eine Frage zur Signatur.")
    assert prediction.priority is not Priority.KRITISCH
    assert OUTAGE not in prediction.explanation.criteria


def test_urgency_words_push_nowhere(model: PriorityModel) -> None:
    calm = model.predict(None, "neues Feld im Formular gewünscht")
    urgent = model.predict(None, "DRINGEND: neues Feld im Formular gewünscht ASAP!!")
    assert urgent.priority is Priority.NIEDRIG
    assert urgent.probabilities == calm.probabilities
    assert "Dringlichkeitswort" in urgent.explanation.criteria


@pytest.mark.parametrize(
    "text",
    [
        "Kunden sehen fremde Tickets im Portal.",
        "Im Kundenportal sieht ein Kunde die Tickets anderer Kunden.",
        "We found a data leak: customer data is publicly downloadable.",
        "Unauthorised access to our Znuny admin account, credentials are compromised.",
        "Ransomware auf dem Server, die Anlagen sind verschlüsselt.",
    ],
)
def test_a_security_incident_is_at_least_hoch_and_alerts_staff(
    model: PriorityModel, text: str
) -> None:
    prediction = model.predict(None, text)
    assert prediction.priority in (Priority.KRITISCH, Priority.HOCH)
    assert prediction.needs_review and prediction.possibly_critical
    assert "Sicherheits-/Datenschutzvorfall" in prediction.explanation.criteria


def test_no_security_incident_in_a_negation() -> None:
    assert "Sicherheits-/Datenschutzvorfall" not in find_criteria(
        "Kein Datenleck, nur eine Frage zur Passwortrichtlinie."
    )


def test_a_null_body_is_the_empty_text(model: PriorityModel) -> None:
    from classifier.corpus import classifier_text

    assert classifier_text("Betreff", None) == "Betreff"
    assert (
        model.predict("Drucker", None).probabilities == model.predict("Drucker", "").probabilities
    )


def test_the_shipped_model_proposes_the_service_it_calls_off(model: PriorityModel) -> None:
    outage = model.predict(
        "Produktion steht", "Unser Znuny-Produktivsystem ist komplett ausgefallen, kein Workaround."
    )
    assert outage.service == "stoerung"
    assert outage.service_confidence is not None and 0 < outage.service_confidence <= 1
    update = model.predict("Update", "Bitte aktualisieren Sie unser Znuny von 6.5 auf 7.0.")
    assert update.service == "update"


def test_the_quick_probabilities_are_scikit_learns(model: PriorityModel) -> None:
    from classifier.model import calibrated_proba, transform
    from classifier.train import features_of

    texts = ["Produktivsystem steht, kein Workaround", "Wie lege ich eine Queue an?", "x", ""]
    # The quick n-gram counting must see words exactly as scikit-learn does: every corpus text
    # (twice: the second time from the word cache), odd whitespace, accents, one huge word.
    awkward = ["  a  b\t\tc\n", "Straße\u00a0ÄÖÜ\u2003é", "Fehler" * 5000, "ab ab ab ab"]
    every = texts + [e.text for e in load_corpus()] * 2 + awkward
    features = features_of(model.pipeline, texts)
    for _, transformer in model.pipeline.named_steps["features"].transformer_list:
        quick, usual = transform(transformer, every), transformer.transform(every)
        assert quick.shape == usual.shape and abs(quick - usual).max() < 1e-12
    calibrated = model.pipeline.named_steps["model"]
    assert np.allclose(calibrated_proba(calibrated, features), calibrated.predict_proba(features))
    assert model.service_head is not None
    expected = model.service_head.predict_proba(features)
    assert np.allclose(calibrated_proba(model.service_head, features), expected)


def test_the_word_cache_stays_bounded_under_endless_new_words(
    model: PriorityModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from classifier import model as model_module

    monkeypatch.setattr(model_module, "WORD_CACHE_SIZE", 500)
    words = [f"wort{i}" for i in range(3000)]
    for start in range(0, len(words), 300):
        model.predict("Neu", " ".join(words[start : start + 300]))
        sizes = [len(cache) for cache in model_module._WORD_COLUMNS.values()]
        assert sizes and max(sizes) <= 500 + 300
