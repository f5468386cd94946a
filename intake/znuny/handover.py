"""The hand-over to the provider's Znuny: what is handed over and when (in the caller's
transaction, as outbox rows on the channel "znuny"), and the relay that delivers those rows
through the GenericInterface (intake/znuny/client.py).

One row per thing to tell Znuny, addressed to our ticket number, so the outbox keeps a ticket's
rows in order (the create before its updates) and retries them with backoff:
- create: the ticket with its opening message (an accepted ticket, or a held one staff accept);
- article: a customer's follow-up, as a customer article;
- priority: a staff correction, as the new priority and an internal article.

Exactly once: a ticket that has its Znuny id is not created again, and a retry after an
unclear outcome (timeout, dropped answer, HTTP 5xx) first searches Znuny for our ticket number
(dynamic field IntakeReference). Znuny's refusals (unknown queue, missing priority...) are
retried `znuny.attempts` times; then the ticket shows "Übergabe fehlgeschlagen" with Znuny's
message until staff retry it (retry()).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import Config
from intake.db import store
from intake.db.tables import Attachment, Message, OutboxItem, Ticket
from intake.domain import Direction, EventKind, OutboxStatus, Priority, TicketStatus
from intake.lifecycle import add_event
from intake.logs import log_event
from intake.outbox import Envelope, Refused
from intake.znuny.client import JSON, Created, ZnunyClient, ZnunyError
from intake.znuny.fields import dynamic_fields, ticket_fields

log = logging.getLogger("intake.znuny")

HANDOVER_CHANNEL = "znuny"
TITLE_LENGTH = 255  # Znuny's ticket title column
# Znuny's Article content type for plain text (its own spelling of the charset).
TEXT_PLAIN = {
    "ContentType": "text/plain; charset=utf8",
    "MimeType": "text/plain",
    "Charset": "utf8",
}


class Op(StrEnum):
    CREATE = "create"
    ARTICLE = "article"
    PRIORITY = "priority"


class NotYetHandedOver(Exception):
    """An update for a ticket whose create has not gone through yet: it waits for it."""


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


# -- delivery (the outbox's relay for the channel "znuny") ---------------------------------------


class ZnunyRelay:
    """Delivers hand-over rows; reads what it sends from the database when it sends it, so a
    create carries the priority and deadline in force then."""

    def __init__(
        self, cfg: Config, sessions: sessionmaker[Session], client: ZnunyClient, clock: Clock
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.client = client
        self.clock = clock

    def deliver(self, envelope: Envelope) -> Created | None:
        order = json.loads(envelope.payload)
        try:
            with self.sessions() as session:
                ticket = session.scalars(
                    select(Ticket).where(Ticket.number == envelope.recipient)
                ).one()
                op = Op(order["op"])
                if op is Op.CREATE:
                    return self._create(session, ticket, order)
                if ticket.znuny_ticket_id is None:
                    raise NotYetHandedOver(f"Ticket {ticket.number} ist noch nicht in Znuny")
                # The article's history comment names the row: a retry after a lost answer
                # finds it in the ticket's history and adds nothing twice.
                mark = f"intake-outbox-{envelope.id}"
                if envelope.attempts > 1 and any(
                    h.get("Name") == mark for h in self.client.history(ticket.znuny_ticket_id)
                ):
                    return None
                if op is Op.ARTICLE:
                    message = session.get(Message, order["message"])
                    assert message is not None
                    article = {**self._article(message), "HistoryType": "FollowUp"}
                    attachments, left_out = self._attachments(session, message)
                    if left_out:
                        article["Body"] += "\n\n" + left_out
                    self.client.update_ticket(
                        ticket.znuny_ticket_id,
                        article={**article, "HistoryComment": mark},
                        attachments=attachments,
                    )
                else:
                    note = {**self._priority_note(order), "HistoryComment": mark}
                    self.client.update_ticket(
                        ticket.znuny_ticket_id,
                        ticket={"Priority": self.cfg.znuny.priorities[Priority(order["new"])]},
                        article=note,
                    )
                return None
        except ZnunyError as exc:
            raise Refused(f"Znuny: {exc}", self.cfg.znuny.attempts) from exc

    def _create(self, session: Session, ticket: Ticket, order: JSON) -> Created | None:
        if ticket.znuny_ticket_id is not None:
            return None  # handed over already; a repeated row changes nothing
        assert ticket.number is not None
        # An earlier try (even one before a staff retry) may have created it and lost the
        # answer: look for our number first, so a ticket is never created twice.
        found = self.client.find_by_reference(ticket.number)
        if found is not None:
            return Created(found[0], found[1], None)
        message = session.get(Message, order["message"])
        assert message is not None
        article = self._article(message)
        attachments, left_out = self._attachments(session, message)
        if left_out:
            article["Body"] += "\n\n" + left_out
        return self.client.create_ticket(
            self._ticket(ticket, message),
            article,
            [{"Name": n, "Value": v} for n, v in dynamic_fields(self.cfg, ticket)],
            attachments,
        )

    def _ticket(self, ticket: Ticket, message: Message) -> JSON:
        title = _line(ticket.subject) or _line(message.body_text)[:80] or f"Anfrage {ticket.number}"
        return {"Title": title[:TITLE_LENGTH], **ticket_fields(self.cfg, ticket)}

    def _article(self, message: Message) -> JSON:
        return {
            "CommunicationChannel": "Email",
            "SenderType": "customer",
            "IsVisibleForCustomer": 1,
            "From": message.sender,
            "Subject": (_line(message.subject) or "(ohne Betreff)")[:TITLE_LENGTH],
            "Body": message.body_text or "(ohne Text)",
            **TEXT_PLAIN,
        }

    def _attachments(self, session: Session, message: Message) -> tuple[list[JSON], str]:
        """The files up to znuny.max_attachment_bytes, base64; a line naming the rest."""
        limit = self.cfg.znuny.max_attachment_bytes
        sent: list[JSON] = []
        left: list[str] = []
        for file in session.scalars(
            select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.id)
        ):
            if file.data is not None and file.size <= limit:
                sent.append(
                    {
                        "Content": base64.b64encode(file.data).decode(),
                        "ContentType": file.content_type or "application/octet-stream",
                        "Filename": file.filename or "anhang",
                    }
                )
            else:
                left.append(f"{file.filename} ({file.size:,} Bytes)".replace(",", "."))
        note = ""
        if left:
            note = "Nicht übertragene Anhänge (zu groß; beim Support-Eingang gespeichert): " + (
                ", ".join(left)
            )
        return sent, note

    def _priority_note(self, order: JSON) -> JSON:
        old = order.get("old") or "–"
        text = (
            f"Priorität geändert von {old} auf {order['new']}: {order['reason']} ({order['staff']})"
        )
        return {
            "CommunicationChannel": "Internal",
            "SenderType": "agent",
            "IsVisibleForCustomer": 0,
            "HistoryType": "AddNote",
            "Subject": f"Priorität geändert: {order['new']}",
            "Body": text,
            **TEXT_PLAIN,
        }

    def record(self, session: Session, envelope: Envelope, receipt: object) -> None:
        if not isinstance(receipt, Created):
            return
        ticket = session.scalars(select(Ticket).where(Ticket.number == envelope.recipient)).one()
        if ticket.znuny_ticket_id is not None:
            return
        ticket.znuny_ticket_id = receipt.ticket_id
        ticket.znuny_ticket_number = receipt.ticket_number
        if TicketStatus(ticket.status) in (TicketStatus.NEW, TicketStatus.IN_PROGRESS):
            ticket.status = TicketStatus.HANDED_OVER
        now = self.clock()
        add_event(
            session,
            ticket,
            EventKind.HANDOVER,
            staff=None,
            what=f"an Znuny übergeben: Ticket#{receipt.ticket_number}",
            now=now,
        )
        log_event(
            log,
            "handed-over",
            ticket=ticket.number,
            znuny_ticket_id=receipt.ticket_id,
            znuny_ticket_number=receipt.ticket_number,
        )

    def failed(self, session: Session, envelope: Envelope, error: str) -> None:
        ticket = session.scalars(select(Ticket).where(Ticket.number == envelope.recipient)).one()
        now = self.clock()
        add_event(
            session,
            ticket,
            EventKind.HANDOVER,
            staff=None,
            what="Übergabe fehlgeschlagen",
            reason=error[:500],
            now=now,
        )
        log_event(
            log, "handover-failed", level=logging.ERROR, ticket=ticket.number, error=error[:500]
        )

    def close(self) -> None:
        self.client.close()


def _line(text: str) -> str:
    """One line of plain text: no line breaks or control characters."""
    return " ".join(text.split())
