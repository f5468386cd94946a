"""The hand-over to the provider's Znuny: what is handed over and when (in the caller's
transaction, as outbox rows on the channel "znuny"), and where it stands for staff. The outbox
delivers the rows through intake/znuny/relay.py.

One row per thing to tell Znuny, addressed to our ticket number, so the outbox keeps a ticket's
rows in order (the create before its updates) and retries them with backoff:
- create: the ticket with its opening message (an accepted ticket, or a held one staff accept);
- article: a customer's follow-up, as a customer article;
- priority: a staff correction, as the new priority and an internal article.

Exactly once: a ticket that has its Znuny id is not created again, and every create first
searches Znuny for our ticket number (dynamic field IntakeReference), since an earlier try may
have created it and lost the answer (timeout, dropped connection, HTTP 5xx). Znuny's refusals (unknown queue, missing priority...) are
retried `znuny.attempts` times; then the ticket shows "Übergabe fehlgeschlagen" with Znuny's
message until staff retry it (retry()).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.config import Config
from intake.db import store
from intake.db.tables import Message, OutboxItem, Ticket
from intake.domain import Direction, EventKind, OutboxStatus, Priority, TicketStatus
from intake.lifecycle import add_event
from intake.znuny.client import JSON

HANDOVER_CHANNEL = "znuny"


class Op(StrEnum):
    CREATE = "create"
    ARTICLE = "article"
    PRIORITY = "priority"


# -- what is handed over (the caller's transaction) ----------------------------------------------


def _queue(session: Session, ticket: Ticket, message_id: int, body: JSON, now: datetime) -> None:
    assert ticket.number is not None
    store.enqueue(
        session,
        OutboxItem(
            ticket_id=ticket.id,
            message_id=message_id,
            channel=HANDOVER_CHANNEL,
            recipient=ticket.number,
            payload=json.dumps(body, ensure_ascii=False).encode(),
            next_attempt_at=now,
            created_at=now,
        ),
    )


def _started(session: Session, ticket: Ticket) -> bool:
    """Whether the ticket is in Znuny or on its way there."""
    if ticket.znuny_ticket_id is not None:
        return True
    return (
        session.scalar(
            select(OutboxItem.id)
            .where(OutboxItem.ticket_id == ticket.id, OutboxItem.channel == HANDOVER_CHANNEL)
            .limit(1)
        )
        is not None
    )


def hand_over(
    session: Session, cfg: Config, ticket: Ticket, message: Message, now: datetime
) -> bool:
    """Hand an accepted ticket over (once); `message` is its opening message."""
    znuny = cfg.znuny
    if not znuny.enabled or ticket.number is None or _started(session, ticket):
        return False
    if znuny.mode == "mail":
        from intake.znuny.mailroute import forward

        forward(session, cfg, ticket, message, now)
        ticket.status = TicketStatus.HANDED_OVER
        add_event(
            session,
            ticket,
            EventKind.HANDOVER,
            staff=None,
            what=f"per Mail an Znuny weitergeleitet ({znuny.postmaster_address})",
            now=now,
        )
        return True
    _queue(session, ticket, message.id, {"op": Op.CREATE, "message": message.id}, now)
    return True


def follow_up(
    session: Session, cfg: Config, ticket: Ticket, message: Message, now: datetime
) -> bool:
    """A customer's new message on a handed-over ticket becomes a customer article there."""
    if not cfg.znuny.enabled or cfg.znuny.mode != "rest" or not _started(session, ticket):
        return False
    _queue(session, ticket, message.id, {"op": Op.ARTICLE, "message": message.id}, now)
    return True


def priority_changed(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    old: Priority | None,
    new: Priority,
    *,
    staff: str,
    reason: str,
    now: datetime,
) -> bool:
    """A staff correction: the mapped priority and an internal article saying who and why."""
    if not cfg.znuny.enabled or cfg.znuny.mode != "rest" or not _started(session, ticket):
        return False
    message_id = session.scalar(
        select(Message.id)
        .where(Message.ticket_id == ticket.id, Message.direction == Direction.IN)
        .order_by(Message.id)
        .limit(1)
    )
    if message_id is None:
        return False
    body = {
        "op": Op.PRIORITY,
        "old": old.value if old else None,
        "new": new.value,
        "staff": staff,
        "reason": reason,
    }
    _queue(session, ticket, message_id, body, now)
    return True


def retry(session: Session, ticket: Ticket, staff: str, now: datetime) -> int:
    """Staff fixed the configuration: try the failed hand-over rows again from the start."""
    rows = session.scalars(
        select(OutboxItem).where(
            OutboxItem.ticket_id == ticket.id,
            OutboxItem.channel == HANDOVER_CHANNEL,
            OutboxItem.status == OutboxStatus.FAILED,
        )
    ).all()
    for row in rows:
        row.status = OutboxStatus.PENDING
        row.attempts = 0
        row.next_attempt_at = now
    if rows:
        add_event(
            session,
            ticket,
            EventKind.HANDOVER,
            staff=staff,
            what="Übergabe erneut gestartet",
            now=now,
        )
    return len(rows)


def failed_among(session: Session, ticket_ids: list[int]) -> set[int]:
    """Those of the tickets whose hand-over failed (for the queue rows)."""
    if not ticket_ids:
        return set()
    return set(
        session.scalars(
            select(OutboxItem.ticket_id).where(
                OutboxItem.ticket_id.in_(ticket_ids),
                OutboxItem.channel == HANDOVER_CHANNEL,
                OutboxItem.status == OutboxStatus.FAILED,
            )
        )
    )


# -- what staff see ------------------------------------------------------------------------------


class HandoverState(StrEnum):
    PENDING = "pending"
    HANDED_OVER = "handed_over"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {
            "pending": "Übergabe an Znuny läuft",
            "handed_over": "an Znuny übergeben",
            "failed": "Übergabe fehlgeschlagen",
        }[self.value]


@dataclass(frozen=True)
class HandoverView:
    state: HandoverState
    ticket_id: int | None
    ticket_number: str | None
    link: str | None
    error: str | None  # Znuny's message when it failed, or the last one while retrying
    attempts: int


def view(session: Session, cfg: Config, ticket: Ticket) -> HandoverView | None:
    """Where the ticket's hand-over stands; None if it has none."""
    rows = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.ticket_id == ticket.id, OutboxItem.channel == HANDOVER_CHANNEL)
        .order_by(OutboxItem.id)
    ).all()
    if not rows and ticket.znuny_ticket_id is None:
        return None
    failed = [r for r in rows if r.status == OutboxStatus.FAILED]
    waiting = [r for r in rows if r.status == OutboxStatus.PENDING]
    if failed:
        state = HandoverState.FAILED
    elif ticket.znuny_ticket_id is None:
        state = HandoverState.PENDING
    else:
        state = HandoverState.HANDED_OVER
    concern = next(iter(failed or waiting), None)
    link = None
    if cfg.znuny.agent_url and ticket.znuny_ticket_id is not None:
        link = cfg.znuny.agent_url.format(
            ticket_id=ticket.znuny_ticket_id, ticket_number=ticket.znuny_ticket_number or ""
        )
    return HandoverView(
        state=state,
        ticket_id=ticket.znuny_ticket_id,
        ticket_number=ticket.znuny_ticket_number,
        link=link,
        error=concern.last_error if concern is not None else None,
        attempts=concern.attempts if concern is not None else 0,
    )
