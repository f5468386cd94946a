"""Queries and writes; every function takes a Session and never commits (the caller owns it)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from intake.db import search
from intake.db.tables import (
    MESSAGE_ID_LENGTH,
    Contact,
    Contract,
    Correction,
    Customer,
    InboxItem,
    LedgerEntry,
    Message,
    OutboxItem,
    Ticket,
)
from intake.domain import (
    Channel,
    ContractModel,
    ContractView,
    CustomerView,
    Entitlement,
    InboxState,
    OutboxStatus,
    TicketRef,
    contract_year,
)
from intake.rules.charges import Charge

# OTRS-style numbers: the receipt date then an 8-digit counter that starts at 10000001.
TICKET_COUNTER_BASE = 10_000_000


def format_ticket_number(day: date, ticket_id: int) -> str:
    return f"{day:%Y%m%d}{TICKET_COUNTER_BASE + ticket_id:08d}"


def find_inbound(session: Session, dedupe_key: str) -> Message | None:
    return session.scalars(select(Message).where(Message.dedupe_key == dedupe_key)).first()


def find_contact(session: Session, email: str) -> Contact | None:
    return session.scalars(
        select(Contact).where(Contact.email == email.lower()).options(joinedload(Contact.customer))
    ).first()


def customer_view(customer: Customer) -> CustomerView:
    return CustomerView(
        customer.id, customer.number, customer.name, customer.state, customer.sender_auth
    )


def contract_view(c: Contract) -> ContractView:
    return ContractView(
        id=c.id,
        model=ContractModel(c.model),
        start=c.start,
        end=c.end,
        quota=c.quota,
        points=c.points,
        hours=c.hours,
    )


def contract_views(session: Session, customer_id: int) -> list[ContractView]:
    rows = session.scalars(
        select(Contract).where(Contract.customer_id == customer_id).order_by(Contract.start)
    )
    return [contract_view(c) for c in rows]


def add_ticket(session: Session, ticket: Ticket, zone: ZoneInfo) -> Ticket:
    """Insert the ticket and give it its number, derived from the never-reused primary key."""
    session.add(ticket)
    session.flush()
    # Written with the next flush; the number is on the object for everything until then.
    ticket.number = format_ticket_number(ticket.received_at.astimezone(zone).date(), ticket.id)
    return ticket


def index_ticket(session: Session, ticket_id: int) -> None:
    """Bring the ticket's search document up to date (its number, customer, sender, subject and
    inbound messages: intake/db/search.py); after it is created, gets a message or a customer."""
    search.index_ticket(session, ticket_id)


def ticket_by_number(session: Session, number: str) -> Ticket | None:
    return session.scalars(
        select(Ticket)
        .where(Ticket.number == number)
        .options(selectinload(Ticket.messages), selectinload(Ticket.triages))
    ).first()


def list_tickets(session: Session, limit: int = 50) -> Sequence[Ticket]:
    return session.scalars(
        select(Ticket)
        .options(selectinload(Ticket.customer))
        .order_by(Ticket.id.desc())
        .limit(limit)
    ).all()


def enqueue(session: Session, item: OutboxItem) -> OutboxItem:
    session.add(item)  # flushed with the next query or the commit
    return item


def claim_inbox(
    session: Session, now: datetime, limit: int, max_bytes: int, *, lock: bool
) -> list[InboxItem]:
    """Stored messages that are due for triage: at most `limit`, and no more raw bytes than
    `max_bytes` (but always one, however large), so memory per batch is bounded.

    Oldest first, but taking turns between senders (the envelope sender's first waiting
    message, then everyone's second, …), so that a flood from one address, a storm of
    out-of-office replies, cannot keep a customer waiting behind it.

    With `lock` (PostgreSQL) the rows stay locked until the caller's transaction ends and
    other workers skip them (SKIP LOCKED); a worker killed mid-batch releases them at once."""
    sender = func.coalesce(InboxItem.envelope_from, InboxItem.queue_id)
    turns = (
        select(
            InboxItem.id.label("id"),
            func.row_number().over(partition_by=sender, order_by=InboxItem.id).label("turn"),
        )
        .where(InboxItem.state == InboxState.PENDING, InboxItem.next_attempt_at <= now)
        .subquery()
    )
    due = (
        select(InboxItem.id, func.coalesce(func.length(InboxItem.raw), 0))
        .join(turns, turns.c.id == InboxItem.id)
        .order_by(turns.c.turn, InboxItem.id)
        .limit(limit)
    )
    if lock:
        due = due.with_for_update(skip_locked=True, of=InboxItem)
    candidates = session.execute(due).all()
    chosen: list[int] = []
    total = 0
    for item_id, size in candidates:
        if chosen and total + size > max_bytes:
            break
        chosen.append(item_id)
        total += size
    if not chosen:
        return []
    return list(
        session.scalars(
            select(InboxItem)
            .where(InboxItem.id.in_(chosen), InboxItem.state == InboxState.PENDING)
            .order_by(InboxItem.id)
        )
    )


def claim_due(
    session: Session,
    now: datetime,
    lease: timedelta,
    limit: int = 20,
    channels: Sequence[str] = tuple(Channel),
) -> list[OutboxItem]:
    """Lease due outbox rows: push their next attempt past the lease so no one else takes them.

    On PostgreSQL the rows are locked with SKIP LOCKED, so several senders never pick the same row.
    A sender that dies mid-delivery leaves the row to be retried once the lease runs out.
    """
    rows = session.scalars(
        select(OutboxItem)
        .where(
            OutboxItem.status == OutboxStatus.PENDING,
            OutboxItem.next_attempt_at <= now,
            OutboxItem.channel.in_(list(channels)),
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
    session.flush()
    return list(rows)


def mark_sent(session: Session, item_id: int, now: datetime) -> None:
    item = session.get_one(OutboxItem, item_id)
    item.status = OutboxStatus.SENT
    item.sent_at = now
    item.last_error = None


def mark_failed(session: Session, item_id: int, error: str, retry_at: datetime) -> OutboxItem:
    item = session.get_one(OutboxItem, item_id)
    item.last_error = error[:2000]
    item.next_attempt_at = retry_at
    return item


class CorrectedRequest(NamedTuple):
    ticket_id: int
    subject: str
    body: str
    priority: str  # the latest priority staff chose, else the one in force on the ticket
    service: str | None  # the latest service staff chose (None: they decided none)
    message_id: int = 0  # the customer message the decision was about


def corrected_requests(session: Session) -> list[CorrectedRequest]:
    """Every customer message staff decided a priority or a service of, with the latest
    decision about it: a decision is paired with the text it was about (the message staff
    saw when deciding; decisions from before that was recorded: the ticket's first message).
    A message whose service alone was decided carries the priority in force on its ticket."""
    priorities: dict[tuple[int, int | None], str] = {}
    services: dict[tuple[int, int | None], str] = {}
    for correction in session.scalars(select(Correction).order_by(Correction.id)):
        key = (correction.ticket_id, correction.message_id)
        if correction.new_priority is not None:
            priorities[key] = correction.new_priority
        if correction.new_service is not None:
            services[key] = correction.new_service
    rows = []
    for ticket_id, message_id in sorted(
        priorities.keys() | services.keys(), key=lambda k: (k[0], k[1] or 0)
    ):
        query = select(Message).where(Message.ticket_id == ticket_id, Message.direction == "in")
        if message_id is not None:
            query = query.where(Message.id == message_id)
        message = session.scalars(query.order_by(Message.id).limit(1)).first()
        priority = priorities.get((ticket_id, message_id))
        if priority is None:
            ticket = session.get_one(Ticket, ticket_id)
            priority = ticket.final_priority or ticket.proposed_priority
        if message is not None and priority is not None:
            rows.append(
                CorrectedRequest(
                    ticket_id,
                    message.subject,
                    message.body_text,
                    priority,
                    services.get((ticket_id, message_id)),
                    message.id,
                )
            )
    return rows


MAX_CITED = 100  # References beyond this are not looked up (work per message is bounded)
TICKET_TAG = re.compile(r"\[Ticket#(\d{16,})\]", re.IGNORECASE)


def find_follow_up(
    session: Session, subject: str, message_ids: Sequence[str], number: str | None = None
) -> TicketRef | None:
    """The ticket a message answers: the number the sender chose (a chat's follow-up button),
    our number in the subject, else a stored Message-ID it cites.

    Never by a bare subject (a "Drucker" mail is not a reply to another "Drucker" mail)."""
    match = TICKET_TAG.search(subject)
    number = number or (match.group(1) if match else None)
    ticket = None
    if number:
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None and message_ids:
        cited = [m[:MESSAGE_ID_LENGTH] for m in message_ids[-MAX_CITED:]]
        ticket = session.scalars(
            select(Ticket)
            .join(Message, Message.ticket_id == Ticket.id)
            .where(Message.message_id_header.in_(cited))
            .order_by(Ticket.id.desc())
            .limit(1)
        ).first()
    if ticket is None or ticket.number is None:
        return None
    return TicketRef(ticket.id, ticket.number, ticket.status, ticket.customer_id, ticket.sender)


def customer_domains(session: Session, customer_id: int) -> set[str]:
    """The mail domains of a customer's contacts."""
    emails = session.scalars(select(Contact.email).where(Contact.customer_id == customer_id))
    return {email.rpartition("@")[2].lower() for email in emails if email}


def entitlement(
    session: Session, contract: ContractView, today: date, *, lock: bool = True
) -> Entitlement:
    """Balances of `contract` from its ledger; with `lock`, the contract row stays locked until
    commit. The lock (FOR UPDATE on PostgreSQL; SQLite's writer lock, taken at BEGIN IMMEDIATE)
    makes concurrent requests on the last unit of a quota queue up, so exactly one is admitted.
    Pages and reports that only show balances pass lock=False and hold up no intake."""
    if lock:
        session.execute(select(Contract.id).where(Contract.id == contract.id).with_for_update())
    year = contract_year(contract.start, today)
    sums = dict(
        session.execute(
            select(LedgerEntry.kind, func.coalesce(func.sum(LedgerEntry.amount), 0.0))
            .where(
                LedgerEntry.contract_id == contract.id,
                (LedgerEntry.kind != "request") | (LedgerEntry.contract_year == year),
            )
            .group_by(LedgerEntry.kind)
        ).all()
    )
    return Entitlement(
        contract=contract,
        year=year,
        requests_used=int(-sums.get("request", 0)),
        points_balance=None
        if contract.points is None
        else contract.points + sums.get("points", 0.0),
        hours_left=None if contract.hours is None else contract.hours + sums.get("hours", 0.0),
    )


def add_ledger(session: Session, entry: LedgerEntry) -> LedgerEntry:
    session.add(entry)  # flushed with the next query or the commit (balances are queries)
    return entry


def book(
    session: Session,
    charge: Charge,
    *,
    contract: ContractView,
    ticket_id: int,
    received_at: datetime,
    zone: ZoneInfo,
    now: datetime,
    staff: str | None = None,
    reason: str | None = None,
) -> LedgerEntry:
    """Write what a request uses up, counted in the contract year of its receipt date."""
    return add_ledger(
        session,
        LedgerEntry(
            contract_id=contract.id,
            ticket_id=ticket_id,
            kind=charge.kind.value,
            amount=charge.amount,
            contract_year=contract_year(contract.start, received_at.astimezone(zone).date()),
            staff=staff,
            reason=reason or charge.reason,
            created_at=now,
        ),
    )


def recipients_of(
    session: Session, message_ids: Collection[str], addresses: Collection[str]
) -> set[str]:
    """Which of `addresses` we sent one of the messages `message_ids` to, in one query."""
    if not message_ids or not addresses:
        return set()
    return set(
        session.scalars(
            select(Message.recipient)
            .where(
                Message.direction == "out",
                Message.message_id_header.in_(list(message_ids)),
                Message.recipient.in_(list(addresses)),
            )
            .distinct()
        )
    )


def reply_times(session: Session, address: str, since: datetime, limit: int) -> list[datetime]:
    """When we wrote to `address` since `since`, the latest `limit` times."""
    return list(
        session.scalars(
            select(Message.created_at)
            .where(
                Message.direction == "out",
                Message.recipient == address,
                Message.created_at >= since,
            )
            .order_by(Message.created_at.desc())
            .limit(limit)
        )
    )
