"""Structured log lines are JSON a log reader can parse, whatever the values hold."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from intake.logs import log_event


def test_an_address_with_a_quote_and_a_newline_gives_one_parsable_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("intake.test")
    address = 'o"brien\\\n@muster.example'  # a quote, a backslash and a line break
    with caplog.at_level(logging.INFO, logger="intake.test"):
        log_event(logger, "reply-skipped", address=address, why="100 %s")
    [record] = caplog.records
    line = record.getMessage()
    assert "\n" not in line
    assert json.loads(line) == {"event": "reply-skipped", "address": address, "why": "100 %s"}
    assert record.levelno == logging.INFO
    assert record.funcName == "test_an_address_with_a_quote_and_a_newline_gives_one_parsable_line"


def test_values_json_does_not_know_are_written_as_text_and_none_as_null(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("intake.test")
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="intake.test"):
        log_event(logger, "ignored")  # below the level: nothing is written
        log_event(logger, "odd", level=logging.WARNING, at=at, user=None, known=True, n=3)
    [record] = caplog.records
    assert json.loads(record.getMessage()) == {
        "event": "odd",
        "at": "2026-11-28 09:00:00+00:00",
        "user": None,
        "known": True,
        "n": 3,
    }
    assert record.levelno == logging.WARNING
