"""What the staff pages show, read from the database (functions take a Session, never commit)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from intake.calendar import ServiceCalendar
from intake.config import Config
from intake.db import search
from intake.db.tables import (
    Attachment,
    Correction,
    Customer,
    LedgerEntry,
    Message,
    Ticket,
    TicketEvent,
    TriageRecord,
)
from intake.domain import (
    POSSIBLY_CRITICAL,
    QUEUE_STATUSES,
    SECURITY_CRITERION,
    ContractModel,
    Priority,
    TicketStatus,
)
from intake.rules.deadline import Deadlines
from intake.znuny import handover

# Why a request waits for staff, by the rule that held it: a short German line for the queue.
HELD_BECAUSE = {
    "unknown-sender": "Unbekannter Absender",
    "sender-not-verified": "Absender nicht bestätigt",
    "unreadable-message": "Nicht lesbar",
    "quota-exhausted": "Kontingent verbraucht",
    "insufficient-points": "Punkte reichen nicht",
    "contingent-exhausted": "Stunden aufgebraucht",
    "contract-expired": "Vertrag abgelaufen",
    "contract-not-started": "Vertrag beginnt später",
    "no-contract": "Kein Vertrag",
}


@dataclass(frozen=True)
class QueueRow:
    ticket: Ticket
    priority: str | None
    time_used: float | None  # share of the response time used, in service hours
    state: str  # "ok", "warn" (75 % used), "overdue", or "none" (no deadline)
    why: tuple[str, ...] = ()  # why it waits for staff: held by a rule, possibly critical …


@dataclass(frozen=True)
class QueueFilter:
    priority: str | None = None
    customer: str | None = None
    status: str | None = None
    page: int = 1
    channel: str | None = None
    assignee: str | None = None  # "Meine Tickets": the signed-in staff member
    q: str = ""


class Calendars:
    """The service calendar of each ticket's contract (built once, by `Deadlines`)."""

    def __init__(self, cfg: Config) -> None:
        self.deadlines = Deadlines(cfg)

    def of(self, ticket: Ticket) -> ServiceCalendar:
        model = ContractModel(ticket.contract.model) if ticket.contract else ContractModel.BASIC
        return self.deadlines.calendar(model, ticket.customer.state if ticket.customer else None)


def time_used(calendars: Calendars, ticket: Ticket, now: datetime) -> tuple[float | None, str]:
    if ticket.deadline is None or not TicketStatus(ticket.status).is_open:
        return None, "none"
    if now >= ticket.deadline:
        return 1.0, "overdue"
    calendar = calendars.of(ticket)
    total = calendar.business_hours_between(ticket.received_at, ticket.deadline)
    used = calendar.business_hours_between(ticket.received_at, now)
    share = used / total if total > timedelta(0) else 1.0
    return share, "warn" if share >= 0.75 else "ok"


def waiting_because(
    ticket: Ticket, first: TriageRecord | None, handover_failed: bool = False
) -> tuple[str, ...]:
    """Why a ticket waits for staff, in the queue row: the rule that held it, an unconfirmed
    sender, a security incident or a possibly critical proposal, a new customer message, a
    hand-over Znuny refused."""
    why: list[str] = []
    if ticket.unread_since is not None:
        why.append("Neue Nachricht")
    if handover_failed:
        why.append("Übergabe an Znuny fehlgeschlagen")
    if first is not None and ticket.status == TicketStatus.HELD:
        for verdict in first.verdicts:
            if verdict.get("hit") and verdict.get("action") in (
                "hold",
                "hold-silently",
                "hold-unverified",
            ):
                why.append(
                    HELD_BECAUSE.get(str(verdict.get("rule")), str(verdict.get("reason", ""))[:80])
                )
                break
    if first is not None:
        criteria = (first.explanation or {}).get("criteria", [])
        if SECURITY_CRITERION in criteria:
            why.append("Sicherheitsvorfall")
        probabilities = first.probabilities or {}
        if (
            float(probabilities.get(Priority.KRITISCH.value, 0.0)) >= POSSIBLY_CRITICAL
            and first.proposed_priority != Priority.KRITISCH.value
        ):
            why.append("Möglicherweise kritisch")
    return tuple(why)


def queue(
    session: Session, cfg: Config, calendars: Calendars, flt: QueueFilter, now: datetime
) -> tuple[list[QueueRow], int]:
    """Open work (neu, in Bearbeitung, gehalten), the tickets of the chosen status, or what a
    search finds in every status (`flt.q`, intake/db/search.py), combined with the filters:
    new customer messages first, then those marked for review, then by deadline (none last)."""
    priority = func.coalesce(Ticket.final_priority, Ticket.proposed_priority)
    query = select(Ticket)
    if flt.status:
        query = query.where(Ticket.status == flt.status)
    elif not flt.q:  # a search finds erledigte and abgelehnte tickets too
        query = query.where(Ticket.status.in_([s.value for s in QUEUE_STATUSES]))
    if flt.priority:
        query = query.where(priority == flt.priority)
    if flt.channel:
        query = query.where(Ticket.channel == flt.channel)
    if flt.assignee:
        query = query.where(Ticket.assignee == flt.assignee)
    if flt.customer:
        query = query.join(Customer, Customer.id == Ticket.customer_id).where(
            func.lower(Customer.number) == flt.customer.strip().lower()
        )
    query = search.search_filter(query, session, flt.q)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    size = cfg.web.page_size
    rows = session.scalars(
        query.options(selectinload(Ticket.customer), selectinload(Ticket.contract))
        .order_by(
            Ticket.unread_since.is_(None),
            Ticket.needs_review.desc(),
            Ticket.deadline.is_(None),
            Ticket.deadline,
            Ticket.id,
        )
        .offset((max(flt.page, 1) - 1) * size)
        .limit(size)
    ).all()
    first: dict[int, TriageRecord] = {}
    ids = [t.id for t in rows]
    if ids:
        for record in session.scalars(
            select(TriageRecord).where(TriageRecord.ticket_id.in_(ids)).order_by(TriageRecord.id)
        ):
            first.setdefault(record.ticket_id, record)
    refused = handover.failed_among(session, ids)
    result = []
    for ticket in rows:
        share, state = time_used(calendars, ticket, now)
        result.append(
            QueueRow(
                ticket,
                ticket.final_priority or ticket.proposed_priority,
                share,
                state,
                waiting_because(ticket, first.get(ticket.id), ticket.id in refused),
            )
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
    events: list[TicketEvent]


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
    events = session.scalars(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    ).all()
    return TicketDetail(
        ticket,
        list(ticket.messages),
        dict(files),
        list(ticket.triages),
        list(corrections),
        list(ledger),
        list(events),
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
