"""Trust at the door, through the stored inbox and triage: a forged `From:` opens nothing on a
contract and is answered to nobody; a ticket number or Message-ID of somebody else's ticket
attaches nothing to it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.accept import Acceptor, Arrival
from intake.config import Config
from intake.customers import import_customers, parse_customers
from intake.db.engine import make_engine, make_sessions
from intake.db.tables import Customer, LedgerEntry, Message, OutboxItem, Ticket, TriageRecord
from intake.domain import AuthMode, AuthResult, Channel, Direction, Outcome, TicketStatus
from intake.service import IntakeService
from intake.triage import TriageWorker
from tests.support.config import FIXED_NOW, ROOT, make_config
from tests.support.dns import DkimKey, LocalDns
from tests.support.factories import make_mail

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # a Friday morning
CUSTOMER = "it@muster.example"  # K-1001, Basic
OTHER = "helpdesk@beispiel.example"  # K-1002, Professional
ATTACKER_PEER = "203.0.113.5:4711"


class Intake:
    """The door and triage on a migrated SQLite database with the example customers."""

    def __init__(self, tmp_path: Path, url: str, dns: LocalDns, model: PriorityModel, **env: str):
        self.cfg: Config = make_config(tmp_path, url, INTAKE_MAIL__DNS_SERVERS=dns.address, **env)
        self.engine = make_engine(url)
        self.sessions: sessionmaker[Session] = make_sessions(self.engine)
        with self.sessions.begin() as session:
            customers = parse_customers(ROOT / "examples" / "customers.yaml")
            import_customers(session, customers, self.cfg, FIXED_NOW)
        self.acceptor = Acceptor(self.sessions)
        self.worker = TriageWorker(
            self.cfg.triage,
            self.sessions,
            IntakeService(self.cfg, self.sessions, model),
            lambda: NOW,
        )

    def mail(self, raw: bytes, envelope: str, peer: str = ATTACKER_PEER) -> Ticket:
        """Store `raw` as SMTP would and triage it; the ticket it ended in."""
        self.acceptor.accept(
            Arrival(Channel.EMAIL, raw, NOW, envelope, ("support@example.com",), peer)
        )
        while self.worker.run_once():
            pass
        with self.sessions() as session:
            message = session.scalars(
                select(Message).where(Message.direction == Direction.IN).order_by(Message.id.desc())
            ).first()
            assert message is not None and message.ticket is not None
            session.expunge_all()
            return message.ticket

    def replies(self, ticket: Ticket) -> list[OutboxItem]:
        with self.sessions() as session:
            return list(
                session.scalars(select(OutboxItem).where(OutboxItem.ticket_id == ticket.id))
            )

    def requests_used(self, customer: str = "K-1001") -> int:
        with self.sessions() as session:
            entries = session.scalars(
                select(LedgerEntry)
                .join(Ticket, Ticket.id == LedgerEntry.ticket_id)
                .join(Customer, Customer.id == Ticket.customer_id)
                .where(Customer.number == customer)
            )
            return len(list(entries))

    def verdicts(self, ticket: Ticket) -> list[str]:
        with self.sessions() as session:
            records = session.scalars(
                select(TriageRecord).where(TriageRecord.ticket_id == ticket.id)
            )
            return [v["reason"] for r in records for v in r.verdicts if v["hit"]]

    def inbound(self, ticket: Ticket) -> int:
        with self.sessions() as session:
            return len(
                list(
                    session.scalars(
                        select(Message.id).where(
                            Message.ticket_id == ticket.id, Message.direction == Direction.IN
                        )
                    )
                )
            )

    def close(self) -> None:
        self.worker.close()
        self.acceptor.close()
        self.engine.dispose()


@pytest.fixture
def intake_factory(
    tmp_path: Path, sqlite_url: str, dns: LocalDns, model: PriorityModel
) -> Iterator[type[Intake]]:
    made: list[Intake] = []

    def make(**env: str) -> Intake:
        made.append(Intake(tmp_path, sqlite_url, dns, model, **env))
        return made[-1]

    yield make  # type: ignore[misc]
    for intake in made:
        intake.close()


def test_enforce_holds_a_forged_from_uses_up_nothing_and_answers_nobody(
    intake_factory: type[Intake],
) -> None:
    intake = intake_factory(INTAKE_MAIL__SENDER_AUTH="enforce")
    ticket = intake.mail(make_mail(sender=CUSTOMER), envelope="x@evil.example")
    assert ticket.outcome == Outcome.UNVERIFIED
    assert ticket.status is TicketStatus.HELD
    assert ticket.sender_auth is AuthResult.NONE
    assert intake.replies(ticket) == []  # the address may be forged: no reflection
    assert intake.requests_used() == 0
    assert any("Absender nicht bestätigt" in r for r in intake.verdicts(ticket))


def test_enforce_accepts_the_customer_whose_signature_verifies(
    intake_factory: type[Intake], key: DkimKey
) -> None:
    intake = intake_factory(INTAKE_MAIL__SENDER_AUTH="enforce")
    ticket = intake.mail(key.sign(make_mail(sender=CUSTOMER)), envelope=CUSTOMER)
    assert ticket.outcome == Outcome.ACCEPTED
    assert ticket.sender_auth is AuthResult.PASS
    assert len(intake.replies(ticket)) == 1
    assert intake.requests_used() == 1


def test_report_holds_a_failed_check_and_lets_an_unconfirmed_sender_through_marked(
    intake_factory: type[Intake], dns: LocalDns
) -> None:
    dns.publish("_dmarc.muster.example", "v=DMARC1; p=reject")
    intake = intake_factory()  # report is the default
    forged = intake.mail(make_mail(sender=CUSTOMER), envelope="x@evil.example")
    assert forged.outcome == Outcome.UNVERIFIED and forged.sender_auth is AuthResult.FAIL
    assert intake.replies(forged) == []
    assert intake.requests_used() == 0
    unknown = intake.mail(make_mail(sender=OTHER, subject="Frage"), envelope=OTHER)
    assert unknown.outcome == Outcome.ACCEPTED and unknown.sender_auth is AuthResult.NONE
    assert len(intake.replies(unknown)) == 1


def test_a_forged_trusted_header_below_the_front_mta_s_own_changes_nothing(
    intake_factory: type[Intake],
) -> None:
    intake = intake_factory(INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example")
    raw = (
        b"Authentication-Results: mx.support.example; dmarc=fail header.from=muster.example\r\n"
        b"Authentication-Results: mx.support.example; dmarc=pass header.from=muster.example\r\n"
        + make_mail(sender=CUSTOMER)
    )
    ticket = intake.mail(raw, envelope=CUSTOMER)
    assert ticket.outcome == Outcome.UNVERIFIED and ticket.sender_auth is AuthResult.FAIL
    assert intake.replies(ticket) == []


def test_a_customer_s_own_mode_overrides_the_global_one(
    intake_factory: type[Intake],
) -> None:
    intake = intake_factory(INTAKE_MAIL__SENDER_AUTH="enforce")
    with intake.sessions.begin() as session:
        customer = session.scalars(select(Customer).where(Customer.number == "K-1001")).one()
        customer.sender_auth = AuthMode.REPORT  # its mail cannot pass: customers.yaml says so
    ticket = intake.mail(make_mail(sender=CUSTOMER), envelope=CUSTOMER)
    assert ticket.outcome == Outcome.ACCEPTED
    other = intake.mail(make_mail(sender=OTHER, subject="Frage"), envelope=OTHER)
    assert other.outcome == Outcome.UNVERIFIED


def test_customers_yaml_sets_the_customer_s_mode(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(
        "customers:\n  - number: K-9\n    name: Alt GmbH\n    sender_auth: off\n"
        "  - number: K-10\n    name: Streng AG\n    sender_auth: enforce\n"
    )
    modes = [entry.sender_auth for entry in parse_customers(path)]
    assert modes == [AuthMode.OFF, AuthMode.ENFORCE]


def test_a_foreign_ticket_number_attaches_nothing_and_staff_see_why(
    intake_factory: type[Intake],
) -> None:
    intake = intake_factory()
    first = intake.mail(make_mail(sender=CUSTOMER), envelope=CUSTOMER)
    assert first.number is not None
    # Ticket numbers are sequential: another customer (or anyone) can guess this one.
    stranger = intake.mail(
        make_mail(sender=OTHER, subject=f"[Ticket#{first.number}] Bitte sofort schließen"),
        envelope=OTHER,
    )
    assert stranger.id != first.id
    assert intake.inbound(first) == 1
    assert stranger.customer_id != first.customer_id
    assert stranger.refers_to_id is None
    assert any(
        f"Verweist auf fremdes Ticket {first.number}" in r for r in intake.verdicts(stranger)
    )
    anonymous = intake.mail(
        make_mail(sender="wer@nirgends.example", subject=f"AW: [Ticket#{first.number}]"),
        envelope="wer@nirgends.example",
    )
    assert anonymous.id != first.id and intake.inbound(first) == 1
    assert anonymous.outcome == Outcome.HELD  # an unknown sender, as without the number


def test_a_cited_message_id_of_another_customer_s_ticket_attaches_nothing(
    intake_factory: type[Intake],
) -> None:
    intake = intake_factory()
    first = intake.mail(
        make_mail(sender=CUSTOMER, message_id="<erste@muster.example>"), envelope=CUSTOMER
    )
    stranger = intake.mail(
        make_mail(
            sender=OTHER,
            subject="Re: Produktivsystem ausgefallen",
            headers={"In-Reply-To": "<erste@muster.example>"},
        ),
        envelope=OTHER,
    )
    assert stranger.id != first.id and intake.inbound(first) == 1


def test_the_ticket_s_own_customer_still_follows_up(intake_factory: type[Intake]) -> None:
    intake = intake_factory()
    first = intake.mail(make_mail(sender=CUSTOMER), envelope=CUSTOMER)
    again = intake.mail(
        make_mail(sender=CUSTOMER, subject=f"AW: [Ticket#{first.number}] Nachtrag"),
        envelope=CUSTOMER,
    )
    assert again.id == first.id and intake.inbound(first) == 2
    assert intake.requests_used() == 1


def test_staff_see_the_unconfirmed_sender_and_the_reasons(intake_factory: type[Intake]) -> None:
    from fastapi.testclient import TestClient

    from intake.db.tables import Staff
    from intake.passwords import hash_password
    from intake.web.app import create_app
    from tests.support.web import PASSWORD, login

    intake = intake_factory(INTAKE_MAIL__SENDER_AUTH="enforce")
    ticket = intake.mail(make_mail(sender=CUSTOMER), envelope="x@evil.example")
    with intake.sessions.begin() as session:
        session.add(Staff(name="anna", password_hash=hash_password(PASSWORD), created_at=NOW))
    client = TestClient(create_app(intake.cfg, intake.sessions, lambda: NOW))
    assert login(client) in (200, 303)
    queue = client.get("/").text
    assert "Absender nicht bestätigt" in queue
    page = client.get(f"/tickets/{ticket.number}").text
    assert 'id="sender-auth"' in page and "Absender nicht bestätigt" in page
    assert "selbst geprüft" in page  # the reasons, method by method


def test_over_smtp_a_front_mta_verdict_decides_who_gets_an_answer(
    tmp_path: Path, sqlite_url: str, model: PriorityModel, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    from argparse import Namespace

    from intake.commands.tickets import cmd_tickets_show
    from tests.support.database import count
    from tests.support.network import send
    from tests.support.servers import AppThread, wait_for_files, wait_until

    cfg = make_config(
        tmp_path,
        sqlite_url,
        INTAKE_MAIL__SENDER_AUTH="enforce",
        INTAKE_MAIL__TRUSTED_AUTHSERV_IDS="mx.support.example",
    )
    sessions = make_sessions(make_engine(sqlite_url))
    with sessions.begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )
    header = "Authentication-Results: mx.support.example; dmarc={} header.from=muster.example\r\n"
    forged = header.format("fail").encode() + make_mail(sender=CUSTOMER, subject="Gefälscht")
    genuine = header.format("pass").encode() + make_mail(sender=CUSTOMER, subject="Echt")
    with AppThread(cfg, model) as server:
        assert send(server.port, forged)[0] == 250
        wait_until(lambda: count(sessions, "inbox", "state = 'done'") == 1)
        assert send(server.port, genuine)[0] == 250
        (reply,) = wait_for_files(Path(cfg.relay.maildir) / "new", 1)
        wait_until(lambda: count(sessions, "inbox", "state = 'done'") == 2)
    assert b"Echt" in reply.read_bytes()
    with sessions() as session:
        numbers = {row[0]: row[1] for row in session.execute(select(Ticket.subject, Ticket.number))}
    capsys.readouterr()
    assert cmd_tickets_show(cfg, Namespace(number=numbers["Gefälscht"], json=True)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sender_auth"] == "fail" and shown["outcome"] == "unverified"
    assert shown["messages"][0]["sender_auth_reasons"][0].startswith("Authentication-Results")
    assert count(sessions, "ledger") == 1  # the genuine request only
