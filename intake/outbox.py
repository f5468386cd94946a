"""The only code that sends: outbox rows go to a Maildir or an SMTP relay, retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from intake.clock import Clock
from intake.config import OutboxConfig, RelayConfig
from intake.db import store
from intake.db.tables import OutboxItem
from intake.domain import Channel, OutboxStatus

log = logging.getLogger("intake.outbox")


class PermanentFailure(Exception):
    """The relay refused the message for good (5xx); retrying would not help."""


@dataclass(frozen=True)
class Envelope:
    id: int
    recipient: str
    payload: bytes


class Relay(Protocol):
    def deliver(self, envelope: Envelope) -> None:
        """Hand the message over or raise; an exception other than PermanentFailure is retried."""


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
    def __init__(self, cfg: RelayConfig, sender: str) -> None:
        assert cfg.host is not None
        self.cfg = cfg
        self.sender = sender

    def deliver(self, envelope: Envelope) -> None:
        cfg = self.cfg
        assert cfg.host is not None
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds) as client:
                if cfg.starttls:
                    client.starttls(context=ssl.create_default_context())
                if cfg.username and cfg.password:
                    client.login(cfg.username, cfg.password.get_secret_value())
                client.sendmail(self.sender, [envelope.recipient], envelope.payload)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise


def make_relay(cfg: RelayConfig, sender: str) -> Relay:
    if cfg.mode == "smtp":
        return SmtpRelay(cfg, sender)
    return MaildirRelay(cfg.maildir)


class OutboxSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        relay: Relay,
        cfg: OutboxConfig,
        clock: Clock,
        chat_relay: Relay | None = None,
    ) -> None:
        self.sessions = sessions
        self.relays: dict[str, Relay] = {Channel.EMAIL.value: relay}
        if chat_relay is not None:
            self.relays[Channel.TELEGRAM.value] = chat_relay  # else chat rows wait in the outbox
        self.cfg = cfg
        self.clock = clock

    def run_once(self) -> int:
        """Deliver every due row once; return how many were sent."""
        with self.sessions.begin() as session:
            ids = store.claim_due(
                session,
                self.clock(),
                timedelta(seconds=self.cfg.lease_seconds),
                channels=tuple(self.relays),
            )
        sent = 0
        for item_id in ids:
            sent += self._deliver(item_id)
        return sent

    def _deliver(self, item_id: int) -> int:
        with self.sessions() as session:
            item = session.get_one(OutboxItem, item_id)
            envelope = Envelope(item.id, item.recipient, item.payload)
            attempts = item.attempts
            relay = self.relays[item.channel]
        try:
            relay.deliver(envelope)
        except PermanentFailure as exc:
            with self.sessions.begin() as session:
                row = store.mark_failed(session, item_id, str(exc), self.clock())
                row.status = OutboxStatus.FAILED
            log.error("outbox %s to %s refused for good: %s", item_id, envelope.recipient, exc)
            return 0
        except Exception as exc:
            delay = min(
                self.cfg.retry_base_seconds * 2 ** (attempts - 1), self.cfg.retry_max_seconds
            )
            with self.sessions.begin() as session:
                store.mark_failed(
                    session,
                    item_id,
                    f"{type(exc).__name__}: {exc}",
                    self.clock() + timedelta(seconds=delay),
                )
            log.warning(
                "outbox %s to %s failed (attempt %s), retry in %.0fs: %s",
                item_id,
                envelope.recipient,
                attempts,
                delay,
                exc,
            )
            return 0
        with self.sessions.begin() as session:
            store.mark_sent(session, item_id, self.clock())
        return 1

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Send until `stop` is set; `wake` cuts the wait short when a reply was queued."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # the database may be away: keep going, the rows are still there
                log.exception("outbox pass failed")
            wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(
                    waiters, timeout=self.cfg.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            for waiter in waiters:
                waiter.cancel()
