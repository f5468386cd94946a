"""Service calendars: opening hours, statutory holidays per federal state, business-hour arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from intake.config import CalendarConfig, Config, HolidayConfig


@lru_cache(maxsize=64)
def statutory_holidays(state: str) -> holidays.HolidayBase:
    """The public holidays of a German federal state (names in German, years expand lazily)."""
    return holidays.country_holidays("DE", subdiv=state, language="de")


@dataclass(frozen=True)
class ServiceCalendar:
    """Opening hours on the local wall clock of `zone`, minus holidays and closure days.

    Arithmetic runs on the wall clock because "08:00-17:00" means local time; Germany's DST switch
    (Sunday 02:00/03:00) never falls inside opening hours, so no gap or fold is ever produced.
    """

    hours: CalendarConfig
    zone: ZoneInfo
    state: str
    closures: frozenset[date] = frozenset()
    closures_yearly: frozenset[str] = frozenset()
    _holidays: holidays.HolidayBase = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_holidays", statutory_holidays(self.state))

    def is_closed(self, day: date) -> bool:
        return (
            day in self._holidays
            or day in self.closures
            or day.strftime("%m-%d") in self.closures_yearly
            or self.hours.for_weekday(day.weekday()) is None
        )

    def open_interval(self, day: date) -> tuple[datetime, datetime] | None:
        if self.is_closed(day):
            return None
        opening = self.hours.for_weekday(day.weekday())
        assert opening is not None
        return (
            datetime.combine(day, opening.start, tzinfo=self.zone),
            datetime.combine(day, opening.end, tzinfo=self.zone),
        )

    def _open_days_from(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        # Guard against a calendar with no open day at all (would loop forever).
        for offset in range(3 * 366):
            interval = self.open_interval(day + timedelta(days=offset))
            if interval:
                yield interval

    def add_business_hours(self, start: datetime, hours: float) -> datetime:
        """The instant `hours` of open time after `start` (aware), in the calendar's zone."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if hours < 0:
            raise ValueError("hours must not be negative")
        remaining = timedelta(hours=hours)
        current = start.astimezone(self.zone)
        for opens, closes in self._open_days_from(current.date()):
            current = max(current, opens)
            if current >= closes:
                continue
            available = closes - current
            if remaining <= available:
                return current + remaining
            remaining -= available
        raise ValueError("the calendar has no open hours within three years")

    def business_hours_between(self, a: datetime, b: datetime) -> timedelta:
        """Open time elapsed from a to b (zero when b is not after a)."""
        a, b = a.astimezone(self.zone), b.astimezone(self.zone)
        total = timedelta()
        day = a.date()
        while day <= b.date():
            interval = self.open_interval(day)
            if interval:
                begin, end = max(a, interval[0]), min(b, interval[1])
                if end > begin:
                    total += end - begin
            day += timedelta(days=1)
        return total


def build_calendar(cfg: Config, calendar: str, state: str | None = None) -> ServiceCalendar:
    """The named calendar from config, with the holidays of `state` (default from config)."""
    hol: HolidayConfig = cfg.holidays
    return ServiceCalendar(
        hours=cfg.calendars[calendar],
        zone=cfg.zone,
        state=state or hol.state,
        closures=frozenset(hol.closures),
        closures_yearly=frozenset(hol.closures_yearly),
    )


WEEKDAY_NAMES_DE = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTH_NAMES_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAY_NAMES_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def format_deadline(moment: datetime, zone: ZoneInfo, language: str = "de") -> str:
    """'Montag, 30.11.2026, 11:00 Uhr' (German) or 'Monday, 30 November 2026, 11:00' (English)."""
    local = moment.astimezone(zone)
    if language == "en":
        month = MONTH_NAMES_EN[local.month - 1]
        return f"{WEEKDAY_NAMES_EN[local.weekday()]}, {local.day} {month} {local:%Y, %H:%M}"
    return f"{WEEKDAY_NAMES_DE[local.weekday()]}, {local:%d.%m.%Y, %H:%M} Uhr"
