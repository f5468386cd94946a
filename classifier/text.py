"""The customer's new words: quoted history and signatures removed before classification.

Staff always see the full text; only the classifier's input is trimmed, in training and in
use alike. Forwarded mail is kept: what a customer forwards is usually the problem itself.
"""

from __future__ import annotations

import re

# Lines that open a quoted earlier message (Outlook, Thunderbird, Apple Mail, Gmail; de and en).
QUOTE_OPENERS = re.compile(
    r"^\s*(-{2,}\s*(ursprüngliche nachricht|original message)\s*-{2,}"
    r"|am .{3,80} schrieb .{0,80}:\s*$"
    r"|on .{3,80} wrote:\s*$"
    r"|(von|from):\s.+\n\s*(gesendet|sent|datum|date):\s)",
    re.IGNORECASE | re.MULTILINE,
)
FORWARD_MARKER = re.compile(
    r"(weitergeleitete nachricht|forwarded message|begin forwarded message|"
    r"anfang der weitergeleiteten nachricht)",
    re.IGNORECASE,
)
SIGNATURE_DELIMITER = re.compile(r"^-- ?$", re.MULTILINE)
CLOSINGS = re.compile(
    r"^\s*(mit freundlichen grüßen|mit freundlichem gruß|freundliche grüße|viele grüße|beste grüße|"
    r"liebe grüße|gruß|grüße|mfg|vg|best regards|kind regards|regards|best|cheers|thanks and regards)"
    r"[,.!]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
SIGNATURE_MAX_LINES = 12


def new_words(body: str) -> str:
    """The body without quoted history, '>' lines and the signature block."""
    text = body.replace("\r\n", "\n")
    for opener in QUOTE_OPENERS.finditer(text):
        if FORWARD_MARKER.search(text[max(0, opener.start() - 120) : opener.start()]):
            continue  # the header block of a forwarded message: keep what was forwarded
        if opener.start() > 0:
            text = text[: opener.start()]
        break
    text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    delimiter = SIGNATURE_DELIMITER.search(text)
    if delimiter:
        text = text[: delimiter.start()]
    closings = list(CLOSINGS.finditer(text))
    if closings:
        last = closings[-1]
        if text[last.end() :].count("\n") <= SIGNATURE_MAX_LINES and last.start() > 0:
            text = text[: last.start()]
    return text.strip() or body.strip()
