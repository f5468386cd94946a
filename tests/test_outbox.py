"""The outbox sender: retries while the relay is down, never sends twice, survives restarts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from intake.config import Config, RelayConfig
from intake.db.tables import OutboxItem
from intake.mail.parse import parse_email
from intake.outbox import Envelope as OutEnvelope
from intake.outbox import MaildirRelay, OutboxSender, SmtpRelay
from intake.service import IntakeService
from tests.support.clock import ManualClock
from tests.support.factories import make_mail
from tests.support.network import Sink, free_port

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def queued(cfg: Config, sessions: sessionmaker[Session], model) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    """A database with two replies waiting in the outbox."""
    service = IntakeService(cfg, sessions, model)
    for i in range(2):
        service.receive(
            parse_email(make_mail(subject=f"Frage {i}"), datetime(2026, 11, 28, 8, 0, tzinfo=UTC))
        )
    return sessions


def statuses(sessions: sessionmaker[Session]) -> list[tuple[str, int]]:
    with sessions() as session:
        return [
            (i.status, i.attempts)
            for i in session.scalars(select(OutboxItem).order_by(OutboxItem.id))
        ]


@pytest.fixture
def relay_port() -> Iterator[int]:
    yield free_port()


def test_replies_wait_while_the_relay_is_down_and_go_out_once_when_it_is_back(
    cfg: Config, queued: sessionmaker[Session], relay_port: int
) -> None:
    clock = ManualClock(START)
    relay = SmtpRelay(
        RelayConfig(mode="smtp", host="127.0.0.1", port=relay_port, timeout_seconds=2),
        "support@example.com",
    )
    sender = OutboxSender(queued, relay, cfg.outbox, clock)
    # Nothing listens: the first fails, the second (same recipient) waits behind it untried.
    assert sender.run_once() == 0
    assert statuses(queued) == [("pending", 1), ("pending", 0)]
    assert sender.run_once() == 0  # backoff: not due again yet
    assert statuses(queued) == [("pending", 1), ("pending", 0)]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=relay_port)
    controller.start()
    try:
        clock.advance(cfg.outbox.retry_base_seconds + 1)
        assert sender.run_once() == 2
        clock.advance(3600)
        assert sender.run_once() == 0
    finally:
        controller.stop()
    assert [r[1] for r in sink.received] == [["it@muster.example"], ["it@muster.example"]]
    assert statuses(queued) == [("sent", 2), ("sent", 1)]


def test_a_refused_recipient_is_marked_failed_and_not_retried(
    cfg: Config, queued: sessionmaker[Session], relay_port: int
) -> None:
    controller = Controller(Sink(refuse=True), hostname="127.0.0.1", port=relay_port)
    controller.start()
    try:
        clock = ManualClock(START)
        relay = SmtpRelay(
            RelayConfig(mode="smtp", host="127.0.0.1", port=relay_port), "support@example.com"
        )
        sender = OutboxSender(queued, relay, cfg.outbox, clock)
        sender.run_once()
        clock.advance(86400)
        sender.run_once()
    finally:
        controller.stop()
    assert statuses(queued) == [("failed", 1), ("failed", 1)]


def test_a_sender_that_died_mid_delivery_is_retried_after_its_lease_without_a_second_copy(
    cfg: Config, queued: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = tmp_path / "replies"
    relay = MaildirRelay(maildir)
    clock = ManualClock(START)
    first = OutboxSender(queued, relay, cfg.outbox, clock)
    # The first sender leases the rows and writes the files, then "dies" before marking them.
    with queued.begin() as session:
        from intake.db import store

        items = store.claim_due(session, clock(), timedelta(seconds=cfg.outbox.lease_seconds))
        for item in items:
            relay.deliver(OutEnvelope(item.id, item.recipient, item.payload))
    # A new process (a restart) finds the rows still pending; after the lease it delivers them.
    restarted = OutboxSender(queued, MaildirRelay(maildir), cfg.outbox, clock)
    assert restarted.run_once() == 0
    clock.advance(cfg.outbox.lease_seconds + 1)
    assert restarted.run_once() == 2
    assert len(list((maildir / "new").iterdir())) == 2
    assert [s for s, _ in statuses(queued)] == ["sent", "sent"]
    assert first is not restarted


def test_a_burst_of_replies_goes_out_over_reused_connections_and_survives_a_relay_restart(
    cfg: Config,
    sessions: sessionmaker[Session],
    model,
    relay_port: int,  # type: ignore[no-untyped-def]
) -> None:
    service = IntakeService(cfg, sessions, model)
    at = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    for i in range(12):
        service.receive(parse_email(make_mail(sender=f"kollege{i}@muster.example"), at))
    clock = ManualClock(START)
    relay = SmtpRelay(
        RelayConfig(mode="smtp", host="127.0.0.1", port=relay_port), "support@example.com"
    )
    outbox = cfg.outbox.model_copy(update={"senders": 3, "batch_size": 6})
    sender = OutboxSender(sessions, relay, outbox, clock)
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=relay_port)
    controller.start()
    try:
        assert sender.run_once() == 6
        # The relay restarts: the connections kept open are dead; each is replaced once.
        controller.stop()
        controller = Controller(sink, hostname="127.0.0.1", port=relay_port)
        controller.start()
        assert sender.run_once() == 6
        assert sender.run_once() == 0
    finally:
        controller.stop()
        sender.close()
    assert sorted(r[1][0] for r in sink.received) == sorted(
        f"kollege{i}@muster.example" for i in range(12)
    )
    # Twelve replies over at most three connections per relay run, not twelve.
    assert len(set(sink.peers)) <= 6


class RecordingRelay:
    """A chat relay that takes its time (as the Bot API does) and records what arrived, in order;
    the first delivery to `flaky` fails once."""

    def __init__(self, flaky: str | None = None) -> None:
        import threading

        self.arrived: list[tuple[str, str]] = []
        self.flaky = flaky
        self._lock = threading.Lock()

    def deliver(self, envelope: OutEnvelope) -> None:
        import json
        import random
        import time

        time.sleep(random.uniform(0, 0.01))
        text = json.loads(envelope.payload)["text"]
        with self._lock:
            if envelope.recipient == self.flaky:
                self.flaky = None
                raise ConnectionError("Bot API unreachable")
            self.arrived.append((envelope.recipient, text))


def test_one_recipient_reads_its_messages_in_the_order_they_were_queued(
    cfg: Config, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from intake.delivery import send_chat

    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    with sessions.begin() as session:
        for i in range(12):
            send_chat(session, 100 + i % 3, f"Nachricht {i}", now=now)
    clock = ManualClock(START)
    relay = RecordingRelay(flaky="101")
    sender = OutboxSender(sessions, MaildirRelay(tmp_path / "m"), cfg.outbox, clock, relay)
    try:
        sender.run_once()  # four senders at once; chat 101's first message fails
        clock.advance(cfg.outbox.retry_max_seconds + 1)
        sender.run_once()
    finally:
        sender.close()
    for chat in ("100", "101", "102"):
        texts = [text for recipient, text in relay.arrived if recipient == chat]
        numbers = [int(text.split()[1]) for text in texts]
        assert len(numbers) == 4 and numbers == sorted(numbers), (chat, numbers)
    assert [s for s, _ in statuses(sessions)] == ["sent"] * 12
    # The messages that waited behind the failed one were not counted as tried.
    assert sorted(a for _, a in statuses(sessions)) == [1] * 11 + [2]
