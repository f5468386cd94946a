"""Structured log lines: one JSON object per line, built by json.dumps, never by hand.

Values from outside (addresses, subjects, user names) may hold quotes, backslashes or line
breaks; json.dumps escapes them, so every line stays one line that a log reader can parse."""

from __future__ import annotations

import json
import logging


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: object
) -> None:
    """Log `{"event": event, **fields}` as one JSON line (non-JSON values as their str())."""
    if not logger.isEnabledFor(level):
        return
    line = json.dumps({"event": event, **fields}, ensure_ascii=False, default=str)
    logger.log(level, line, stacklevel=2)  # the record names the caller, not this helper
