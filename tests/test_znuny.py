"""The hand-over to Znuny as the provider's agents and our staff meet it, against the fake
GenericInterface server (tests/support/znuny.py): each accepted ticket arrives once, with our
triage; faults are retried and never create a ticket twice; refusals reach staff; corrections
and follow-ups follow the ticket; the history import writes training rows."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.commands.tickets import cmd_tickets_show
from intake.config import Config
from intake.db import store
from intake.db.tables import OutboxItem, Staff, Ticket
from intake.domain import OutboxStatus, Priority, TicketStatus
from intake.mail.parse import parse_email
from intake.outbox import MaildirRelay, OutboxSender, make_relay
from intake.passwords import hash_password
from intake.service import IntakeService, Receipt
from intake.staff import accept_held, correct_priority
from intake.web.app import create_app
from intake.znuny import handover
from intake.znuny.client import ZnunyClient
from intake.znuny.handover import HANDOVER_CHANNEL, HandoverState
from intake.znuny.relay import ZnunyRelay
from tests.support.clock import ManualClock
from tests.support.config import make_config
from tests.support.factories import make_mail
from tests.support.web import PASSWORD, csrf_of, login
from tests.support.znuny import FakeZnuny

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Berlin
CUSTOMER = "it@muster.example"  # K-1001, Basic


@pytest.fixture
def znuny() -> Iterator[FakeZnuny]:
    with FakeZnuny() as server:
        yield server


def znuny_config(tmp_path: Path, db_url: str, server: FakeZnuny, **more: str) -> Config:
    return make_config(
        tmp_path,
        db_url,
        INTAKE_ZNUNY__ENABLED="true",
        INTAKE_ZNUNY__URL=server.base_url,
        INTAKE_ZNUNY__USER="intake",
        INTAKE_ZNUNY__PASSWORD="intake-secret",
        INTAKE_ZNUNY__TIMEOUT_SECONDS="2",
        INTAKE_ZNUNY__ATTEMPTS="2",
        INTAKE_ZNUNY__AGENT_URL="https://otrs.example.com/otrs/index.pl?Action=AgentTicketZoom;TicketID={ticket_id}",
        **more,
    )


class Intake:
    """The service and its outbox, wired as `intake serve` wires them."""

    def __init__(
        self, cfg: Config, sessions: sessionmaker[Session], model: PriorityModel, tmp: Path
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.clock = ManualClock(AT)
        self.service = IntakeService(cfg, sessions, model)
        self.relay = ZnunyRelay(cfg, sessions, ZnunyClient(cfg.znuny), self.clock)
        self.outbox = OutboxSender(
            sessions,
            MaildirRelay(tmp / "maildir"),
            cfg.outbox,
            self.clock,
            more={HANDOVER_CHANNEL: self.relay},
        )

    def receive(self, raw: bytes) -> Receipt:
        return self.service.receive(parse_email(raw, self.clock()))

    def send(self, rounds: int = 1) -> None:
        """Run the outbox `rounds` times, letting the backoff pass between them."""
        for _ in range(rounds):
            self.outbox.run_once()
            self.clock.advance(self.cfg.outbox.retry_max_seconds + 1)

    def ticket(self, number: str | None) -> Ticket:
        with self.sessions() as session:
            ticket = store.ticket_by_number(session, number or "")
            assert ticket is not None
            session.expunge(ticket)
            return ticket

    def view(self, number: str | None) -> handover.HandoverView | None:
        with self.sessions() as session:
            ticket = store.ticket_by_number(session, number or "")
            assert ticket is not None
            return handover.view(session, self.cfg, ticket)

    def close(self) -> None:
        self.outbox.close()


@pytest.fixture
def make_intake(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], model: PriorityModel
) -> Iterator[Callable[..., Intake]]:
    """An intake wired to `server` with more INTAKE_ZNUNY__ settings; closed after the test."""
    made: list[Intake] = []

    def make(server: FakeZnuny, **more: str) -> Intake:
        made.append(
            Intake(znuny_config(tmp_path, db_url, server, **more), sessions, model, tmp_path)
        )
        return made[-1]

    yield make
    for running in made:
        running.close()


@pytest.fixture
def intake(make_intake: Callable[..., Intake], znuny: FakeZnuny) -> Intake:
    return make_intake(znuny)


def show_json(cfg: Config, number: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert cmd_tickets_show(cfg, argparse.Namespace(number=number, json=True)) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_an_accepted_request_arrives_in_znuny_once_with_our_triage(
    intake: Intake, znuny: FakeZnuny, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    assert receipt.priority is Priority.KRITISCH
    intake.send()

    [created] = znuny.tickets()
    assert created["Title"] == "Produktivsystem ausgefallen"
    assert created["Priority"] == "5 very high"
    assert (created["Queue"], created["State"]) == ("Support", "new")
    assert created["CustomerUser"] == CUSTOMER
    [article] = created["Articles"]
    assert article["SenderType"] == "customer" and article["IsVisibleForCustomer"] == 1
    assert article["From"] == CUSTOMER
    assert "komplett ausgefallen" in article["Body"]
    ours = intake.ticket(receipt.ticket_number)
    assert ours.deadline is not None
    assert created["DynamicField"]["IntakeReference"] == receipt.ticket_number
    deadline = datetime.fromisoformat(created["DynamicField"]["IntakeDeadline"])
    assert deadline == ours.deadline and deadline.utcoffset() == timedelta(hours=1)
    assert created["DynamicField"]["IntakeContract"] == "OTRS-Support Basic"

    assert ours.status == TicketStatus.HANDED_OVER
    assert (ours.znuny_ticket_id, ours.znuny_ticket_number) == (
        created["TicketID"],
        created["TicketNumber"],
    )
    shown = show_json(intake.cfg, receipt.ticket_number or "", capsys)
    assert shown["status_label"] == "an Znuny übergeben"
    assert shown["znuny"]["ticket_id"] == created["TicketID"]
    assert shown["znuny"]["ticket_number"] == created["TicketNumber"]
    assert shown["znuny"]["link"].endswith(f"TicketID={created['TicketID']}")

    intake.send(2)  # nothing left to do: still one ticket
    assert len(znuny.tickets()) == 1


def test_an_answer_lost_after_the_create_does_not_create_the_ticket_twice(
    intake: Intake, znuny: FakeZnuny
) -> None:
    znuny.drop_next_response("TicketCreate")
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    intake.send()
    assert len(znuny.tickets()) == 1  # Znuny has it; we do not know
    assert intake.ticket(receipt.ticket_number).znuny_ticket_id is None
    view = intake.view(receipt.ticket_number)
    assert view is not None and view.state is HandoverState.PENDING

    intake.send()
    [created] = znuny.tickets()
    assert intake.ticket(receipt.ticket_number).znuny_ticket_number == created["TicketNumber"]
    assert len([r for r in znuny.requests if r.operation == "TicketCreate"]) == 1


def test_znuny_down_failing_or_with_an_expired_session_is_retried_until_it_works(
    intake: Intake, znuny: FakeZnuny
) -> None:
    znuny.fail_next(2, 500)
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    intake.send(2)
    assert znuny.tickets() == []
    view = intake.view(receipt.ticket_number)
    assert view is not None and view.state is HandoverState.PENDING
    assert view.error is not None and "500" in view.error
    znuny.expire_sessions()
    intake.send()
    assert len(znuny.tickets()) == 1
    assert intake.ticket(receipt.ticket_number).status == TicketStatus.HANDED_OVER


def test_a_refusal_shows_uebergabe_fehlgeschlagen_to_staff_who_retry_after_fixing_it(
    make_intake: Callable[..., Intake], znuny: FakeZnuny, sessions: sessionmaker[Session]
) -> None:
    intake = make_intake(znuny, INTAKE_ZNUNY__TICKET__QUEUE="Premium")
    cfg = intake.cfg
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    intake.send(3)
    assert znuny.tickets() == []
    view = intake.view(receipt.ticket_number)
    assert view is not None and view.state is HandoverState.FAILED
    assert view.error is not None and "Queue parameter is invalid" in view.error  # Znuny's words
    with sessions() as session:
        [row] = session.scalars(
            select(OutboxItem).where(OutboxItem.channel == HANDOVER_CHANNEL)
        ).all()
        assert (row.status, row.attempts) == (OutboxStatus.FAILED, 2)

    with sessions.begin() as session:
        session.add(Staff(name="anna", password_hash=hash_password(PASSWORD), created_at=AT))
    client = TestClient(create_app(cfg, sessions, intake.clock), follow_redirects=False)
    assert login(client) == 303
    queue = client.get("/").text  # the queue says why it waits
    row = queue.split(str(receipt.ticket_number), 1)[1].split("</tr>", 1)[0]
    assert "Übergabe an Znuny fehlgeschlagen" in row
    page = client.get(f"/tickets/{receipt.ticket_number}").text
    assert "Übergabe fehlgeschlagen" in page and "Queue parameter is invalid" in page

    znuny.add_queue("Premium")  # the provider adds the queue
    answer = client.post(f"/tickets/{receipt.ticket_number}/handover", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    intake.send()
    [created] = znuny.tickets()
    assert created["Queue"] == "Premium"
    page = client.get(f"/tickets/{receipt.ticket_number}").text
    status = page.split('id="znuny"', 1)[1].split("</span>", 1)[0]
    assert "an Znuny übergeben: <a" in status and f"Ticket#{created['TicketNumber']}" in status
    assert 'id="znuny-error"' not in page


def test_a_staff_correction_and_a_follow_up_follow_the_ticket_into_znuny(
    intake: Intake, znuny: FakeZnuny, sessions: sessionmaker[Session]
) -> None:
    receipt = intake.receive(
        make_mail(
            sender=CUSTOMER,
            subject="Frage zu Queues",
            body="Wie lege ich eine neue Queue an? Danke",
        )
    )
    intake.send()
    [created] = znuny.tickets()
    before = created["Priority"]
    with sessions.begin() as session:
        correct_priority(
            session,
            intake.cfg,
            receipt.ticket_number or "",
            Priority.HOCH,
            "anna",
            "Mehr Benutzer betroffen als erkannt",
            intake.clock(),
        )
    intake.receive(
        make_mail(
            sender=CUSTOMER,
            subject=f"Re: [Ticket#{receipt.ticket_number}] Frage zu Queues",
            body="Noch eine Ergänzung: es geht um die Queue Vertrieb.",
        )
    )
    intake.send()
    updated = znuny.ticket(created["TicketID"])
    assert before != "4 high" and updated["Priority"] == "4 high"
    note, follow_up = updated["Articles"][1:]
    assert note["SenderType"] == "agent" and note["IsVisibleForCustomer"] == 0
    assert note["CommunicationChannel"] == "Internal"
    assert note["Body"] == (
        f"Priorität geändert von {receipt.priority.value if receipt.priority else '–'} auf Hoch: "
        "Mehr Benutzer betroffen als erkannt (anna)"
    )
    assert follow_up["SenderType"] == "customer" and follow_up["IsVisibleForCustomer"] == 1
    assert "Queue Vertrieb" in follow_up["Body"]
    assert len(znuny.tickets()) == 1


def test_a_held_request_goes_to_znuny_only_when_staff_accept_it(
    intake: Intake, znuny: FakeZnuny, sessions: sessionmaker[Session]
) -> None:
    receipt = intake.receive(make_mail(sender="jemand@anderswo.example"))
    assert intake.ticket(receipt.ticket_number).status == TicketStatus.HELD
    intake.send()
    assert znuny.tickets() == []
    with sessions.begin() as session:
        accept_held(session, intake.cfg, receipt.ticket_number or "", "anna", intake.clock())
    intake.send()
    [created] = znuny.tickets()
    assert created["CustomerUser"] == "jemand@anderswo.example"


def test_attachments_travel_base64_up_to_the_limit_and_larger_ones_are_named(
    make_intake: Callable[..., Intake], znuny: FakeZnuny
) -> None:
    intake = make_intake(znuny, INTAKE_ZNUNY__MAX_ATTACHMENT_BYTES="1000")
    mail = EmailMessage()
    mail["From"], mail["To"] = CUSTOMER, "support@example.com"
    mail["Subject"], mail["Message-ID"] = "Fehler beim Export", make_msgid()
    mail.set_content("Der Export bricht ab, Log und Screenshot anbei.")
    mail.add_attachment(
        b"ERROR export failed\n", maintype="text", subtype="plain", filename="export.log"
    )
    mail.add_attachment(
        b"\x89PNG" + b"0" * 5000, maintype="image", subtype="png", filename="bild.png"
    )
    intake.receive(mail.as_bytes(policy=policy.SMTP))
    intake.send()
    [created] = znuny.tickets()
    [article] = created["Articles"]
    assert [(a["Filename"], a["Content"]) for a in article["Attachments"]] == [
        ("export.log", b"ERROR export failed\n")
    ]
    assert "bild.png" in article["Body"]


def test_the_customer_user_comes_from_the_customer_data_when_set(
    intake: Intake, znuny: FakeZnuny, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from intake.customers import import_customers, parse_customers

    data = tmp_path / "customers.yaml"
    data.write_text(
        "customers:\n  - number: K-1001\n    name: Muster GmbH\n    state: NW\n"
        "    znuny_customer_user: muster-it\n"
    )
    with sessions.begin() as session:
        import_customers(session, parse_customers(data), intake.cfg, AT)
    znuny.customer_users.add("muster-it")  # a customer user of the provider's Znuny
    intake.receive(make_mail(sender=CUSTOMER))
    intake.send()
    [created] = znuny.tickets()
    assert created["CustomerUser"] == "muster-it"


def test_the_password_comes_only_from_the_environment_and_plain_http_only_on_loopback(
    tmp_path: Path,
) -> None:
    from intake.config import ConfigError, load_config

    config = tmp_path / "config.yaml"
    config.write_text(
        "znuny:\n  enabled: true\n  url: https://otrs.example.com/x\n  user: a\n  password: geheim\n"
    )
    with pytest.raises(ConfigError, match=r"znuny\.password"):
        load_config(config, {})
    with pytest.raises(ConfigError, match=r"znuny\.agent_url: .*only \{ticket_id\}"):
        load_config(
            None,
            {
                "INTAKE_ZNUNY__AGENT_URL": "https://otrs.example.com/index.pl?TicketID={ticket_id};Queue={queue}"
            },
        )
    with pytest.raises(ConfigError, match="https"):
        load_config(
            None,
            {
                "INTAKE_ZNUNY__ENABLED": "true",
                "INTAKE_ZNUNY__URL": "http://otrs.example.com/x",
                "INTAKE_ZNUNY__USER": "a",
                "INTAKE_ZNUNY__PASSWORD": "geheim",
            },
        )


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_history_import_writes_first_customer_text_and_the_agents_priority(
    znuny: FakeZnuny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intake.cli import main

    znuny.add_ticket(
        "Drucker druckt nicht",
        created="2026-10-01 09:00:00",
        priority="3 normal",
        articles=[
            {"Subject": "Drucker druckt nicht", "Body": "Seit heute\nkein Druck aus Znuny."},
            {"Subject": "Antwort", "Body": "Wir prüfen das.", "SenderType": "agent"},
        ],
        priority_changes=[("5 very high", "agent1")],
        state="closed successful",
    )
    znuny.add_ticket(
        "Alte Frage",
        created="2026-09-01 09:00:00",
        priority="1 very low",
        articles=[{"Subject": "Alte Frage", "Body": "Export\x0cnach CSV\u2028bitte"}],
    )
    znuny.add_ticket("Zu alt", created="2026-01-01 09:00:00")
    monkeypatch.setenv("INTAKE_ZNUNY__URL", znuny.base_url)
    monkeypatch.setenv("INTAKE_ZNUNY__USER", "intake")
    monkeypatch.setenv("INTAKE_ZNUNY__PASSWORD", "intake-secret")
    out = tmp_path / "history.csv"
    assert main(["znuny", "import", "--since", "2026-08-01", "--out", str(out)]) == 0
    found = {r["subject"]: r for r in rows(out)}
    assert set(found) == {"Drucker druckt nicht", "Alte Frage"}
    printer = found["Drucker druckt nicht"]
    assert printer["body"] == "Seit heute\\nkein Druck aus Znuny."
    assert (printer["priority"], printer["initial_priority"]) == ("Kritisch", "Mittel")
    assert printer["changed_by_agent"] == "1"
    assert found["Alte Frage"]["priority"] == "Niedrig"  # "1 very low": not mapped, by number
    assert found["Alte Frage"]["changed_by_agent"] == "0"

    from classifier.evaluate import read_labelled

    labelled = read_labelled(out)  # what `intake evaluate --data` and `train --extra` read
    assert [(r.priority, r.body) for r in labelled] == [
        (Priority.NIEDRIG, "Export\x0cnach CSV\u2028bitte"),
        (Priority.KRITISCH, "Seit heute\nkein Druck aus Znuny."),
    ]


def test_check_says_in_plain_words_what_works_and_what_does_not(
    znuny: FakeZnuny, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from intake.cli import main

    monkeypatch.setenv("INTAKE_ZNUNY__URL", znuny.base_url)
    monkeypatch.setenv("INTAKE_ZNUNY__USER", "intake")
    monkeypatch.setenv("INTAKE_ZNUNY__PASSWORD", "intake-secret")
    znuny.add_ticket("Vorhanden")
    assert main(["znuny", "check"]) == 0
    out = capsys.readouterr().out
    for operation in (
        "TicketSearch",
        "TicketCreate",
        "TicketUpdate",
        "TicketGet",
        "TicketHistoryGet",
    ):
        assert operation in out
    assert "all checks passed" in out
    assert len(znuny.tickets()) == 1  # the probes changed nothing

    znuny.disable("TicketHistoryGet")
    assert main(["znuny", "check"]) == 1
    assert "FAIL TicketHistoryGet" in capsys.readouterr().out

    monkeypatch.setenv("INTAKE_ZNUNY__PASSWORD", "falsch")
    assert main(["znuny", "check"]) == 1
    assert "user name or password wrong" in capsys.readouterr().out

    monkeypatch.setenv("INTAKE_ZNUNY__URL", znuny.base_url.replace("/Intake", "/Nope"))
    assert main(["znuny", "check"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_mail_mode_forwards_the_original_with_our_headers_and_none_of_the_customers(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    """An attacker's mail carries X-OTRS- headers of its own (priority, queue, customer user,
    our reference): Znuny trusts these headers from our relay, so only ours may reach it."""
    from aiosmtpd.controller import Controller

    from tests.support.network import Sink, free_port

    port = free_port()
    cfg = make_config(
        tmp_path,
        db_url,
        INTAKE_ZNUNY__ENABLED="true",
        INTAKE_ZNUNY__MODE="mail",
        INTAKE_ZNUNY__POSTMASTER_ADDRESS="postmaster@otrs.example.com",
        INTAKE_RELAY__MODE="smtp",
        INTAKE_RELAY__HOST="127.0.0.1",
        INTAKE_RELAY__PORT=str(port),
    )
    service = IntakeService(cfg, sessions, model)
    raw = make_mail(
        sender=CUSTOMER,
        subject="Frage zu Queues",
        body="Wie lege ich eine neue Queue an? Danke",
        headers={
            "X-OTRS-Priority": "5 very high",
            "X-OTRS-Queue": "Geschäftsführung",
            "x-otrs-customeruser": "chef",
            "X-OTRS-DynamicField-IntakeReference": "2026010110000001",
            "X-OTOBO-Priority": "5 very high",
            "X-OTRS-FollowUp-State": "closed successful",
        },
    )
    receipt = service.receive(parse_email(raw, AT))
    with sessions() as session:
        ticket = store.ticket_by_number(session, receipt.ticket_number or "")
        assert ticket is not None and ticket.status == TicketStatus.HANDED_OVER
        assert ticket.deadline is not None and ticket.confidence is not None
        deadline = ticket.deadline.astimezone(cfg.zone).isoformat(timespec="seconds")
        confidence = f"{ticket.confidence:.2f}"
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sender = OutboxSender(
            sessions, make_relay(cfg.relay, cfg.mail.from_address), cfg.outbox, lambda: AT
        )
        sender.run_once()
        sender.close()
    finally:
        controller.stop()
    [(mail_from, _, payload)] = [
        r for r in sink.received if r[1] == ["postmaster@otrs.example.com"]
    ]
    assert mail_from == cfg.mail.from_address
    from email import message_from_bytes

    forwarded = message_from_bytes(payload, policy=policy.default)
    otrs = sorted(
        (k, str(v)) for k, v in forwarded.items() if k.lower().startswith(("x-otrs-", "x-otobo-"))
    )
    assert otrs == sorted(
        [
            ("X-OTRS-Priority", cfg.znuny.priorities[receipt.priority or Priority.MITTEL]),
            ("X-OTRS-CustomerUser", CUSTOMER),
            ("X-OTRS-Queue", "Support"),
            ("X-OTRS-State", "new"),
            ("X-OTRS-DynamicField-IntakeReference", receipt.ticket_number or ""),
            ("X-OTRS-DynamicField-IntakeDeadline", deadline),
            ("X-OTRS-DynamicField-IntakeConfidence", confidence),
            ("X-OTRS-DynamicField-IntakeContract", "OTRS-Support Basic"),
        ]
    )
    assert receipt.priority is not None
    assert forwarded["Subject"] == "Frage zu Queues" and forwarded["From"] == CUSTOMER
    assert "neue Queue" in forwarded.get_content()


@pytest.mark.slow
def test_intake_serve_hands_over_and_a_correction_on_the_command_line_follows(
    tmp_path: Path, db_url: str, znuny: FakeZnuny
) -> None:
    import subprocess
    import time

    from tests.support.command import INTAKE, environment, intake, wait_for_port
    from tests.support.config import ROOT
    from tests.support.network import free_port, send

    port = free_port()
    env = {
        **environment(tmp_path, db_url, port),
        "INTAKE_ZNUNY__ENABLED": "true",
        "INTAKE_ZNUNY__URL": znuny.base_url,
        "INTAKE_ZNUNY__USER": "intake",
        "INTAKE_ZNUNY__PASSWORD": "intake-secret",
    }
    examples = str(ROOT / "examples" / "customers.yaml")
    assert intake(env, "customers", "import", examples).returncode == 0
    proc = subprocess.Popen([*INTAKE, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        assert send(port, make_mail(sender=CUSTOMER))[0] == 250
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = json.loads(intake(env, "tickets", "list", "--json").stdout)
            if listed and listed[0]["status"] == "handed_over":
                break
            time.sleep(0.2)
        number = listed[0]["number"]
        shown = json.loads(intake(env, "tickets", "show", number, "--json").stdout)
        [created] = znuny.tickets()
        assert shown["znuny"]["ticket_number"] == created["TicketNumber"]
        assert shown["status_label"] == "an Znuny übergeben"
        corrected = intake(
            env, "tickets", "correct", number, "--priority", "Mittel", "--staff", "anna",
            "--reason", "Testsystem, nicht produktiv",
        )  # fmt: skip
        assert corrected.returncode == 0, corrected.stderr
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and znuny.ticket(created["TicketID"])["Priority"] != "3 normal"
        ):
            time.sleep(0.1)
        updated = znuny.ticket(created["TicketID"])
        assert updated["Priority"] == "3 normal"
        assert updated["Articles"][-1]["Body"].endswith("Testsystem, nicht produktiv (anna)")
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_znuny_without_our_reference_field_never_links_us_to_someone_elses_ticket(
    make_intake: Callable[..., Intake],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Znuny's search drops a condition on a field it does not know and returns any ticket:
    the lookup before a create must not take that ticket for ours."""
    from intake.cli import main

    with FakeZnuny(dynamic_fields={"IntakeDeadline": "Text"}) as server:
        foreign = server.add_ticket("Ticket eines anderen Kunden")
        intake = make_intake(server)
        receipt = intake.receive(make_mail(sender=CUSTOMER))
        intake.send(3)
        ours = intake.ticket(receipt.ticket_number)
        assert ours.znuny_ticket_id is None and ours.status == TicketStatus.NEW
        view = intake.view(receipt.ticket_number)
        assert view is not None and view.state is HandoverState.FAILED
        assert view.error is not None and "DynamicField" in view.error
        assert server.ticket(foreign["TicketID"])["Articles"][-1]["Subject"] == (
            "Ticket eines anderen Kunden"
        )
        monkeypatch.setenv("INTAKE_ZNUNY__URL", server.base_url)
        monkeypatch.setenv("INTAKE_ZNUNY__USER", "intake")
        monkeypatch.setenv("INTAKE_ZNUNY__PASSWORD", "intake-secret")
        assert main(["znuny", "check"]) == 1
        assert "FAIL dynamic field IntakeReference missing" in capsys.readouterr().out


