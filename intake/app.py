"""Wire the running service: the door (SMTP, IMAP, Telegram), triage behind it, the outbox
sender and the staff pages, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from intake.accept import Acceptor
from intake.clock import Clock, utcnow
from intake.config import Config
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import alembic_config
from intake.logs import log_event
from intake.mail.imap import ImapPoller
from intake.mail.smtp import IntakeHandler, smtp_factory
from intake.outbox import OutboxSender, Relay, make_relay
from intake.service import IntakeService
from intake.triage import TriageWorker
from intake.web.app import create_app

if TYPE_CHECKING:
    from classifier.model import PriorityModel
    from intake.telegram.bot import TelegramChannel

log = logging.getLogger("intake.app")
SWITCH_INTERVAL = 0.001  # seconds a thread runs before another may take the interpreter


class NotMigrated(Exception):
    pass


def check_migrated(engine: Engine, url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise NotMigrated(
            f"the database is at revision {current or 'none'}, the code needs {head}: "
            "run `intake db upgrade` first"
        )


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `intake serve` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IntakeApp:
    """Everything `intake serve` runs; start() binds the ports, stop() drains and closes."""

    def __init__(
        self, cfg: Config, clock: Clock = utcnow, model: PriorityModel | None = None
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.engine = make_engine(cfg.database.url, echo=cfg.database.echo)
        check_migrated(self.engine, cfg.database.url)
        self.sessions = make_sessions(self.engine)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # the outbox: something was queued
        self._triage_wake = asyncio.Event()  # triage: something was stored
        if model is None:
            from classifier.registry import ModelRegistry

            model = ModelRegistry(cfg.classifier.models_dir).load(
                review_below=cfg.classifier.review_below
            )
        self.model = model
        self.service = IntakeService(cfg, self.sessions, model, on_reply_queued=self._wake_outbox)
        self.acceptor = Acceptor(self.sessions, on_accepted=self._wake_triage)
        self.triage = TriageWorker(
            cfg.triage,
            self.sessions,
            self.service,
            clock,
            on_queued=self._wake_outbox,
            door_busy=self.acceptor.busy,
        )
        self.telegram: TelegramChannel | None = None
        chat_relay = None
        if cfg.telegram.enabled:
            # Imported here: the bot library is loaded only where a bot is configured.
            from intake.telegram.bot import TelegramChannel, TelegramRelay

            self.telegram = TelegramChannel(
                cfg, self.sessions, self.service, clock, on_queued=self._wake_outbox
            )
            chat_relay = TelegramRelay(self.telegram)
        more: dict[str, Relay] = {}
        if cfg.znuny.enabled and cfg.znuny.mode == "rest":
            from intake.znuny.client import ZnunyClient
            from intake.znuny.handover import HANDOVER_CHANNEL
            from intake.znuny.relay import ZnunyRelay

            more[HANDOVER_CHANNEL] = ZnunyRelay(cfg, self.sessions, ZnunyClient(cfg.znuny), clock)
        self.outbox = OutboxSender(
            self.sessions,
            make_relay(cfg.relay, cfg.mail.from_address),
            cfg.outbox,
            clock,
            chat_relay=chat_relay,
            more=more,
        )
        self._imap_stop = threading.Event()
        self._imap_thread: threading.Thread | None = None
        if cfg.imap.enabled:
            poller = ImapPoller(cfg.imap, self.acceptor, self.sessions, clock)
            self._imap_thread = threading.Thread(
                target=poller.run, args=(self._imap_stop,), name="imap-poller", daemon=True
            )
        self._web: uvicorn.Server | None = None
        self._web_task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._outbox_task: asyncio.Task[None] | None = None
        self._triage_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _wake_outbox(self) -> None:
        # Called from the worker thread that committed the reply.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _wake_triage(self) -> None:
        # Called from the thread that committed an arrival.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._triage_wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Triage (parsing a 10 MB mail, classifying) holds the interpreter for long stretches;
        # the door needs it for a moment many times per mail. Handing it over every 1 ms
        # instead of every 5 ms keeps the 250s quick while a big mail is triaged.
        sys.setswitchinterval(SWITCH_INTERVAL)
        handler = IntakeHandler(self.acceptor, self.cfg.smtp.addresses, self.clock)
        hostname = socket.gethostname()
        self._server = await self._loop.create_server(
            lambda: smtp_factory(handler, self.cfg.smtp.max_message_bytes, hostname),
            host=self.cfg.smtp.host,
            port=self.cfg.smtp.port,
        )
        self._triage_task = asyncio.create_task(self.triage.run(self._stop, self._triage_wake))
        self._outbox_task = asyncio.create_task(self.outbox.run(self._stop, self._wake))
        if self._imap_thread is not None:
            self._imap_thread.start()
        if self.telegram is not None:
            await self.telegram.start()
        if self.cfg.web.enabled:
            webhook = (
                self.telegram.process_json
                if self.telegram is not None and self.cfg.telegram.mode == "webhook"
                else None
            )
            web = create_app(self.cfg, self.sessions, self.clock, telegram_webhook=webhook)
            config = uvicorn.Config(
                web,
                host=self.cfg.web.host,
                port=self.cfg.web.port,
                log_level="warning",
                lifespan="off",
                # X-Forwarded-For only from web.trusted_proxies: uvicorn's default believes any
                # process on loopback, which could then pick a new address for every login.
                proxy_headers=bool(self.cfg.web.trusted_proxies),
                forwarded_allow_ips=list(self.cfg.web.trusted_proxies),
            )
            self._web = QuietServer(config)
            self._web_task = asyncio.create_task(self._web.serve())
            while not self._web.started and not self._web_task.done():
                await asyncio.sleep(0.02)
        log_event(
            log,
            "started",
            smtp=f"{self.cfg.smtp.host}:{self.smtp_port}",
            model=self.model.version,
        )

    @property
    def smtp_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def web_port(self) -> int | None:
        if self._web is None or not self._web.servers:
            return None
        return int(self._web.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._stop.set()
        if self._web is not None and self._web_task is not None:
            self._web.should_exit = True
            await self._web_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.to_thread(self.acceptor.close)
        if self._triage_task is not None:
            await self._triage_task
        self.triage.close()
        if self._outbox_task is not None:
            await self._outbox_task
        if self.telegram is not None:
            await self.telegram.stop()
        if self._imap_thread is not None and self._imap_thread.is_alive():
            self._imap_stop.set()
            await asyncio.to_thread(self._imap_thread.join, 30)
        self.engine.dispose()
        log_event(log, "stopped")
