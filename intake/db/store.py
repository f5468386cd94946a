"""Queries and writes; every function takes a Session and never commits (the caller owns it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from intake.db.tables import Contact, Contract, Customer, Message, OutboxItem, Ticket
from intake.domain import ContractModel, ContractView, CustomerView

# OTRS-style numbers: the receipt date then an 8-digit counter that starts at 10000001.
TICKET_COUNTER_BASE = 10_000_000


def format_ticket_number(day: date, ticket_id: int) -> str:
    return f"{day:%Y%m%d}{TICKET_COUNTER_BASE + ticket_id:08d}"


def find_inbound(session: Session, dedupe_key: str) -> Message | None:
    return session.scalars(select(Message).where(Message.dedupe_key == dedupe_key)).first()


def find_contact(session: Session, email: str) -> Contact | None:
    return session.scalars(
        select(Contact)
        .where(Contact.email == email.lower())
        .options(selectinload(Contact.customer))
    ).first()


def customer_view(customer: Customer) -> CustomerView:
    return CustomerView(customer.id, customer.number, customer.name, customer.state)


def contract_views(session: Session, customer_id: int) -> list[ContractView]:
    rows = session.scalars(
        select(Contract).where(Contract.customer_id == customer_id).order_by(Contract.start)
    )
    return [
        ContractView(
            id=c.id,
            model=ContractModel(c.model),
            start=c.start,
            end=c.end,
            quota=c.quota,
            points=c.points,
            hours=c.hours,
        )
        for c in rows
    ]


def add_ticket(session: Session, ticket: Ticket, zone: ZoneInfo) -> Ticket:
    """Insert the ticket and give it its number, derived from the never-reused primary key."""
    session.add(ticket)
    session.flush()
    ticket.number = format_ticket_number(ticket.received_at.astimezone(zone).date(), ticket.id)
    session.flush()
    return ticket


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
    session.add(item)
    session.flush()
    return item


def claim_due(session: Session, now: datetime, lease: timedelta, limit: int = 20) -> list[int]:
    """Lease due outbox rows: push their next attempt past the lease so no one else takes them.

    On PostgreSQL the rows are locked with SKIP LOCKED, so several senders never pick the same row.
    A sender that dies mid-delivery leaves the row to be retried once the lease runs out.
    """
    rows = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + lease
    session.flush()
    return [row.id for row in rows]


def mark_sent(session: Session, item_id: int, now: datetime) -> None:
    item = session.get_one(OutboxItem, item_id)
    item.status = "sent"
    item.sent_at = now
    item.last_error = None


def mark_failed(session: Session, item_id: int, error: str, retry_at: datetime) -> OutboxItem:
    item = session.get_one(OutboxItem, item_id)
    item.last_error = error[:2000]
    item.next_attempt_at = retry_at
    return item
