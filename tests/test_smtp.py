"""Real SMTP round trips against the running intake (aiosmtpd) with smtplib and swaks."""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import sqlite3
import subprocess
import threading
import time
from argparse import Namespace
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.commands.tickets import cmd_tickets_list, cmd_tickets_show
from intake.config import Config
from tests.support.config import make_config
from tests.support.database import PG_ADMIN, count
from tests.support.factories import make_mail
from tests.support.network import send
from tests.support.servers import AppThread, wait_for_files, wait_until


@pytest.fixture
def server(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> Iterator[AppThread]:
    with AppThread(cfg, model) as running:
        yield running


def maildir_new(cfg: Config) -> Path:
    return Path(cfg.relay.maildir) / "new"


def test_a_customer_mail_gets_250_and_a_confirmation_in_the_maildir_within_two_seconds(
    server: AppThread, cfg: Config, sessions: sessionmaker[Session]
) -> None:
    started = time.monotonic()
    code, answer = send(server.port, make_mail())
    # The 250 means "stored" and names an opaque queue id, never a ticket number.
    assert code == 250 and re.fullmatch(rb"2\.0\.0 OK: queued as [0-9A-F]{16}", answer)
    (reply_file,) = wait_for_files(maildir_new(cfg), 1, timeout=2.0)
    assert time.monotonic() - started < 2.0
    reply = message_from_bytes(reply_file.read_bytes(), policy=policy.default)
    number = re.match(r"\[Ticket#(\d{16})\]", reply["Subject"]).group(1)  # type: ignore[union-attr]
    assert number.encode() not in answer
    text = reply.get_body(("plain",)).get_content()
    assert number in text and "Kritisch" in text and "Antwort bis:" in text
    assert count(sessions, "outbox", "status = 'sent'") == 1


def test_swaks_with_an_encoded_subject_and_an_attachment_is_accepted(
    server: AppThread, cfg: Config, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.fail("swaks is not installed: `make test` installs it (scripts/test-services.sh)")
    pdf = tmp_path / "fehler.pdf"
    pdf.write_bytes(b"%PDF-1.4\nfake\n")
    subject = (
        "=?UTF-8?B?"
        + __import__("base64").b64encode("Störung: Queue-Übersicht lädt nicht".encode()).decode()
        + "?="
    )
    result = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{server.port}",
            "--from",
            "it@muster.example",
            "--to",
            "support@example.com",
            "--header",
            f"Subject: {subject}",
            "--attach-type",
            "text/plain; charset=UTF-8",
            "--attach-body",
            "Hallo, die Queue-Übersicht lädt bei einem Kollegen nicht. Grüße",
            "--attach-type",
            "application/pdf",
            "--attach-name",
            "fehler.pdf",
            "--attach",
            f"@{pdf}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"250 2\.0\.0 OK: queued as [0-9A-F]{16}", result.stdout)
    (reply_file,) = wait_for_files(maildir_new(cfg), 1)
    reply = message_from_bytes(reply_file.read_bytes(), policy=policy.default)
    assert reply["Subject"].endswith("Re: Störung: Queue-Übersicht lädt nicht")


def test_mail_to_another_address_is_refused_at_rcpt(
    server: AppThread, sessions: sessionmaker[Session]
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo()
        client.mail("it@muster.example")
        code, answer = client.rcpt("someone@other.example")
    assert code == 550 and answer.startswith(b"5.1.1")
    assert count(sessions, "tickets") == 0


def test_a_message_over_the_size_limit_is_refused_with_552(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    cfg = make_config(tmp_path, db_url, INTAKE_SMTP__MAX_MESSAGE_BYTES="100000")
    big = make_mail(body="Logauszug:\n" + ("x" * 70 + "\n") * 2000)
    assert len(big) > 100000
    with AppThread(cfg, model) as running:
        # A client that announces the size is refused at MAIL FROM ...
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            client.ehlo()
            code, answer = client.mail("it@muster.example", options=[f"SIZE={len(big)}"])
            assert (code, answer[:5]) == (552, b"5.3.4")
        # ... and one that does not is refused after DATA.
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            client.ehlo()
            client.mail("it@muster.example")
            client.rcpt("support@example.com")
            code, answer = client.data(big)
            assert (code, answer[:5]) == (552, b"5.3.4")
    assert count(sessions, "tickets") == 0


def test_a_second_delivery_of_the_same_message_gets_250_and_no_second_ticket(
    server: AppThread, cfg: Config, sessions: sessionmaker[Session]
) -> None:
    raw = make_mail(message_id="<retry-1@customer.example>")
    first = send(server.port, raw)
    second = send(server.port, raw)
    assert first[0] == second[0] == 250
    assert len(wait_for_files(maildir_new(cfg), 1)) == 1
    wait_until(lambda: count(sessions, "inbox", "state = 'done'") == 2)
    # Both deliveries are stored; triage recognises the second by its Message-ID.
    assert count(sessions, "tickets") == 1
    time.sleep(0.5)
    assert len(list(maildir_new(cfg).iterdir())) == 1


class DatabaseOutage:
    """Make the real database refuse work, then bring it back."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._release = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DatabaseOutage:
        if self.url.get_backend_name() == "sqlite":
            # Another process holding an exclusive lock: every write waits, then fails.
            locked = threading.Event()

            def hold() -> None:
                conn = sqlite3.connect(str(self.url.database), isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")
                locked.set()
                self._release.wait(60)
                conn.execute("ROLLBACK")
                conn.close()

            self._thread = threading.Thread(target=hold, daemon=True)
            self._thread.start()
            assert locked.wait(10)
        else:
            name = self.url.database
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._release.set()
            self._thread.join(10)
        else:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{self.url.database}" WITH ALLOW_CONNECTIONS true')


def test_with_the_database_unavailable_the_server_answers_451_and_accepts_the_retry(
    server: AppThread, cfg: Config, sessions: sessionmaker[Session]
) -> None:
    raw = make_mail(message_id="<outage-1@customer.example>")
    with DatabaseOutage(cfg.database.url):
        code, answer = send(server.port, raw)
        assert code == 451 and answer.startswith(b"4.3.0")
    code, answer = send(server.port, raw)
    assert code == 250
    assert len(wait_for_files(maildir_new(cfg), 1)) == 1
    assert count(sessions, "tickets") == 1


HOSTILE = {
    "control characters in the address": {"From": "Erika <it\x1c@muster.example>"},
    "a Message-ID of 600 characters": {"Message-ID": "<" + "m" * 600 + "@muster.example>"},
    "a From of 400 characters": {"From": "x" * 380 + "@muster.example"},
    "a subject of 2,000 characters": {"Subject": "Störung " * 250},
    "a display name of 600 characters": {"From": '"' + "Erika " * 100 + '" <it@muster.example>'},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header_values_are_stored_triaged_and_shown(
    case: str,
    server: AppThread,
    cfg: Config,
    sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    head = {
        "From": "it@muster.example",
        "To": "support@example.com",
        "Subject": "Frage",
        "Message-ID": f"<hostile-{abs(hash(case))}@muster.example>",
    } | HOSTILE[case]
    raw = (
        "".join(f"{k}: {v}\r\n" for k, v in head.items())
        + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Wie exportiere ich Tickets?\r\n"
    ).encode()
    code, _ = send(server.port, raw)
    assert code == 250
    wait_until(lambda: count(sessions, "inbox", "state = 'done'") == 1)
    assert count(sessions, "tickets") == 1
    # What `intake tickets list --json` and `intake tickets show NUMBER --json` print.
    assert cmd_tickets_list(cfg, Namespace(limit=50, json=True)) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert cmd_tickets_show(cfg, Namespace(number=listed["number"], json=True)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["messages"][0]["direction"] == "in"
    assert all(ch.isprintable() for ch in shown["sender"])
