"""The mail route to Znuny (znuny.mode: mail), for installations without the REST web service:
the customer's original mail goes to Znuny's PostMaster through our relay, with X-OTRS-
headers (znuny.header_prefix) that set priority, queue, customer user and our reference.

Znuny must trust these headers only from our relay (docs/ZNUNY.md): every header of that kind
the customer wrote is removed here, so a customer cannot pick their own priority or queue.
"""

from __future__ import annotations

import re
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy.orm import Session

from intake.config import Config
from intake.db.tables import Message, Ticket
from intake.delivery import queue_mail
from intake.domain import Channel
from intake.znuny.fields import dynamic_fields, ticket_fields

# Header families Znuny's and OTOBO's PostMaster act on, whatever our own prefix is.
TRUSTED_HEADERS = re.compile(r"^x-(otrs|otobo)-", re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _value(text: str) -> str:
    """A header value we write: one line, no control characters."""
    return CONTROL.sub(" ", text).strip()[:900]


def headers_for(cfg: Config, ticket: Ticket) -> list[tuple[str, str]]:
    """The X-OTRS- headers that carry our triage to Znuny's PostMaster."""
    prefix = cfg.znuny.header_prefix
    headers = [(f"{prefix}{name}", value) for name, value in ticket_fields(cfg, ticket).items()]
    headers += [
        (f"{prefix}DynamicField-{name}", value) for name, value in dynamic_fields(cfg, ticket)
    ]
    return [(name, _value(value)) for name, value in headers]


def forwarded(cfg: Config, ticket: Ticket, message: Message, now: datetime) -> bytes:
    """The mail for Znuny's PostMaster: the original (a chat message as a mail of its own)
    without any X-OTRS-/X-OTOBO- header of the customer's, with ours on top."""
    if message.channel == Channel.EMAIL.value and message.raw:
        mail = message_from_bytes(message.raw, policy=policy.compat32)
        prefix = cfg.znuny.header_prefix.lower()
        for name in {n for n in mail if TRUSTED_HEADERS.match(n) or n.lower().startswith(prefix)}:
            del mail[name]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers_for(cfg, ticket))
        return head.encode() + mail.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))
    built = EmailMessage(policy=policy.SMTP)
    for name, value in headers_for(cfg, ticket):
        built[name] = value
    built["From"] = _value(message.sender)
    built["To"] = cfg.znuny.postmaster_address or ""
    built["Subject"] = _value(message.subject or ticket.subject or f"Anfrage {ticket.number}")
    built["Date"] = format_datetime(now)
    built.set_content(message.body_text or "(ohne Text)")
    return built.as_bytes()


def forward(session: Session, cfg: Config, ticket: Ticket, message: Message, now: datetime) -> None:
    """Queue the forward to znuny.postmaster_address in the caller's transaction."""
    assert cfg.znuny.postmaster_address is not None
    queue_mail(
        session,
        cfg,
        ticket,
        to=cfg.znuny.postmaster_address,
        subject=message.subject,
        payload=forwarded(cfg, ticket, message, now),
        now=now,
    )
