"""The only code that sends: outbox rows go to a Maildir, an SMTP relay or the Telegram bot,
several at once, retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import smtplib
import socket
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import OutboxConfig, RelayConfig
from intake.db import store
from intake.domain import Channel, OutboxStatus
from intake.passes import run_passes

log = logging.getLogger("intake.outbox")


class PermanentFailure(Exception):
    """The relay refused the message for good (5xx); retrying would not help."""


class Refused(Exception):
    """The receiver refused the message (e.g. Znuny: unknown queue): retried with backoff, and
    given up after `max_attempts` tries, when the row shows the receiver's message to staff."""

    def __init__(self, message: str, max_attempts: int) -> None:
        super().__init__(message)
        self.max_attempts = max_attempts


class Deferred(Exception):
    """Not tried: an earlier message to the same recipient failed and waits for its retry, and
    a later one must not overtake it (a chat would read the answers out of order)."""

    def __init__(self, attempts: int) -> None:
        super().__init__("wartet auf eine frühere Nachricht an denselben Empfänger")
        self.attempts = attempts  # the earlier message's: this one is retried with it


@dataclass(frozen=True)
class Envelope:
    id: int
    recipient: str
    payload: bytes
    attempts: int = 1  # this one included: more than 1 is a retry


Job = tuple[Envelope, str, int]  # what to send, its channel, the attempts so far


class Relay(Protocol):
    def deliver(self, envelope: Envelope) -> object:
        """Hand the message over or raise; an exception other than PermanentFailure is retried.
        What it returns (a receipt) goes to the relay's `record`, if it has one."""


@runtime_checkable
class Recorder(Protocol):
    """A relay whose outcomes change more than the outbox row (the Znuny hand-over)."""

    def record(self, session: Session, envelope: Envelope, receipt: object) -> None:
        """Keep what a delivery returned, in the transaction that marks the row sent."""

    def failed(self, session: Session, envelope: Envelope, error: str) -> None:
        """The row was given up, in the transaction that marks it failed."""


