"""The triage stage: stored messages become tickets behind the door, a batch at a time.

Each pass takes the oldest due messages from the inbox, parses them, classifies the whole batch
in one vectorised call, runs the rules and records ticket, verdicts and reply (through
`IntakeService.record`) in one transaction for the batch. When the batch fails, each message
gets a transaction (a savepoint) of its own, so one poisonous message cannot hold up the rest: it
is retried `triage.attempts` times and then held for staff as "nicht verarbeitbar" with its raw
bytes. The inbox row is marked done in the same transaction as the ticket, so a restart after
`kill -9` triages every stored message exactly once.

On PostgreSQL the batch's rows are locked with SKIP LOCKED for the whole transaction, so workers
of several instances never take the same message; on SQLite (one instance) the CPU work is done
before the write transaction, which would otherwise hold up the door."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import TriageConfig
from intake.db import store
from intake.db.tables import InboxItem
from intake.domain import Channel, InboundMessage, InboxState, Prediction, usable_address
from intake.logs import log_event
from intake.mail.parse import parse_email
from intake.mail.senderauth import SenderVerifier
from intake.passes import run_passes
from intake.service import IntakeService, Receipt

log = logging.getLogger("intake.triage")
DOOR_WAIT_MAX = 0.2  # seconds triage lets the door go first, at most, per transaction
AUTH_THREADS = 8  # senders checked at once (each waits on DNS, not on the CPU)


class TriageFailed(Exception):
    """Preparing the message (parsing, classifying) failed; it is retried like a record error."""


@dataclass
class Work:
    """One stored message on its way through triage."""

    item_id: int
    queue_id: str
    raw: bytes
    message: InboundMessage
    prediction: Prediction | None = None
    error: str | None = None  # what went wrong while preparing


class TriageWorker:
    def __init__(
        self,
        cfg: TriageConfig,
        sessions: sessionmaker[Session],
        service: IntakeService,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
        door_busy: Callable[[], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.service = service
        self.clock = clock
        self.on_queued = on_queued  # wakes the outbox once replies are committed
        self.door_busy = door_busy  # arrivals wait for their commit: they go first
        engine = sessions.kw["bind"]
        self.lock_rows = engine.dialect.name != "sqlite"
        self.verifier = SenderVerifier(service.cfg.mail)
        self._checks = ThreadPoolExecutor(AUTH_THREADS, thread_name_prefix="senderauth")

    # ---- one pass ------------------------------------------------------------------------
    def run_once(self) -> int:
        """Triage one batch of due messages; return how many were taken (0: nothing due)."""
        now = self.clock()
        if self.lock_rows:
            # PostgreSQL: the batch is one transaction with its rows locked (SKIP LOCKED: other
            # workers take the next ones). It holds what was due: one or two messages when
            # they trickle in, more (fewer commits) when they pile up.
            with self.sessions.begin() as session:
                items = self._claim(session, now, self.cfg.batch_size, lock=True)
                if not items:
                    return 0
                work = self._prepare(items)
                receipts = self._finish_all(session, work, now)
            self._queued(receipts)
            return len(work)
        # SQLite has one writer, which the door shares: the CPU work for a whole batch is done
        # first, then short transactions of a few messages each, after arrivals waiting for
        # their commit, so the 250s never wait for a batch.
        with self.sessions() as session:  # read, and give the one connection back at once
            items = self._claim(session, now, self.cfg.batch_size, lock=False)
        work = self._prepare(items)
        size = self.cfg.write_batch
        for start in range(0, len(work), size):
            self._yield_to_door()
            with self.sessions.begin() as session:
                receipts = self._finish_all(session, work[start : start + size], now)
            self._queued(receipts)
        return len(work)

    def _queued(self, receipts: list[Receipt]) -> None:
        """Wake the outbox once replies or alerts are committed."""
        if self.on_queued is not None and any(r.reply_queued or r.alert_queued for r in receipts):
            self.on_queued()

    def _yield_to_door(self) -> None:
        """Let arrivals waiting for their commit go first (bounded: triage is never starved)."""
        if self.door_busy is None:
            return
        deadline = time.monotonic() + DOOR_WAIT_MAX
        while self.door_busy() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _claim(self, session: Session, now: datetime, limit: int, *, lock: bool) -> list[InboxItem]:
        return store.claim_inbox(session, now, limit, self.cfg.batch_bytes, lock=lock)

    def _prepare(self, items: list[InboxItem]) -> list[Work]:
        """Parse every message, check its sender (DNS lookups, several at once) and classify
        the batch in one call (no writes)."""
        parsed = [self._parse(item) for item in items]
        checked = list(self._checks.map(self._authenticate, items, parsed))
        work = [
            Work(item.id, item.queue_id, item.raw or b"", message)
            for item, message in zip(items, checked, strict=True)
        ]
        try:
            predictions = self.service.classify_many([w.message for w in work])
        except Exception:
            log.exception("classifying a batch of %d failed; one at a time", len(work))
            predictions = []
            for w in work:
                try:
                    predictions.append(self.service.classify(w.message))
                except Exception as exc:
                    w.error = f"Klassifikation fehlgeschlagen: {type(exc).__name__}: {exc}"
                    predictions.append(None)
        for w, prediction in zip(work, predictions, strict=True):
            w.prediction = prediction
        return work

    def _authenticate(self, item: InboxItem, msg: InboundMessage) -> InboundMessage:
        if msg.channel is not Channel.EMAIL or msg.parse_error:
            return msg
        auth = self.verifier.check(item.raw or b"", msg.sender, item.envelope_from, item.peer)
        return replace(msg, sender_auth=auth) if auth is not None else msg

    def close(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _parse(item: InboxItem) -> InboundMessage:
        raw = item.raw or b""
        if item.channel != Channel.EMAIL.value:  # only mail comes through the inbox today
            return InboundMessage(
                channel=Channel(item.channel),
                sender="",
                subject="",
                body="",
                received_at=item.received_at,
                raw=raw,
                parse_error=f"Kanal {item.channel} kann hier nicht gelesen werden",
            )
        return parse_email(raw, item.received_at, item.envelope_from)

    # ---- writing -------------------------------------------------------------------------
    def _finish_all(self, session: Session, work: list[Work], now: datetime) -> list[Receipt]:
        """The batch in one savepoint; if it fails, each message in a savepoint of its own."""
        try:
            with session.begin_nested():
                return [r for w in work if (r := self._finish(session, w, now)) is not None]
        except Exception:
            if len(work) > 1:
                log.warning("triage batch of %d failed; one at a time", len(work), exc_info=True)
        receipts: list[Receipt] = []
        for w in work:
            try:
                with session.begin_nested():
                    receipt = self._finish(session, w, now)
            except Exception as exc:
                self._failed(session, w, exc, now)
                continue
            if receipt is not None:
                receipts.append(receipt)
        return receipts

    def _finish(self, session: Session, w: Work, now: datetime) -> Receipt | None:
        started = time.perf_counter()
        item = session.get(InboxItem, w.item_id)
        if item is None or item.state is not InboxState.PENDING:
            return None  # another worker finished it
        if w.error is not None:
            raise TriageFailed(w.error)
        receipt = self.service.record(session, w.message, w.prediction)
        self._done(session, item, receipt, now)
        self.service.log(w.message, receipt, started, queue_id=w.queue_id)
        return receipt

    @staticmethod
    def _done(session: Session, item: InboxItem, receipt: Receipt, now: datetime) -> None:
        item.state = InboxState.DONE
        item.ticket_id = receipt.ticket_id
        item.processed_at = now
        item.last_error = None
        item.raw = None  # the stored message holds the bytes now (or the original did)

    def _failed(self, session: Session, w: Work, exc: Exception, now: datetime) -> None:
        """Count the attempt; once they are used up, hold the message for staff as
        "nicht verarbeitbar" (raw bytes, the error), never answered, never lost."""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        item = session.get_one(InboxItem, w.item_id)
        item.attempts += 1
        item.last_error = error
        log_event(
            log,
            "triage-failed",
            level=logging.WARNING,
            queue=w.queue_id,
            attempt=item.attempts,
            error=error,
        )
        if item.attempts < self.cfg.attempts:
            delay = self.cfg.retry_seconds * 2 ** (item.attempts - 1)
            item.next_attempt_at = now + timedelta(seconds=delay)
            session.flush()
            return
        sender = w.message.sender
        held = replace(
            w.message,
            # What the sender wrote may be what failed: keep only a plain address.
            sender=sender if usable_address(sender) else "",
            subject=w.message.subject[:1000],
            raw=w.raw,
            message_id=None,  # the key is then the hash of the raw bytes
            in_reply_to=None,
            references=(),
            attachments=(),
            bounced_recipients=(),
            report_message_ids=(),
            ticket_number=None,
            parse_error=f"Nicht verarbeitbar nach {item.attempts} Versuchen: {error}",
        )
        try:
            with session.begin_nested():
                receipt = self.service.record(session, held, None)
                self._done(session, item, receipt, now)
        except Exception:
            log.exception("could not hold inbox item %s for staff; kept raw", w.queue_id)
            item.state = InboxState.FAILED
            item.processed_at = now
        session.flush()

    # ---- the loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Triage until `stop` is set; `wake` (set by each accept) cuts the wait short."""
        await run_passes(self.run_once, stop, wake, self.cfg.poll_seconds, log)
