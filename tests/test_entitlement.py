"""Counting requests, points and hours through the running service, also under concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.config import Config
from intake.db.tables import Contract, LedgerEntry, OutboxItem, Ticket
from intake.domain import Outcome, Priority
from intake.mail.parse import parse_email
from intake.service import IntakeService, Receipt
from intake.staff import StaffActionRefused, book_hours, correct_priority, refund, set_points
from tests.support.config import ROOT
from tests.support.database import count, last_reply
from tests.support.factories import make_mail
from tests.support.models import ServiceModel

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Berlin
QUESTION = dict(
    subject="Frage zu Queues", body="Wie lege ich eine neue Queue an und ordne Agenten zu? Danke"
)
OUTAGE = dict(
    subject="Produktion steht",
    body="Unser Produktivsystem ist komplett ausgefallen, auch nach dem Neustart. Niemand kann arbeiten, kein Workaround.",
)


@pytest.fixture
def service(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> IntakeService:
    """Points priced by priority, as without a proposed service (tests/test_catalogue.py has the
    prices by the Leistungskatalog)."""
    return IntakeService(cfg, sessions, ServiceModel(model, None))


def receive(
    service: IntakeService, sender: str = "it@muster.example", at: datetime = AT, **mail: str
) -> Receipt:
    return service.receive(parse_email(make_mail(sender=sender, **(mail or QUESTION)), at))


def use_requests(sessions: sessionmaker[Session], model: str, n: int) -> None:
    with sessions.begin() as session:
        contract = session.scalars(select(Contract).where(Contract.model == model)).one()
        for _ in range(n):
            session.add(
                LedgerEntry(
                    contract_id=contract.id,
                    kind="request",
                    amount=-1,
                    contract_year=0,
                    reason="früher",
                    created_at=AT,
                )
            )


def test_the_confirmation_counts_the_request_and_a_follow_up_counts_nothing(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service)
    assert first.outcome is Outcome.ACCEPTED
    assert "Dies ist Ihre 1. von 30 Service-Anfragen in diesem Vertragsjahr." in last_reply(
        sessions
    )
    follow = receive(
        service,
        subject=f"AW: [Ticket#{first.ticket_number}] Frage zu Queues",
        body="Noch eine Ergänzung.",
    )
    assert follow.outcome is Outcome.FOLLOW_UP and follow.ticket_number == first.ticket_number
    assert count(sessions, "tickets") == 1 and count(sessions, "ledger") == 1
    assert count(sessions, "outbox") == 1  # a follow-up gets no new confirmation
    receive(service, subject="Noch eine Frage", body="Wie ändere ich die Signatur einer Queue?")
    assert "Dies ist Ihre 2. von 30 Service-Anfragen" in last_reply(sessions)


def test_a_reply_citing_our_message_id_is_a_follow_up_but_the_same_subject_alone_is_not(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service)
    with sessions() as session:
        ours = session.scalars(select(OutboxItem)).one()
        reply_id = message_from_bytes(ours.payload, policy=policy.default)["Message-ID"]
    cited = service.receive(
        parse_email(
            make_mail(
                subject="Re: Frage zu Queues",
                body="Danke, hat geklappt.",
                headers={"In-Reply-To": reply_id},
            ),
            AT,
        )
    )
    assert cited.outcome is Outcome.FOLLOW_UP and cited.ticket_number == first.ticket_number
    same_subject = receive(
        service, subject="Frage zu Queues", body="Wie benenne ich eine Queue um?"
    )
    assert same_subject.ticket_number != first.ticket_number


def test_the_last_request_of_the_year_warns_and_the_next_is_held(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    use_requests(sessions, "basic", 29)
    assert receive(service).outcome is Outcome.ACCEPTED
    reply = last_reply(sessions)
    assert (
        "Dies ist Ihre 30. von 30 Service-Anfragen" in reply
        and "Es verbleiben noch 0 Service-Anfragen" in reply
    )
    held = receive(service, subject="Noch eine", body="Wie exportiere ich Tickets als CSV?")
    assert held.outcome is Outcome.HELD
    assert "Alle 30 Service-Anfragen dieses Vertragsjahres sind verbraucht" in last_reply(sessions)
    assert count(sessions, "ledger") == 30


def test_concurrent_requests_on_the_last_unit_of_a_quota_admit_exactly_one(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    use_requests(sessions, "basic", 29)
    receipts: list[Receipt] = []
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            receipts.append(
                receive(service, subject=f"Frage {i}", body=f"Wie richte ich Queue {i} ein?")
            )
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    outcomes = sorted(r.outcome.value for r in receipts)
    assert outcomes.count("accepted") == 1 and outcomes.count("held") == 11
    assert count(sessions, "ledger", "kind = 'request'") == 30


def test_points_are_reserved_by_priority_and_a_short_balance_is_held(
    service: IntakeService, sessions: sessionmaker[Session], cfg: Config
) -> None:
    sender = "support@punkt-partner.example"  # points account with 120 points
    critical = receive(service, sender=sender, **OUTAGE)
    assert critical.priority is Priority.KRITISCH
    assert "8 Punkte reserviert; Ihr Guthaben danach: 112 Punkte" in last_reply(sessions)
    with sessions.begin() as session:
        contract = session.scalars(select(Contract).where(Contract.model == "points")).one()
        session.add(
            LedgerEntry(
                contract_id=contract.id, kind="points", amount=-111, reason="früher", created_at=AT
            )
        )
    last_point = receive(
        service, sender=sender, subject="Frage", body="Wie kann ich eine Queue anlegen? Danke"
    )
    assert last_point.outcome is Outcome.ACCEPTED  # 1 point left, a question costs 1
    assert "Ihr Guthaben danach: 0 Punkte" in last_reply(sessions)
    short = receive(
        service, sender=sender, subject="Frage 2", body="Wie lösche ich eine Queue? Danke"
    )
    assert short.outcome is Outcome.HELD
    assert "Guthaben 0 Punkte reicht nicht für 1 Punkte (Niedrig)" in last_reply(sessions)


def test_an_exhausted_on_demand_contingent_is_held(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        contract = session.scalars(select(Contract).where(Contract.model == "on_demand")).one()
        book_hours(session, contract.id, 20, "anna", "Workshop", AT)
    held = receive(
        service,
        sender="admin@flex.example",
        subject="Question",
        body="Hello, how can we add a new queue? Thanks and regards",
    )
    assert held.outcome is Outcome.HELD
    assert "Your On Demand contingent of hours is used up" in last_reply(sessions)


def test_a_staff_correction_recomputes_deadline_and_points_and_is_recorded(
    service: IntakeService, sessions: sessionmaker[Session], cfg: Config
) -> None:
    receipt = receive(
        service, sender="support@punkt-partner.example"
    )  # a question: Niedrig, 1 point
    assert receipt.priority is Priority.NIEDRIG
    number = receipt.ticket_number or ""
    with sessions.begin() as session:
        result = correct_priority(
            session, cfg, number, Priority.KRITISCH, "anna", "Produktion betroffen", AT
        )
    # Wednesday 10:00 + 4 service hours (Punktekonto: service calendar) = 14:00 Berlin
    assert result.deadline == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert result.points_delta == -7
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.final_priority == "Kritisch" and ticket.deadline == result.deadline
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.ticket_id == ticket.id)
        ).all()
        assert sum(e.amount for e in entries) == -8 and entries[-1].staff == "anna"
    assert (
        count(sessions, "corrections", "new_priority = 'Kritisch' and old_priority = 'Niedrig'")
        == 1
    )


def test_a_refund_gives_the_request_back_once(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    number = receive(service).ticket_number or ""
    with sessions.begin() as session:
        assert refund(session, number, "anna", "Fehler auf unserer Seite", AT) == 1
    with pytest.raises(StaffActionRefused), sessions.begin() as session:
        refund(session, number, "anna", "nochmal", AT)
    receive(service, subject="Andere Frage", body="Wie sichere ich die Datenbank?")
    assert "Dies ist Ihre 1. von 30 Service-Anfragen" in last_reply(sessions)


@pytest.mark.parametrize(
    ("args", "first", "second"),
    [
        (
            ["--model", "basic", "--priority", "Kritisch", "--received", "2026-11-27T16:00"],
            "2026-11-30T11:00:00+01:00",
            "Montag, 30.11.2026, 11:00 Uhr",
        ),
        (
            ["--model", "professional", "--priority", "Kritisch", "--received", "2026-11-27T19:30"],
            "2026-11-28T10:30:00+01:00",
            "Samstag, 28.11.2026, 10:30 Uhr",
        ),
        (
            [
                "--model",
                "basic",
                "--priority",
                "Hoch",
                "--received",
                "2026-06-03T16:00",
                "--state",
                "BE",
            ],
            "2026-06-04T15:00:00+02:00",
            "Donnerstag, 04.06.2026, 15:00 Uhr",
        ),
        (
            ["--model", "points", "--priority", "Kritisch", "--received", "2026-03-27T15:00Z"],
            "2026-03-30T11:00:00+02:00",
            "Montag, 30.03.2026, 11:00 Uhr",
        ),
    ],
)
def test_the_deadline_command_prints_iso_and_german(
    args: list[str], first: str, second: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "intake.cli",
            "--config",
            str(ROOT / "config.yaml"),
            "deadline",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [first, second]


def test_staff_can_set_what_a_points_ticket_costs_and_the_balance_follows(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    number = receive(service, sender="support@punkt-partner.example").ticket_number or ""  # 1 point
    with sessions.begin() as session:
        assert set_points(session, number, 12, "anna", "Entwicklung nach Aufwand", AT) == -11
        assert set_points(session, number, 12, "anna", "bestätigt", AT) == 0
    with sessions() as session:
        total = sum(
            e.amount
            for e in session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "points"))
        )
    assert total == -12
    with (
        pytest.raises(StaffActionRefused, match="not billed against a points account"),
        sessions.begin() as session,
    ):
        set_points(
            session,
            receive(service, subject="X", body="Wie geht das?").ticket_number or "",
            3,
            "anna",
            "x",
            AT,
        )


def test_a_reply_to_a_rejected_request_opens_a_new_one_that_refers_to_it(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service)
    with sessions.begin() as session:
        old = session.scalars(select(Ticket).where(Ticket.number == first.ticket_number)).one()
        old.status = "rejected"
    again = receive(
        service,
        subject=f"Re: [Ticket#{first.ticket_number}] Frage zu Queues",
        body="Das Problem ist wieder da.",
    )
    assert again.outcome is Outcome.ACCEPTED and again.ticket_number != first.ticket_number
    with sessions() as session:
        new = session.scalars(select(Ticket).where(Ticket.number == again.ticket_number)).one()
        assert new.refers_to is not None and new.refers_to.number == first.ticket_number
