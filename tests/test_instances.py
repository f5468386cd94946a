"""Two `intake serve` processes on one PostgreSQL database share the work without doubling it."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from imap_tools import MailBoxUnencrypted
from sqlalchemy import text

from intake.db.engine import make_engine, make_sessions
from tests.support.command import INTAKE, environment, intake, wait_for_port
from tests.support.config import ROOT
from tests.support.factories import SMALL, make_mail
from tests.support.fake_botapi import TOKEN, FakeBotAPI
from tests.support.network import free_port
from tests.support.servers import Dovecot


@pytest.mark.slow
def test_two_instances_make_one_ticket_and_one_reply_per_mail(
    tmp_path: Path, pg_url: str, dovecot: Dovecot
) -> None:
    db_url = pg_url
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(dovecot.user, dovecot.password) as box:
        if uids := box.uids("ALL"):
            box.delete(uids)
        for i in range(10):
            box.append(
                make_mail(subject=f"Per IMAP {i}", body=f"Wie exportiere ich Bericht {i}?"), "INBOX"
            )
    ports = [free_port(), free_port()]
    imap = {
        "INTAKE_IMAP__ENABLED": "true",
        "INTAKE_IMAP__HOST": "127.0.0.1",
        "INTAKE_IMAP__PORT": str(dovecot.port),
        "INTAKE_IMAP__SECURITY": "none",
        "INTAKE_IMAP__USERNAME": dovecot.user,
        "INTAKE_IMAP__PASSWORD": dovecot.password,
        "INTAKE_IMAP__POLL_SECONDS": "0.5",
        "INTAKE_MAIL__REPLY_LIMITS": "[[10, 1000]]",
    }
    envs = [environment(tmp_path, db_url, port) | imap for port in ports]
    assert (
        intake(envs[0], "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    logs = [tmp_path / f"instance-{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen([*INTAKE, "serve"], env=env, stderr=log.open("w"))
        for env, log in zip(envs, logs, strict=True)
    ]
    mails = [
        make_mail(
            subject=f"Per SMTP {i}",
            body=f"Wie lege ich Queue {i} an?",
            message_id=f"<two-{i}@muster.example>",
        )
        for i in range(30)
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_port(port, proc)

        def deliver(port: int) -> None:  # every mail reaches both instances, as after an MX retry
            for raw in mails:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                    assert client.sendmail("it@muster.example", ["support@example.com"], raw) == {}

        senders = [threading.Thread(target=deliver, args=(port,)) for port in ports]
        for s in senders:
            s.start()
        for s in senders:
            s.join(120)
        sessions = make_sessions(make_engine(db_url))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sessions() as session:
                sent = session.execute(
                    text("select count(*) from outbox where status = 'sent'")
                ).scalar_one()
            if sent >= 40:
                break
            time.sleep(0.3)
        time.sleep(1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    with sessions() as session:
        numbers = [n for (n,) in session.execute(text("select number from tickets"))]
        outbox = session.execute(
            text("select count(*), count(distinct message_id) from outbox")
        ).one()
    assert len(numbers) == 40 and len(set(numbers)) == 40  # 30 by SMTP (each twice) + 10 by IMAP
    assert tuple(outbox) == (40, 40)
    assert len(list((tmp_path / "maildir" / "new").glob("*"))) == 40
    polled = [log.read_text().count("-> queued as") for log in logs]
    assert sorted(polled) == [0, 10], f"both instances polled the mailbox: {polled}"


@pytest.mark.slow
def test_one_instance_polls_the_bot_and_another_takes_over_when_it_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    ports = [free_port(), free_port()]
    with FakeBotAPI(TOKEN) as api:
        bot = {
            "INTAKE_TELEGRAM__ENABLED": "true",
            "INTAKE_TELEGRAM__TOKEN": TOKEN,
            "INTAKE_TELEGRAM__BASE_URL": api.base_url,
            "INTAKE_TELEGRAM__BASE_FILE_URL": api.base_file_url,
            "INTAKE_TELEGRAM__POLL_TIMEOUT": "1",
            "INTAKE_TELEGRAM__RETRY_SECONDS": "0.3",
            "INTAKE_OUTBOX__POLL_SECONDS": "0.2",
        }
        envs = [environment(tmp_path, pg_url, port) | bot for port in ports]
        logs = [tmp_path / f"instance-{i}.log" for i in range(2)]
        procs = [
            subprocess.Popen([*INTAKE, "serve"], env=env, stderr=log.open("w"))
            for env, log in zip(envs, logs, strict=True)
        ]
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_for_port(port, proc)
            for chat in range(201, 204):
                api.push_text(chat, SMALL)
            api.wait_sent(3, timeout=20)

            def handled_by() -> list[int]:
                return [log.read_text().count('"channel": "telegram"') for log in logs]

            deadline = time.monotonic() + 10  # the log line follows the commit
            while sum(handled := handled_by()) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(handled) == [0, 3], f"both instances polled the bot: {handled}"
            leader = handled.index(3)
            procs[leader].send_signal(signal.SIGKILL)
            procs[leader].wait(10)
            for chat in range(204, 207):
                api.push_text(chat, SMALL)
            api.wait_sent(6, timeout=30)
            time.sleep(1)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
        assert [len(api.sent_to(chat)) for chat in range(201, 207)] == [1] * 6
    follower = logs[1 - leader].read_text().count('"channel": "telegram"')
    assert follower == 3  # the other instance took the bot over
    sessions = make_sessions(make_engine(pg_url))
    with sessions() as session:
        senders = sorted(s for (s,) in session.execute(text("select sender from tickets")))
    assert senders == [f"telegram:{chat}" for chat in range(201, 207)]
