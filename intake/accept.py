"""The accept stage: store what arrived (raw bytes, envelope, peer, time) in one short
transaction and hand back an opaque queue id. Nothing is parsed or decided here, so nothing a
sender writes can make storing fail; triage (`intake/triage.py`) works behind it.

Like an MTA's queue (and Mailman's `lmtp` runner), the SMTP 250 and the IMAP flag promise that
the message is durably stored, not that it is already triaged."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from intake.db.tables import InboxItem
from intake.domain import Channel, InboxState

ENVELOPE_CHARS = 1000  # what we keep of a MAIL FROM, RCPT TO or peer (they are the sender's)
MAX_RECIPIENTS = 100
DOOR_QUIET = 0.01  # seconds without an arrival before triage takes the database again


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
    """Stores arrivals and wakes triage after the commit.

    The SMTP door submits from the event loop (`submit`): a writer thread stores everything
    that arrived meanwhile in one transaction (group commit: one fsync for eight senders, not
    eight), and falls back to one transaction per message when the batch fails, so one bad
    arrival never costs another its 250."""

    def __init__(
        self, sessions: sessionmaker[Session], on_accepted: Callable[[], None] | None = None
    ) -> None:
        self.sessions = sessions
        self.on_accepted = on_accepted
        self._pending: list[tuple[Arrival, asyncio.Future[str]]] = []
        self._ready = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._writing = False
        self._last_arrival = 0.0

    def accept(self, arrival: Arrival) -> str:
        """Commit `arrival` or raise (the adapter answers 451 / leaves the mail unflagged)."""
        with self.sessions.begin() as session:
            queue_id = store_arrival(session, arrival)
        self.accepted()
        return queue_id

    async def submit(self, arrival: Arrival) -> str:
        """`accept` for the event loop: the queue id once committed, or the error raised."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the intake is stopping")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="accept", daemon=True)
                self._writer.start()
            self._pending.append((arrival, future))
            self._last_arrival = time.monotonic()
            self._ready.notify()
        return await future

    def busy(self) -> bool:
        """Whether arrivals are coming in: waiting for their commit, or one arrived within the
        last DOOR_QUIET seconds (senders in a burst send the next one right after the 250)."""
        recent = time.monotonic() - self._last_arrival < DOOR_QUIET
        return recent or bool(self._pending) or self._writing

    def close(self) -> None:
        """Store what was submitted, then stop the writer."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            writer = self._writer
        if writer is not None:
            writer.join(30)

    def _write(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                batch, self._pending = self._pending, []
                if not batch and self._closed:
                    return
                self._writing = True
            try:
                results = self._store_batch([a for a, _ in batch])
            finally:
                self._writing = False
            for (_, future), result in zip(batch, results, strict=True):
                future.get_loop().call_soon_threadsafe(_resolve, future, result)
            if any(isinstance(r, str) for r in results):
                self.accepted()

    def _store_batch(self, arrivals: list[Arrival]) -> list[str | BaseException]:
        try:
            with self.sessions.begin() as session:
                return [store_arrival(session, a) for a in arrivals]
        except Exception as exc:
            if len(arrivals) == 1:
                return [exc]
        results: list[str | BaseException] = []
        for arrival in arrivals:  # one at a time: each gets its own answer
            try:
                with self.sessions.begin() as session:
                    results.append(store_arrival(session, arrival))
            except Exception as exc:
                results.append(exc)
        return results

    def accepted(self) -> None:
        """Tell triage that something was committed (also for callers with their own
        transaction, such as the IMAP poller)."""
        if self.on_accepted is not None:
            self.on_accepted()


def _resolve(future: asyncio.Future[str], result: str | BaseException) -> None:
    if future.done():  # the sender went away meanwhile; the message is stored all the same
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
