"""Queue what we say: a reply mail, a chat message, a staff alert. Nothing is sent here; each
is a stored outbound message plus an outbox row, written in the caller's transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from intake.calendar import format_deadline
from intake.compose import compose_reply
from intake.config import Config
from intake.db import store
from intake.db.tables import Message, OutboxItem, Ticket
from intake.domain import (
    Channel,
    ContractModel,
    Prediction,
    Priority,
    TicketStatus,
    machine_address,
    usable_address,
)
from intake.logs import log_event
from intake.replies import Reply, ReplyContext, ReplyKind, reply_context

log = logging.getLogger("intake.delivery")

TELEGRAM_TEXT_LIMIT = 4096  # the Bot API refuses longer messages
BOT_SENDER = "telegram-bot"

# A row of inline buttons: (label, callback data).
Buttons = Sequence[Sequence[tuple[str, str]]]


def may_mail(cfg: Config, address: str) -> bool:
    """Whether a mail we write on our own (a reply, a staff decision's notice, a link code) may go
    to `address`: the one rule for every such mail, as send_reply asks it. Only a plain address
    (usable_address); never one of ours, which would answer itself in a loop; never a machine's
    (RFC 3834 section 2: automatic mail goes to no automaton)."""
    if not usable_address(address):
        why = "unusable address"
    elif address.lower() in {*cfg.smtp.addresses, cfg.mail.from_address.lower()}:
        why = "own address"
    elif machine_address(address):
        why = "machine address"
    else:
        return True
    log_event(log, "reply-skipped", address=address, why=why)
    return False


def send_reply(
    session: Session,
    cfg: Config,
    ticket: Ticket | None,
    reply: Reply,
    *,
    to: str,
    now: datetime,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> OutboxItem | None:
    """Compose the reply mail, keep it as an outbound message and queue it in the outbox; None
    if no mail may go to `to` (may_mail)."""
    if not may_mail(cfg, to):
        return None
    mail = cfg.mail
    message_id, payload = compose_reply(
        reply,
        to=to,
        from_address=mail.from_address,
        from_name=mail.from_name,
        domain=mail.domain,
        now=now,
        zone=cfg.zone,
        in_reply_to=in_reply_to,
        references=references,
    )
    outbound = Message(
        ticket_id=ticket.id if ticket is not None else None,
        direction="out",
        channel=Channel.EMAIL.value,
        message_id_header=message_id,
        sender=mail.from_address,
        recipient=to,
        subject=reply.subject,
        body_text=reply.text,
        raw=payload,
        created_at=now,
    )
    return _enqueue(session, outbound, Channel.EMAIL, to, payload, now)


def queue_mail(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    *,
    to: str,
    subject: str,
    payload: bytes,
    now: datetime,
) -> OutboxItem:
    """Queue a finished mail (a forward to Znuny's PostMaster) to `to` through the relay."""
    outbound = Message(
        ticket_id=ticket.id,
        direction="out",
        channel=Channel.EMAIL.value,
        sender=cfg.mail.from_address,
        recipient=to,
        subject=subject,
        raw=payload,
        created_at=now,
    )
    return _enqueue(session, outbound, Channel.EMAIL, to, payload, now)


def send_chat(
    session: Session,
    chat_id: int,
    text: str,
    *,
    now: datetime,
    ticket_id: int | None = None,
    buttons: Buttons = (),
) -> OutboxItem:
    """Queue a Telegram message (with inline buttons, if any) to `chat_id`."""
    text = text.strip()
    if len(text) > TELEGRAM_TEXT_LIMIT:
        text = text[: TELEGRAM_TEXT_LIMIT - 1] + "…"
    body: dict[str, Any] = {"chat_id": chat_id, "text": text}
    if buttons:
        body["reply_markup"] = {
            "inline_keyboard": [
                [{"text": label, "callback_data": data} for label, data in row] for row in buttons
            ]
        }
    payload = json.dumps(body, ensure_ascii=False).encode()
    outbound = Message(
        ticket_id=ticket_id,
        direction="out",
        channel=Channel.TELEGRAM.value,
        sender=BOT_SENDER,
        recipient=str(chat_id),
        body_text=text,
        created_at=now,
    )
    return _enqueue(session, outbound, Channel.TELEGRAM, str(chat_id), payload, now)


def answer_ticket(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    reply: Reply,
    *,
    now: datetime,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> bool:
    """Send the customer `reply` where the ticket came from: its chat, else its mail address."""
    if ticket.channel == Channel.TELEGRAM.value and ticket.chat_id is not None:
        send_chat(session, ticket.chat_id, reply.text, now=now, ticket_id=ticket.id)
        return True
    queued = send_reply(
        session,
        cfg,
        ticket,
        reply,
        to=ticket.sender,
        now=now,
        in_reply_to=in_reply_to,
        references=references,
    )
    return queued is not None


# A staff alert's button names its priority by the first letter (callback data is short).
PRIORITY_CODES = {p.value[0]: p for p in Priority}


def priority_callback(number: str, priority: Priority) -> str:
    """Callback data of a staff alert's button (at most 64 bytes: 'prio:<number>:<K|H|M|N>')."""
    return f"prio:{number}:{priority.value[0]}"


def queue_staff_alert(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    prediction: Prediction,
    customer_name: str,
    body: str,
    now: datetime,
) -> bool:
    """Post a possibly critical request to the staff chat, with a button per priority."""
    chat_id = cfg.telegram.staff_chat_id
    if not cfg.telegram.enabled or chat_id is None or ticket.number is None:
        return False
    critical = prediction.probabilities.get(Priority.KRITISCH, 0.0)
    excerpt = " ".join(body.split())[:300]
    lines = [
        f"⚠️ Möglicherweise kritisch: Ticket {ticket.number}",
        f"Kunde: {customer_name or ticket.sender}",
        f"Kanal: {'Telegram' if ticket.channel == Channel.TELEGRAM.value else 'E-Mail'}",
        f"Vorschlag: {prediction.priority.value} ({prediction.confidence:.0%}), "
        f"P(Kritisch) {critical:.0%}",
        f"Status: {TicketStatus(ticket.status).label}",
    ]
    if ticket.deadline is not None:
        lines.append(f"Antwort bis: {format_deadline(ticket.deadline, cfg.zone, 'de')}")
    if ticket.subject:
        lines.append(f"Betreff: {ticket.subject[:200]}")
    if excerpt:
        lines.append(f"„{excerpt}“")
    lines.append("Priorität bestätigen oder korrigieren:")
    buttons = [
        [
            (
                ("✓ " if p is prediction.priority else "") + p.value,
                priority_callback(ticket.number, p),
            )
            for p in Priority
        ]
    ]
    send_chat(session, chat_id, "\n".join(lines), now=now, ticket_id=ticket.id, buttons=buttons)
    return True


def _enqueue(
    session: Session,
    outbound: Message,
    channel: Channel,
    recipient: str,
    payload: bytes,
    now: datetime,
) -> OutboxItem:
    session.add(outbound)
    session.flush()
    return store.enqueue(
        session,
        OutboxItem(
            ticket_id=outbound.ticket_id,
            message_id=outbound.id,
            channel=channel.value,
            recipient=recipient,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        ),
    )


def ticket_reply_context(
    ticket: Ticket,
    kind: ReplyKind,
    cfg: Config,
    model: ContractModel | None = None,
    **values: Any,
) -> ReplyContext:
    """A reply's context from a stored ticket (staff decisions, a follow-up's raise): its
    language, contract model (or the one given), priority in force and deadline."""
    contact = ticket.contact
    contract = ticket.contract
    if model is None and contract is not None:
        model = ContractModel(contract.model)
    current = ticket.final_priority or ticket.proposed_priority
    return reply_context(
        kind,
        language=ticket.language if ticket.language in ("de", "en") else "de",
        ticket_number=ticket.number or "",
        subject=ticket.subject,
        sender=ticket.sender,
        contact_name=contact.name if contact else "",
        model=model,
        priority=Priority(current) if current else None,
        deadline=ticket.deadline,
        zone=cfg.zone,
        **values,
    )