def test_a_follow_up_whose_answer_was_lost_is_added_once(intake: Intake, znuny: FakeZnuny) -> None:
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    intake.send()
    [created] = znuny.tickets()
    znuny.drop_next_response("TicketUpdate")
    intake.receive(
        make_mail(
            sender=CUSTOMER,
            subject=f"Re: [Ticket#{receipt.ticket_number}] Produktivsystem ausgefallen",
            body="Nachtrag: auch die Agentenoberfläche ist nicht erreichbar.",
        )
    )
    intake.send(3)
    articles = znuny.ticket(created["TicketID"])["Articles"]
    assert [a["Body"] for a in articles].count(
        "Nachtrag: auch die Agentenoberfläche ist nicht erreichbar."
    ) == 1
    history = znuny.ticket(created["TicketID"])["History"]
    assert "FollowUp" in [h["HistoryType"] for h in history]


def test_a_slow_znuny_does_not_hold_the_database_the_intake_needs(
    intake: Intake, znuny: FakeZnuny
) -> None:
    """On SQLite the door, triage and the outbox share one connection: a hand-over waiting for
    Znuny must not keep it, or mail could not be stored meanwhile."""
    import threading
    import time

    intake.receive(make_mail(sender=CUSTOMER))
    znuny.delay_next(1.5, operation="TicketSearch")  # below the client timeout of 2 s
    sending = threading.Thread(target=intake.outbox.run_once)
    sending.start()
    try:
        deadline = time.monotonic() + 10
        while not [r for r in znuny.requests if r.operation == "TicketSearch"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = intake.receive(
            make_mail(sender=CUSTOMER, subject="Noch etwas", body="Eine zweite Frage zu Queues.")
        )
        assert second.ticket_number is not None
        assert sending.is_alive()  # stored while Znuny was still answering
    finally:
        sending.join(15)
    assert len(znuny.tickets()) == 1


def test_an_answer_that_is_no_ticket_is_never_taken_for_a_hand_over(
    intake: Intake, znuny: FakeZnuny
) -> None:
    """HTTP 200 is not success: a body without the created ticket (a proxy's page, a fault
    dressed as 200) counts as a refusal, and nothing is recorded as handed over."""
    receipt = intake.receive(make_mail(sender=CUSTOMER))
    znuny.fail_next(2, 200, operation="TicketCreate", message="<html>Anmeldung</html>")
    intake.send(2)
    ours = intake.ticket(receipt.ticket_number)
    assert ours.znuny_ticket_id is None and ours.status == TicketStatus.NEW
    view = intake.view(receipt.ticket_number)
    assert view is not None and view.state is HandoverState.FAILED
    assert view.error is not None and "unerwartete Antwort" in view.error
    assert znuny.tickets() == []
