"""Servers on loopback: the real IntakeApp (SMTP server + outbox sender) in a background thread,
and what the Dovecot fixture hands a test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.app import IntakeApp
from intake.clock import utcnow
from intake.config import Config
from intake.service import IntakeService
from intake.triage import TriageWorker


@dataclass(frozen=True)
class Dovecot:
    port: int
    user: str
    password: str
    workdir: Path


class AppThread:
    def __init__(self, cfg: Config, model: PriorityModel | None = None) -> None:
        self.app = IntakeApp(cfg, model=model)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.app.start())
        self._started.set()
        self.loop.run_forever()

    def __enter__(self) -> AppThread:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("intake app did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def port(self) -> int:
        return self.app.smtp_port


def wait_for_files(directory: Path, n: int, timeout: float = 5.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(directory.glob("*")) if directory.exists() else []
        if len(files) >= n or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for something that happens behind the door (triage, the outbox); fail if it does not."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        time.sleep(0.05)


def triage_all(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> int:
    """Run the triage stage until nothing stored is left (what `intake serve` does behind the
    door); return how many messages it took."""
    worker = TriageWorker(cfg.triage, sessions, IntakeService(cfg, sessions, model), utcnow)
    total = 0
    try:
        while taken := worker.run_once():
            total += taken
    finally:
        worker.close()
    return total
