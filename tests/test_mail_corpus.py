"""Real-world and hostile mail through SMTP and through IMAP: each stored exactly once, machines
never answered, and the server still answers the next customer."""

from __future__ import annotations

import smtplib
import sysconfig
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imap_tools import MailBoxUnencrypted
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.accept import Acceptor
from intake.config import Config, ImapConfig
from intake.mail.imap import ImapPoller
from intake.mail.parse import parse_email
from tests.support.config import IN_CI
from tests.support.database import count
from tests.support.factories import make_mail
from tests.support.servers import AppThread, Dovecot, triage_all, wait_until

OURS = sorted((Path(__file__).parent / "mail").glob("*.eml"))
STDLIB = sorted(
    (Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data").glob("msg_*.txt")
)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def corpus() -> list[bytes]:
    if not STDLIB and IN_CI:
        pytest.fail("the standard library's e-mail test messages are missing")
    raws = []
    for path in [*STDLIB, *OURS]:
        data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        raws.append(data)
    return raws


def assert_stored_once_and_machines_unanswered(
    sessions: sessionmaker[Session], raws: list[bytes], envelope: str | None
) -> None:
    parsed = [parse_email(raw, NOW, envelope) for raw in raws]
    with sessions() as session:
        keys = [
            k
            for (k,) in session.execute(
                text("select dedupe_key from messages where direction = 'in'")
            )
        ]
        answered = {
            k
            for (k,) in session.execute(
                text(
                    "select m.dedupe_key from messages m join outbox o on o.ticket_id = m.ticket_id "
                    "where m.direction = 'in'"
                )
            )
        }
    assert len(keys) == len(set(keys)), "a message was stored twice"
    assert set(keys) == {p.dedupe_key for p in parsed}, "a message was lost"
    machines = {p.dedupe_key for p in parsed if p.automatic_reasons or p.parse_error}
    assert not (answered & machines), "a machine or an unreadable mail was answered"


def test_the_corpus_through_smtp(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    raws = corpus()
    assert len(raws) >= 50
    with AppThread(cfg, model) as app:
        for raw in raws:
            with smtplib.SMTP("127.0.0.1", app.port, timeout=30) as client:
                client.ehlo()
                client.mail("sender@example.org")
                client.rcpt("support@example.com")
                code, answer = client.data(raw)
                assert code == 250, (code, answer, raw[:200])
        # The server is still up and answers a customer as before.
        customer = make_mail()
        with smtplib.SMTP("127.0.0.1", app.port, timeout=30) as client:
            assert client.sendmail("it@muster.example", ["support@example.com"], customer) == {}
        wait_until(lambda: count(sessions, "inbox", "state = 'done'") == len(raws) + 1, 60)
    assert_stored_once_and_machines_unanswered(sessions, [*raws, customer], "sender@example.org")


@pytest.fixture
def inbox(dovecot: Dovecot) -> Iterator[MailBoxUnencrypted]:
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(dovecot.user, dovecot.password) as box:
        if uids := box.uids("ALL"):
            box.delete(uids)
        yield box


def test_the_corpus_through_imap(
    dovecot: Dovecot,
    inbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    raws = corpus()
    for raw in raws:
        inbox.append(raw, "INBOX")
    imap = ImapConfig(
        enabled=True,
        host="127.0.0.1",
        port=dovecot.port,
        security="none",
        username=dovecot.user,
        password=dovecot.password,
    )  # type: ignore[arg-type]
    poller = ImapPoller(imap, Acceptor(sessions), sessions, lambda: NOW)
    assert poller.poll_once() == len(raws)
    assert poller.poll_once() == 0
    assert triage_all(cfg, sessions, model) == len(raws)
    assert_stored_once_and_machines_unanswered(sessions, raws, None)