class MaildirRelay:
    """Writes each reply into a Maildir; the file name is derived from the outbox row, so a
    retry after a crash between writing and marking the row finds the file and writes nothing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def deliver(self, envelope: Envelope) -> None:
        name = f"intake-outbox-{envelope.id:012d}.{self.host}"
        if any(self.directory.glob(f"new/{name}*")) or any(self.directory.glob(f"cur/{name}*")):
            return
        tmp = self.directory / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(envelope.payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / "new" / name)


class SmtpRelay:
    """Sends through the relay, reusing one connection per sending thread: a connection costs a
    handshake (and TLS, and login) that a burst of replies need not pay each time."""

    def __init__(self, cfg: RelayConfig, sender: str) -> None:
        assert cfg.host is not None
        self.cfg = cfg
        self.sender = sender
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        assert cfg.host is not None
        client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        try:
            if cfg.starttls:
                client.starttls(context=ssl.create_default_context())
            if cfg.username and cfg.password:
                client.login(cfg.username, cfg.password.get_secret_value())
        except BaseException:
            client.close()
            raise
        with self._lock:
            self._open.add(client)
        return client

    def _drop(self, client: smtplib.SMTP) -> None:
        with self._lock:
            self._open.discard(client)
        with contextlib.suppress(Exception):
            client.close()
        self._local.client = None

    def deliver(self, envelope: Envelope) -> None:
        client: smtplib.SMTP | None = getattr(self._local, "client", None)
        reused = client is not None
        try:
            if client is None:
                client = self._local.client = self._connect()
            try:
                self._send(client, envelope)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self._drop(client)
                if not reused:
                    raise
                # The relay closed the idle connection: one more try on a new one.
                client = self._local.client = self._connect()
                self._send(client, envelope)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise
        except Exception:
            # A connection in an unknown state is not reused.
            if client is not None:
                self._drop(client)
            raise

    def _send(self, client: smtplib.SMTP, envelope: Envelope) -> None:
        # A refusal leaves the session usable: sendmail has sent RSET already.
        client.sendmail(self.sender, [envelope.recipient], envelope.payload)

    def close(self) -> None:
        with self._lock:
            clients, self._open = list(self._open), set()
        for client in clients:
            with contextlib.suppress(Exception):
                client.quit()


def make_relay(cfg: RelayConfig, sender: str) -> Relay:
    if cfg.mode == "smtp":
        return SmtpRelay(cfg, sender)
    return MaildirRelay(cfg.maildir)


class OutboxSender:
    """Leases due rows a batch at a time and hands them to `outbox.senders` threads at once,
    each keeping its relay connection; then records every outcome in one transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        relay: Relay,
        cfg: OutboxConfig,
        clock: Clock,
        chat_relay: Relay | None = None,
        more: Mapping[str, Relay] | None = None,
    ) -> None:
        self.sessions = sessions
        self.relays: dict[str, Relay] = {Channel.EMAIL.value: relay}
        if chat_relay is not None:
            self.relays[Channel.TELEGRAM.value] = chat_relay  # else chat rows wait in the outbox
        self.relays.update(more or {})  # e.g. the Znuny hand-over's channel
        self.cfg = cfg
        self.clock = clock
        self._pool = ThreadPoolExecutor(cfg.senders, thread_name_prefix="outbox")

    def run_once(self) -> int:
        """Deliver one batch of due rows; return how many were sent."""
        with self.sessions.begin() as session:
            items = store.claim_due(
                session,
                self.clock(),
                timedelta(seconds=self.cfg.lease_seconds),
                limit=self.cfg.batch_size,
                channels=tuple(self.relays),
            )
            batch: list[Job] = [
                (Envelope(i.id, i.recipient, i.payload, i.attempts), i.channel, i.attempts)
                for i in items
            ]
        if not batch:
            return 0
        # Several recipients at once, but each recipient's messages one after another, in the
        # order they were queued.
        queues: dict[tuple[str, str], list[Job]] = {}
        for job in sorted(batch, key=lambda job: job[0].id):
            queues.setdefault((job[1], job[0].recipient), []).append(job)
        done = [
            (job, error)
            for jobs, errors in zip(
                queues.values(),
                self._pool.map(self._deliver_in_order, queues.values()),
                strict=True,
            )
            for job, error in zip(jobs, errors, strict=True)
        ]
        with self.sessions.begin() as session:
            for (envelope, channel, attempts), outcome in done:
                self._record(session, envelope, channel, attempts, outcome)
        return sum(1 for _, outcome in done if not isinstance(outcome, Exception))

    def _deliver_in_order(self, jobs: list[Job]) -> list[object]:
        """Deliver one recipient's messages in order; after a failure the rest wait for it.
        Each outcome is the exception, or what the relay returned."""
        outcomes: list[object] = []
        waiting: int | None = None  # the attempts of the message that failed
        for envelope, channel, attempts in jobs:
            if waiting is not None:
                outcomes.append(Deferred(waiting))
                continue
            try:
                outcomes.append(self.relays[channel].deliver(envelope))
            except PermanentFailure as exc:
                outcomes.append(exc)  # given up for good: the next one may go
            except Exception as exc:
                outcomes.append(exc)
                waiting = attempts
        return outcomes

    def _record(
        self, session: Session, envelope: Envelope, channel: str, attempts: int, outcome: object
    ) -> None:
        item_id = envelope.id
        error = outcome if isinstance(outcome, Exception) else None
        if isinstance(error, Refused) and attempts >= error.max_attempts:
            error = PermanentFailure(f"{error} (nach {attempts} Versuchen)")
        if error is None:
            store.mark_sent(session, item_id, self.clock())
            relay = self.relays[channel]
            if isinstance(relay, Recorder):
                relay.record(session, envelope, outcome)
        elif isinstance(error, Deferred):
            row = store.mark_failed(
                session, item_id, str(error), self.clock() + self._backoff(error.attempts)
            )
            row.attempts -= 1  # it was not tried
        elif isinstance(error, PermanentFailure):
            row = store.mark_failed(session, item_id, str(error), self.clock())
            row.status = OutboxStatus.FAILED
            relay = self.relays[channel]
            if isinstance(relay, Recorder):
                relay.failed(session, envelope, str(error))
            log.error("outbox %s to %s refused for good: %s", item_id, envelope.recipient, error)
        else:
            delay = self._backoff(attempts)
            store.mark_failed(
                session, item_id, f"{type(error).__name__}: {error}", self.clock() + delay
            )
            log.warning(
                "outbox %s to %s failed (attempt %s), retry in %.0fs: %s",
                item_id,
                envelope.recipient,
                attempts,
                delay.total_seconds(),
                error,
            )

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self.cfg.retry_base_seconds * 2 ** (attempts - 1)
        return timedelta(seconds=min(seconds, self.cfg.retry_max_seconds))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for relay in self.relays.values():
            closer = getattr(relay, "close", None)
            if closer is not None:
                closer()

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Send until `stop` is set; `wake` (set by every commit that queued something) cuts the
        wait short."""
        try:
            await run_passes(self.run_once, stop, wake, self.cfg.poll_seconds, log)
        finally:
            await asyncio.to_thread(self.close)
