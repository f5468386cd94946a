"""What the staff pages show, read from the database (functions take a Session, never commit)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from intake.calendar import ServiceCalendar
from intake.config import Config
from intake.db.tables import (
    Attachment,
    Correction,
    Customer,
    LedgerEntry,
    Message,
    Ticket,
    TriageRecord,
)
from intake.domain import ContractModel, Priority
from intake.rules.deadline import Deadlines

OPEN_STATUSES = ("open", "held")


@dataclass(frozen=True)
class QueueRow:
    ticket: Ticket
    priority: str | None
    time_used: float | None  # share of the response time used, in service hours
    state: str  # "ok", "warn" (75 % used), "overdue", or "none" (no deadline)


@dataclass(frozen=True)
class QueueFilter:
    priority: str | None = None
    customer: str | None = None
    status: str | None = None
    page: int = 1


class Calendars:
    """The service calendar of each ticket's contract (built once, by `Deadlines`)."""

    def __init__(self, cfg: Config) -> None:
        self.deadlines = Deadlines(cfg)

    def of(self, ticket: Ticket) -> ServiceCalendar:
        model = ContractModel(ticket.contract.model) if ticket.contract else ContractModel.BASIC
        return self.deadlines.calendar(model, ticket.customer.state if ticket.customer else None)


def time_used(calendars: Calendars, ticket: Ticket, now: datetime) -> tuple[float | None, str]:
    if ticket.deadline is None:
        return None, "none"
    if now >= ticket.deadline:
        return 1.0, "overdue"
    calendar = calendars.of(ticket)
    total = calendar.business_hours_between(ticket.received_at, ticket.deadline)
    used = calendar.business_hours_between(ticket.received_at, now)
    share = used / total if total > timedelta(0) else 1.0
    return share, "warn" if share >= 0.75 else "ok"


def queue(
    session: Session, cfg: Config, calendars: Calendars, flt: QueueFilter, now: datetime
) -> tuple[list[QueueRow], int]:
    """Open and held tickets: marked for review first, then by deadline (none last)."""
    priority = func.coalesce(Ticket.final_priority, Ticket.proposed_priority)
    query = select(Ticket).where(
        Ticket.status.in_([flt.status] if flt.status in OPEN_STATUSES else OPEN_STATUSES)
    )
    if flt.priority:
        query = query.where(priority == flt.priority)
    if flt.customer:
        query = query.join(Customer, Customer.id == Ticket.customer_id).where(
            Customer.number == flt.customer
        )
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    size = cfg.web.page_size
    rows = session.scalars(
        query.options(selectinload(Ticket.customer), selectinload(Ticket.contract))
        .order_by(
            Ticket.needs_review.desc(),
            Ticket.deadline.is_(None),
            Ticket.deadline,
            Ticket.id,
        )
        .offset((max(flt.page, 1) - 1) * size)
        .limit(size)
    ).all()
    result = []
    for ticket in rows:
        share, state = time_used(calendars, ticket, now)
        result.append(
            QueueRow(ticket, ticket.final_priority or ticket.proposed_priority, share, state)
        )
    return result, total


@dataclass(frozen=True)
class TicketDetail:
    ticket: Ticket
    messages: list[Message]
    attachments: dict[int, list[Attachment]]
    triages: list[TriageRecord]
    corrections: list[Correction]
    ledger: list[LedgerEntry]


def ticket_detail(session: Session, number: str) -> TicketDetail | None:
    ticket = session.scalars(
        select(Ticket)
        .where(Ticket.number == number)
        .options(
            selectinload(Ticket.customer),
            selectinload(Ticket.contract),
            selectinload(Ticket.messages),
            selectinload(Ticket.triages),
        )
    ).first()
    if ticket is None:
        return None
    ids = [m.id for m in ticket.messages]
    files: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in session.scalars(select(Attachment).where(Attachment.message_id.in_(ids))):
        files[attachment.message_id].append(attachment)
    corrections = session.scalars(
        select(Correction).where(Correction.ticket_id == ticket.id).order_by(Correction.id)
    ).all()
    ledger = session.scalars(
        select(LedgerEntry).where(LedgerEntry.ticket_id == ticket.id).order_by(LedgerEntry.id)
    ).all()
    return TicketDetail(
        ticket,
        list(ticket.messages),
        dict(files),
        list(ticket.triages),
        list(corrections),
        list(ledger),
    )


@dataclass(frozen=True)
class Quality:
    version: str
    decided: int
    agreement: float
    kritisch_recall: float | None
    confusion: list[list[int]]


def quality(session: Session) -> tuple[list[Quality], list[tuple[date, float, int]]]:
    """Proposals against staff decisions (the latest priority decision per ticket; a service
    decision is none), per model version, and the agreement per calendar week."""
    latest: dict[int, Correction] = {}
    decided = select(Correction).where(Correction.new_priority.is_not(None))
    for correction in session.scalars(decided.order_by(Correction.id)):
        latest[correction.ticket_id] = correction
    first_triage: dict[int, TriageRecord] = {}
    for record in session.scalars(
        select(TriageRecord)
        .where(TriageRecord.ticket_id.in_(list(latest)))
        .order_by(TriageRecord.id)
    ):
        first_triage.setdefault(record.ticket_id, record)
    labels = [p.value for p in Priority]
    per_version: dict[str, list[tuple[str, str]]] = defaultdict(list)
    weekly: dict[date, list[bool]] = defaultdict(list)
    for ticket_id, correction in latest.items():
        first = first_triage.get(ticket_id)
        if first is None or first.proposed_priority is None or correction.new_priority is None:
            continue
        pair = (correction.new_priority, first.proposed_priority)
        per_version[first.model_version or "?"].append(pair)
        moment = correction.created_at.date()
        weekly[moment - timedelta(days=moment.weekday())].append(pair[0] == pair[1])
    result = []
    for version, pairs in sorted(per_version.items()):
        matrix = [[0] * 4 for _ in labels]
        for truth, proposed in pairs:
            matrix[labels.index(truth)][labels.index(proposed)] += 1
        critical = [p for t, p in pairs if t == Priority.KRITISCH.value]
        recall = (
            sum(p == Priority.KRITISCH.value for p in critical) / len(critical)
            if critical
            else None
        )
        agreement = sum(t == p for t, p in pairs) / len(pairs)
        result.append(Quality(version, len(pairs), agreement, recall, matrix))
    weeks = [(week, sum(v) / len(v), len(v)) for week, v in sorted(weekly.items())]
    return result, weeks
