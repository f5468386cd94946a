"""The accept stage: store what arrived (raw bytes, envelope, peer, time) in one short
transaction and hand back an opaque queue id. Nothing is parsed or decided here, so nothing a
sender writes can make storing fail; triage (`intake/triage.py`) works behind it.

Like an MTA's queue (and Mailman's `lmtp` runner), the SMTP 250 and the IMAP flag promise that
the message is durably stored, not that it is already triaged."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from intake.db.tables import InboxItem
from intake.domain import Channel, InboxState

ENVELOPE_CHARS = 1000  # what we keep of a MAIL FROM, RCPT TO or peer (they are the sender's)
MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class Arrival:
    """A message as an adapter received it, before anyone has read it."""

    channel: Channel
    raw: bytes
    received_at: datetime
    envelope_from: str | None = None
    recipients: Sequence[str] = field(default_factory=tuple)
    peer: str | None = None


def new_queue_id() -> str:
    """Random, so it tells a sender nothing about our tickets or our volume."""
    return secrets.token_hex(8).upper()


def _text(value: str | None) -> str | None:
    # NUL is refused by PostgreSQL and lone surrogates by every driver: the raw bytes keep all.
    if value is None:
        return None
    cut = value[:ENVELOPE_CHARS].replace("\x00", "")
    return cut.encode("utf-8", "replace").decode("utf-8")


def store_arrival(session: Session, arrival: Arrival) -> str:
    """Insert `arrival` into the inbox in the caller's transaction; return its queue id."""
    queue_id = new_queue_id()
    session.execute(
        insert(InboxItem).values(
            queue_id=queue_id,
            channel=arrival.channel.value,
            raw=arrival.raw,
            envelope_from=_text(arrival.envelope_from),
            recipients=[_text(r) for r in list(arrival.recipients)[:MAX_RECIPIENTS]],
            peer=_text(arrival.peer),
            received_at=arrival.received_at,
            state=InboxState.PENDING,
            attempts=0,
            next_attempt_at=arrival.received_at,
        )
    )
    return queue_id


class Acceptor:
    """Stores arrivals, one short transaction each, and wakes triage after the commit."""

    def __init__(
        self, sessions: sessionmaker[Session], on_accepted: Callable[[], None] | None = None
    ) -> None:
        self.sessions = sessions
        self.on_accepted = on_accepted

    def accept(self, arrival: Arrival) -> str:
        """Commit `arrival` or raise (the adapter answers 451 / leaves the mail unflagged)."""
        with self.sessions.begin() as session:
            queue_id = store_arrival(session, arrival)
        self.accepted()
        return queue_id

    def accepted(self) -> None:
        """Tell triage that something was committed (also for callers with their own
        transaction, such as the IMAP poller)."""
        if self.on_accepted is not None:
            self.on_accepted()
