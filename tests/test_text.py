"""The classifier reads the customer's new words; staff still see everything."""

from __future__ import annotations

import pytest

from classifier.text import new_words


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "Hallo,\ndas Portal geht nicht.\n\nMit freundlichen Grüßen\nErika Muster\nTel. 0231 1\n\n"
            "-----Ursprüngliche Nachricht-----\nVon: Support\nBetreff: Ticket\n\nIhr Ticket ist gelöst.",
            "Hallo,\ndas Portal geht nicht.",
        ),
        (
            "Danke, geht wieder!\n\nAm 27.11.2026 um 10:00 schrieb Support <s@x.example>:\n> Bitte testen",
            "Danke, geht wieder!",
        ),
        (
            "Still broken.\n\nOn Fri, 27 Nov 2026 at 10:00, Support <s@x.example> wrote:\n> fixed?",
            "Still broken.",
        ),
        ("Hi,\nprod is down.\n-- \nJohn Doe\nACME Ltd", "Hi,\nprod is down."),
        ("Antwort oben\n> zitierte Zeile\nnoch etwas", "Antwort oben\nnoch etwas"),
    ],
)
def test_quotes_and_signatures_are_removed(body: str, expected: str) -> None:
    assert new_words(body) == expected


def test_a_forwarded_message_is_kept_because_it_is_the_problem() -> None:
    body = (
        "FYI, siehe unten.\n\n---------- Weitergeleitete Nachricht ----------\n"
        "Von: Znuny Daemon <daemon@x.example>\nDatum: 27.11.2026\nBetreff: Fehler\n\n"
        "Der Daemon läuft nicht mehr."
    )
    assert "Der Daemon läuft nicht mehr." in new_words(body)


def test_a_body_that_is_only_a_closing_stays_as_it_is() -> None:
    assert new_words("Gruß") == "Gruß"


def test_the_opening_of_a_message_decides_its_language_not_what_follows() -> None:
    from intake.language import SAMPLE_CHARS, guess_language

    german = "Seit heute früh können wir keine Tickets mehr anlegen, bitte helfen Sie uns. "
    english = "Since this morning we have no tickets and we are not able to work with the system. "
    opening = german * (SAMPLE_CHARS // len(german) + 1)
    assert guess_language(opening + english * 200_000) == "de"  # 17 MB of English after it
    assert guess_language(german[:40] + english * 3) == "en"  # English within the opening
