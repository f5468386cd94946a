"""Guess whether a customer wrote German or English (replies follow the customer's language)."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-zäöüß]+")
GERMAN = frozenset(
    [
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "wir",
        "ich",
        "sie",
        "ein",
        "eine",
        "mit",
        "auf",
        "für",
        "bei",
        "von",
        "zu",
        "es",
        "im",
        "den",
        "dem",
        "des",
        "kann",
        "können",
        "bitte",
        "danke",
        "hallo",
        "grüße",
        "gruß",
        "seit",
        "noch",
        "wird",
        "werden",
        "haben",
        "hat",
        "sind",
        "über",
        "auch",
        "geht",
        "keine",
        "kein",
        "mehr",
        "wie",
        "was",
        "unser",
        "unsere",
        "ihr",
        "ihre",
    ]
)
ENGLISH = frozenset(
    [
        "the",
        "and",
        "is",
        "not",
        "we",
        "i",
        "you",
        "a",
        "an",
        "with",
        "on",
        "for",
        "at",
        "of",
        "to",
        "it",
        "in",
        "this",
        "that",
        "can",
        "could",
        "please",
        "thanks",
        "hello",
        "regards",
        "since",
        "still",
        "will",
        "have",
        "has",
        "are",
        "about",
        "also",
        "does",
        "no",
        "more",
        "how",
        "what",
        "our",
        "your",
    ]
)


SAMPLE_CHARS = 4000  # the opening of a message says its language; a 10 MB log adds nothing


def guess_language(text: str, fallback: str = "de") -> str:
    """'en' when clearly more English than German function words, 'de' when the reverse, in
    the first SAMPLE_CHARS characters."""
    text = text[:SAMPLE_CHARS].lower()
    words = WORD.findall(text)
    de = sum(w in GERMAN for w in words) + 3 * sum(c in "äöüß" for c in text)
    en = sum(w in ENGLISH for w in words)
    if en >= 3 and en > 1.5 * de:
        return "en"
    if de >= 3 and de > 1.5 * en:
        return "de"
    return fallback
