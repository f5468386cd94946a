"""The outbox's relay for the channel "znuny": delivers the rows intake/znuny/handover.py
queued through the GenericInterface (intake/znuny/client.py) and records the outcome."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import Config
from intake.db.tables import ZNUNY_NAME_LENGTH, Attachment, Message, Ticket
from intake.domain import EventKind, Priority, TicketStatus
from intake.lifecycle import add_event
from intake.logs import log_event
from intake.outbox import Envelope, Refused
from intake.znuny.client import JSON, Created, ZnunyClient, ZnunyError
from intake.znuny.fields import dynamic_fields, ticket_fields
from intake.znuny.handover import Op

log = logging.getLogger("intake.znuny")

TITLE_LENGTH = 255  # Znuny's ticket title column
# Znuny's Article content type for plain text (its own spelling of the charset).
TEXT_PLAIN = {
    "ContentType": "text/plain; charset=utf8",
    "MimeType": "text/plain",
    "Charset": "utf8",
}


class NotYetHandedOver(Exception):
    """An update for a ticket whose create has not gone through yet: it waits for it."""


@dataclass(frozen=True)
class Request:
    """One row's call to Znuny, read from the database before any of it is sent."""

    op: Op
    number: str  # our ticket number
    znuny_id: int | None
    ticket: JSON | None
    article: JSON
    fields: list[JSON] = field(default_factory=list)
    attachments: list[JSON] = field(default_factory=list)


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
        # Read what to send, then let the database go before talking to Znuny: on SQLite the
        # one connection is the door's and triage's too, and Znuny may take its time.
        with self.sessions() as session:
            request = self._request(session, envelope)
        if request is None:
            return None
        try:
            return self._send(request, envelope)
        except ZnunyError as exc:
            raise Refused(f"Znuny: {exc}", self.cfg.znuny.attempts) from exc

    def _request(self, session: Session, envelope: Envelope) -> Request | None:
        """What the row asks of Znuny, from the database as it is now; None if nothing is left
        to do (the ticket was handed over already)."""
        order = json.loads(envelope.payload)
        op = Op(order["op"])
        ticket = self._ticket_of(session, envelope)
        if op is Op.CREATE:
            if ticket.znuny_ticket_id is not None:
                return None  # a repeated row changes nothing
        elif ticket.znuny_ticket_id is None:
            raise NotYetHandedOver(f"Ticket {ticket.number} ist noch nicht in Znuny")
        # The article's history comment names the row: a retry after a lost answer finds it
        # in the ticket's history and adds nothing twice.
        mark = f"intake-outbox-{envelope.id}"
        if op is Op.PRIORITY:
            return Request(
                op,
                ticket.number or "",
                ticket.znuny_ticket_id,
                ticket={"Priority": self.cfg.znuny.priorities[Priority(order["new"])]},
                article={**self._priority_note(order), "HistoryComment": mark},
            )
        message = session.get(Message, order["message"])
        assert message is not None
        article = self._article(message)
        attachments, left_out = self._attachments(session, message)
        if left_out:
            article["Body"] += "\n\n" + left_out
        if op is Op.ARTICLE:
            article.update(HistoryType="FollowUp", HistoryComment=mark)
            return Request(
                op, ticket.number or "", ticket.znuny_ticket_id, None, article, [], attachments
            )
        return Request(
            op,
            ticket.number or "",
            None,
            self._ticket(ticket, message),
            article,
            [{"Name": n, "Value": v} for n, v in dynamic_fields(self.cfg, ticket)],
            attachments,
        )

    def _send(self, request: Request, envelope: Envelope) -> Created | None:
        if request.op is Op.CREATE:
            # An earlier try (even one before a staff retry) may have created it and lost the
            # answer: look for our number first, so a ticket is never created twice.
            found = self.client.find_by_reference(request.number)
            if found is not None:
                return Created(found[0], found[1], None)
            assert request.ticket is not None
            return self.client.create_ticket(
                request.ticket, request.article, request.fields, request.attachments
            )
        assert request.znuny_id is not None
        mark = request.article.get("HistoryComment")
        if envelope.attempts > 1 and any(
            h.get("Name") == mark for h in self.client.history(request.znuny_id)
        ):
            return None
        self.client.update_ticket(
            request.znuny_id,
            ticket=request.ticket,
            article=request.article,
            attachments=request.attachments,
        )
        return None

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
        ticket = self._ticket_of(session, envelope)
        if ticket.znuny_ticket_id is not None:
            return
        ticket.znuny_ticket_id = receipt.ticket_id
        ticket.znuny_ticket_number = receipt.ticket_number[:ZNUNY_NAME_LENGTH]
        if TicketStatus(ticket.status) in (TicketStatus.NEW, TicketStatus.IN_PROGRESS):
            ticket.status = TicketStatus.HANDED_OVER
        what = f"an Znuny übergeben: Ticket#{ticket.znuny_ticket_number}"
        add_event(session, ticket, EventKind.HANDOVER, staff=None, what=what, now=self.clock())
        log_event(
            log,
            "handed-over",
            ticket=ticket.number,
            znuny_ticket_id=receipt.ticket_id,
            znuny_ticket_number=ticket.znuny_ticket_number,
        )

    def failed(self, session: Session, envelope: Envelope, error: str) -> None:
        ticket = self._ticket_of(session, envelope)
        ticket.needs_review = True  # up the queue: staff fix the cause and retry
        add_event(
            session,
            ticket,
            EventKind.HANDOVER,
            staff=None,
            what="Übergabe fehlgeschlagen",
            reason=error[:500],
            now=self.clock(),
        )
        log_event(
            log, "handover-failed", level=logging.ERROR, ticket=ticket.number, error=error[:500]
        )

    @staticmethod
    def _ticket_of(session: Session, envelope: Envelope) -> Ticket:
        return session.scalars(select(Ticket).where(Ticket.number == envelope.recipient)).one()

    def close(self) -> None:
        self.client.close()


def _line(text: str) -> str:
    """One line of plain text: no line breaks or control characters."""
    return " ".join(text.split())
