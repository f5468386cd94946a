"""The response deadline: the one place it is computed (intake, staff decisions, the staff
queue's 75 % mark and `intake deadline` all ask here)."""

from __future__ import annotations

from datetime import datetime

from intake.calendar import ServiceCalendar, build_calendar
from intake.config import Config
from intake.domain import ContractModel, Priority


class Deadlines:
    """Response times of the offer in business hours of the contract's service calendar, with
    the statutory holidays of the customer's federal state; calendars are built once."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._calendars: dict[tuple[str, str | None], ServiceCalendar] = {}

    def calendar(self, model: ContractModel, state: str | None) -> ServiceCalendar:
        name = self.cfg.contracts[model].calendar
        key = (name, state)
        if key not in self._calendars:
            self._calendars[key] = build_calendar(self.cfg, name, state)
        return self._calendars[key]

    def due(
        self, model: ContractModel, priority: Priority, received_at: datetime, state: str | None
    ) -> datetime:
        """When the answer to a request of `priority`, received at `received_at`, is due."""
        hours = self.cfg.contracts[model].response_hours[priority]
        return self.calendar(model, state).add_business_hours(received_at, hours)
