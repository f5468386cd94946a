"""Deadlines in service hours: nights, weekends, holidays per federal state, DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.calendar import ServiceCalendar, build_calendar, format_deadline
from intake.config import load_config

BERLIN = ZoneInfo("Europe/Berlin")
CFG = load_config(None, {})


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def cal(name: str = "service", state: str = "NW") -> ServiceCalendar:
    return build_calendar(CFG, name, state)


@pytest.mark.parametrize(
    ("calendar", "state", "received", "hours", "due"),
    [
        # The offer's examples
        ("service", "NW", berlin(2026, 11, 27, 16, 0), 4, berlin(2026, 11, 30, 11, 0)),
        ("service", "NW", berlin(2026, 11, 28, 10, 0), 4, berlin(2026, 11, 30, 12, 0)),
        ("extended", "NW", berlin(2026, 11, 27, 19, 30), 2, berlin(2026, 11, 28, 10, 30)),
        # Same day, before opening, after closing
        ("service", "NW", berlin(2026, 11, 25, 9, 0), 4, berlin(2026, 11, 25, 13, 0)),
        ("service", "NW", berlin(2026, 11, 25, 6, 0), 1, berlin(2026, 11, 25, 9, 0)),
        ("service", "NW", berlin(2026, 11, 25, 18, 0), 1, berlin(2026, 11, 26, 9, 0)),
        # Fronleichnam is a holiday in NW and BY but not in Berlin
        ("service", "NW", berlin(2026, 6, 3, 16, 0), 2, berlin(2026, 6, 5, 9, 0)),
        ("service", "BE", berlin(2026, 6, 3, 16, 0), 2, berlin(2026, 6, 4, 9, 0)),
        # Heilige Drei Könige only in BY (and BW, ST)
        ("service", "BY", berlin(2026, 1, 5, 16, 0), 2, berlin(2026, 1, 7, 9, 0)),
        ("service", "NW", berlin(2026, 1, 5, 16, 0), 2, berlin(2026, 1, 6, 9, 0)),
        # Year's end: 24.12. and 31.12. closed by default, 25./26.12. and 01.01. by law
        ("service", "NW", berlin(2026, 12, 23, 16, 0), 2, berlin(2026, 12, 28, 9, 0)),
        ("service", "NW", berlin(2026, 12, 30, 16, 0), 2, berlin(2027, 1, 4, 9, 0)),
        # DST: spring forward 29.03.2026, fall back 25.10.2026
        ("service", "NW", berlin(2026, 3, 27, 16, 0), 2, berlin(2026, 3, 30, 9, 0)),
        ("service", "NW", berlin(2026, 10, 23, 16, 0), 2, berlin(2026, 10, 26, 9, 0)),
        # Extended hours: Saturday morning counts, Sunday does not
        ("extended", "NW", berlin(2026, 11, 28, 12, 0), 2, berlin(2026, 11, 30, 8, 0)),
    ],
)
def test_deadlines(
    calendar: str, state: str, received: datetime, hours: float, due: datetime
) -> None:
    got = cal(calendar, state).add_business_hours(received, hours)
    assert got == due and got.utcoffset() == due.utcoffset()


def test_utc_input_gives_the_same_instant_with_the_local_offset() -> None:
    got = cal().add_business_hours(datetime(2026, 11, 27, 15, 0, tzinfo=UTC), 4)
    assert got.isoformat() == "2026-11-30T11:00:00+01:00"


def test_the_german_wording_of_a_deadline() -> None:
    assert format_deadline(berlin(2026, 11, 30, 11, 0), BERLIN) == "Montag, 30.11.2026, 11:00 Uhr"
    assert (
        format_deadline(berlin(2026, 11, 30, 11, 0), BERLIN, "en")
        == "Monday, 30 November 2026, 11:00"
    )


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
hours = st.floats(min_value=0, max_value=120, allow_nan=False).map(lambda h: round(h * 4) / 4)


@settings(max_examples=200, deadline=None)
@given(start=instants, h=hours, name=st.sampled_from(["service", "extended"]))
def test_a_deadline_is_never_before_receipt_and_always_inside_opening_hours(
    start: datetime, h: float, name: str
) -> None:
    calendar = cal(name)
    due = calendar.add_business_hours(start, h)
    assert due >= start
    if h > 0:
        interval = calendar.open_interval(due.astimezone(BERLIN).date())
        assert interval is not None and interval[0] < due <= interval[1]
    assert calendar.business_hours_between(start, due) == timedelta(hours=h)


@settings(max_examples=100, deadline=None)
@given(start=instants, a=hours, b=hours)
def test_more_hours_never_give_an_earlier_deadline(start: datetime, a: float, b: float) -> None:
    calendar = cal()
    low, high = sorted((a, b))
    assert calendar.add_business_hours(start, low) <= calendar.add_business_hours(start, high)
