"""Faults with real processes: kill -9 mid-burst, a full disk, the database going away."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from classifier.model import PriorityModel
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade
from tests.support.command import INTAKE, environment, intake, wait_for_port
from tests.support.config import ROOT, make_config, missing_service
from tests.support.database import count
from tests.support.factories import make_mail
from tests.support.network import Sink, free_port
from tests.support.servers import AppThread


def burst(
    port: int, mails: list[bytes], accepted: dict[int, str], stop_after: threading.Event
) -> None:
    for i, raw in enumerate(mails):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                if client.sendmail("it@muster.example", ["support@example.com"], raw) == {}:
                    accepted[i] = "250"
        except (smtplib.SMTPException, OSError):
            if stop_after.is_set():
                return


@pytest.mark.slow
def test_kill_9_mid_burst_every_accepted_mail_has_one_ticket_and_one_reply(
    tmp_path: Path, db_url: str
) -> None:
    port = free_port()
    env = environment(tmp_path, db_url, port) | {
        "INTAKE_OUTBOX__LEASE_SECONDS": "1",
        "INTAKE_OUTBOX__POLL_SECONDS": "0.2",
        "INTAKE_MAIL__REPLY_LIMITS": "[[10, 1000]]",  # 60 replies to one address are intended here
    }
    assert (
        intake(env, "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    mails = [
        make_mail(
            subject=f"Frage {i}",
            body=f"Wie richte ich Queue {i} ein?",
            message_id=f"<burst-{i}@muster.example>",
        )
        for i in range(60)
    ]
    accepted: dict[int, str] = {}
    killed = threading.Event()
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        # Three concurrent senders; each records which of its mails got a 250.
        results: list[dict[int, str]] = [{}, {}, {}]
        senders = [
            threading.Thread(target=burst, args=(port, mails[k::3], results[k], killed))
            for k in range(3)
        ]
        for s in senders:
            s.start()
        while sum(len(r) for r in results) < 15:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        killed.set()
        proc.wait(10)
        for s in senders:
            s.join(30)
        for k, r in enumerate(results):
            for j in r:
                accepted[k + 3 * j] = "250"
        assert 15 <= len(accepted) < len(mails)
        # The restarted service takes the rest; senders retry what got no 250.
        proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.DEVNULL)
        wait_for_port(port, proc)
        for i, raw in enumerate(mails):
            if i not in accepted:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                    assert client.sendmail("it@muster.example", ["support@example.com"], raw) == {}
        deadline = time.monotonic() + 20
        maildir = tmp_path / "maildir" / "new"
        while time.monotonic() < deadline and len(list(maildir.glob("*"))) < len(mails):
            time.sleep(0.2)
        time.sleep(2)  # a lease running out must not send a second copy
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    sessions = make_sessions(make_engine(db_url))
    with sessions() as session:
        tickets = session.execute(text("select count(*) from tickets")).scalar_one()
        sent = session.execute(
            text("select count(*) from outbox where status = 'sent'")
        ).scalar_one()
    assert tickets == len(mails) and sent == len(mails)
    subjects = sorted(
        message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"]
        for p in maildir.glob("*")
    )
    assert len(subjects) == len(mails) == len(set(subjects)), "a reply is missing or was sent twice"


@pytest.mark.slow
def test_kill_9_right_after_the_last_250_every_stored_mail_gets_one_ticket_and_one_reply(
    tmp_path: Path, db_url: str
) -> None:
    """A 250 means stored: mail still waiting for triage when the process dies is triaged by
    the restarted one, each exactly once."""
    port = free_port()
    env = environment(tmp_path, db_url, port) | {
        "INTAKE_MAIL__REPLY_LIMITS": "[[10, 1000]]",
        "INTAKE_OUTBOX__POLL_SECONDS": "0.2",
        # A reply the killed process had leased is sent again once its lease runs out.
        "INTAKE_OUTBOX__LEASE_SECONDS": "2",
    }
    assert (
        intake(env, "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    mails = [
        make_mail(subject=f"Frage {i}", body=f"Wie richte ich Queue {i} ein?") for i in range(80)
    ]
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.DEVNULL)
    maildir = tmp_path / "maildir" / "new"
    try:
        wait_for_port(port, proc)
        answers: list[int] = []

        def send_share(share: list[bytes]) -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo()
                for raw in share:
                    client.mail("it@muster.example")
                    client.rcpt("support@example.com")
                    code, _ = client.data(raw)
                    answers.append(code)

        senders = [threading.Thread(target=send_share, args=(mails[k::4],)) for k in range(4)]
        for s in senders:
            s.start()
        for s in senders:
            s.join(60)
        proc.send_signal(signal.SIGKILL)  # right after the last 250
        proc.wait(10)
        assert answers == [250] * len(mails)
        engine = make_engine(db_url)
        stored = count(make_sessions(engine), "inbox")
        waiting = count(make_sessions(engine), "inbox", "state = 'pending'")
        engine.dispose()
        assert stored == len(mails)
        print(f"{waiting} of {len(mails)} stored mails were waiting for triage at the kill")
        proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.DEVNULL)
        wait_for_port(port, proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(maildir.glob("*"))) < len(mails):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    engine = make_engine(db_url)
    tickets = count(make_sessions(engine), "tickets")
    done = count(make_sessions(engine), "inbox", "state = 'done'")
    engine.dispose()
    assert tickets == done == len(mails)
    subjects = [
        message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"]
        for p in maildir.glob("*")
    ]
    assert len(subjects) == len(set(subjects)) == len(mails), "a reply is missing or doubled"


def test_a_full_disk_answers_451_and_keeps_nothing_half_stored(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    """The database (which holds raw mail and attachments) on a small file system that fills."""
    from email.message import EmailMessage

    from classifier.model import PriorityModel
    from intake.customers import import_customers, parse_customers
    from intake.db.migrate import upgrade
    from tests.support.config import FIXED_NOW, make_config, missing_service
    from tests.support.database import count
    from tests.support.servers import AppThread, wait_until

    assert isinstance(model, PriorityModel)
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing_service(f"a small file system (mount -t tmpfs, needs root): {mounted.stderr}")
    try:
        url = f"sqlite:///{disk / 'intake.db'}"
        upgrade(url)
        cfg = make_config(tmp_path, url)
        engine = make_engine(url)
        with make_sessions(engine).begin() as session:
            import_customers(
                session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
            )
        big = EmailMessage()
        big["From"] = "it@muster.example"
        big["To"] = "support@example.com"
        big["Subject"] = "Logs"
        big["Message-ID"] = "<full-disk@muster.example>"
        big.set_content("Anbei die Logs.")
        big.add_attachment(
            bytes(range(256)) * 8192,
            maintype="application",
            subtype="octet-stream",
            filename="logs.bin",
        )
        with (
            AppThread(cfg, model) as app,
            smtplib.SMTP("127.0.0.1", app.port, timeout=60) as client,
        ):
            client.ehlo()
            client.mail("it@muster.example")
            client.rcpt("support@example.com")
            code, answer = client.data(big.as_bytes(policy=policy.SMTP))
            assert (code, answer[:5]) == (451, b"4.3.0")
            small = make_mail(subject="Kurz", body="Wie lege ich eine Queue an?")
            assert client.sendmail("it@muster.example", ["support@example.com"], small) == {}
            # The 250 means stored; the ticket follows from triage behind the door.
            wait_until(lambda: count(make_sessions(engine), "tickets") == 1, timeout=20)
        with make_sessions(engine)() as session:
            subjects = [s for (s,) in session.execute(text("select subject from tickets"))]
            attachments = session.execute(text("select count(*) from attachments")).scalar_one()
        engine.dispose()
        assert subjects == ["Kurz"] and attachments == 0
    finally:
        # Lazy: detached at once, freed when the last file on it is closed.
        subprocess.run(["umount", "-l", str(disk)], check=False)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (scripts/start-private-pg.sh) that it may stop."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.bin = ""

    def start(self) -> None:
        done = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "start-private-pg.sh"),
                str(self.workdir),
                str(self.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"private PostgreSQL did not start: {done.stderr[-2000:]}")
        self.bin = done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                *as_user,
                f"{self.bin}/pg_ctl",
                "-D",
                str(self.workdir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=30,
            check=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/intake"


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    if shutil.which("initdb") is None and not list(
        Path("/usr/lib/postgresql").glob("*/bin/initdb")
    ):
        missing_service("initdb (PostgreSQL server binaries) is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="intake-pg-"))
    workdir.chmod(0o755)
    server = PrivatePostgres(workdir / "pg")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_database_away_during_data_answers_451_and_the_retry_is_stored_once(
    tmp_path: Path, private_pg: PrivatePostgres, model: PriorityModel
) -> None:
    upgrade(private_pg.url)
    cfg = make_config(tmp_path, private_pg.url)
    first = make_mail(subject="Vor dem Ausfall")
    during = make_mail(subject="Während des Ausfalls")
    with AppThread(cfg, model) as running:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            assert client.sendmail("it@muster.example", ["support@example.com"], first) == {}
        private_pg.stop()
        with (
            smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            client.sendmail("it@muster.example", ["support@example.com"], during)
        assert refused.value.smtp_code == 451  # the sending server keeps it and retries
        private_pg.start()
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:  # the retry
            assert client.sendmail("it@muster.example", ["support@example.com"], during) == {}
            assert client.sendmail("it@muster.example", ["support@example.com"], during) == {}
    sessions = make_sessions(make_engine(private_pg.url))
    with sessions() as session:
        subjects = session.execute(text("select subject from tickets order by id")).scalars().all()
    assert subjects == ["Vor dem Ausfall", "Während des Ausfalls"]


@pytest.mark.slow
def test_relay_down_then_back_every_reply_goes_out_exactly_once(tmp_path: Path) -> None:
    """`intake serve` relays by SMTP to a server that is not there yet: mail is accepted, the
    replies wait in the outbox; once the relay is up each goes out once, none twice."""
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    port, relay_port = free_port(), free_port()
    env = environment(tmp_path, url, port) | {
        "INTAKE_RELAY__MODE": "smtp",
        "INTAKE_RELAY__HOST": "127.0.0.1",
        "INTAKE_RELAY__PORT": str(relay_port),
        "INTAKE_OUTBOX__POLL_SECONDS": "0.2",
        "INTAKE_OUTBOX__RETRY_BASE_SECONDS": "0.3",
        "INTAKE_OUTBOX__RETRY_MAX_SECONDS": "1",
        "INTAKE_OUTBOX__LEASE_SECONDS": "2",
    }
    assert intake(env, "db", "upgrade").returncode == 0
    assert (
        intake(env, "customers", "import", str(ROOT / "examples" / "customers.yaml")).returncode
        == 0
    )
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=relay_port)
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        for i in range(5):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                raw = make_mail(subject=f"Frage {i}", message_id=f"<relay-{i}@muster.example>")
                assert client.sendmail("it@muster.example", ["support@example.com"], raw) == {}
        time.sleep(1.5)  # several failed attempts against the missing relay
        controller.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(sink.received) < 5:
            time.sleep(0.1)
        time.sleep(3)  # longer than a lease: nothing may go out a second time
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        with contextlib.suppress(Exception):
            controller.stop()
    subjects = sorted(
        str(message_from_bytes(raw, policy=policy.default)["Subject"])
        for _, _, raw in sink.received
    )
    assert subjects == [f"[Ticket#{n}] Re: Frage {i}" for i, n in enumerate(_numbers(url))]
    with make_sessions(make_engine(url))() as session:
        attempts = session.execute(text("select max(attempts) from outbox")).scalar_one()
    # The first reply was tried while the relay was away; the others (same recipient) waited
    # behind it untried, so they still arrive in order.
    assert attempts >= 2


def _numbers(url: str) -> list[str]:
    with make_sessions(make_engine(url))() as session:
        return list(session.execute(text("select number from tickets order by id")).scalars())
