"""A ticket's life as staff and customers meet it: follow-ups flag, reopen and raise tickets,
staff move tickets along and every change is an event, decisions reach the customer."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.commands.tickets import cmd_tickets_show
from intake.config import Config
from intake.corrections import training_corrections
from intake.db.tables import Attachment, Staff, Ticket
from intake.domain import Explanation, Outcome, Prediction, Priority, TicketStatus
from intake.lifecycle import raise_to
from intake.mail.parse import parse_email
from intake.passwords import hash_password
from intake.service import IntakeService, Receipt
from intake.web.app import create_app
from tests.support.database import count, last_reply
from tests.support.factories import make_mail
from tests.support.web import PASSWORD, csrf_of, login

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Berlin
LATER = AT + timedelta(hours=3)
CUSTOMER = "it@muster.example"
QUESTION = {"subject": "Frage zu Queues", "body": "Wie lege ich eine neue Queue an? Danke"}
ESCALATION = (
    "Jetzt ist es wirklich kritisch: das Produktivsystem steht komplett, niemand kann mehr "
    "arbeiten, kein Workaround."
)


def guess(priority: Priority, confidence: float, review: bool = False) -> Prediction:
    return Prediction(
        priority=priority,
        confidence=confidence,
        probabilities={p: 0.0 for p in Priority},
        model_version="t",
        needs_review=review,
        explanation=Explanation((), ()),
    )


@pytest.mark.parametrize(
    ("current", "proposal", "expected"),
    [
        (Priority.MITTEL, guess(Priority.KRITISCH, 0.9), (Priority.KRITISCH, False)),
        (Priority.MITTEL, guess(Priority.KRITISCH, 0.4), (None, True)),  # unsure: review
        (Priority.MITTEL, guess(Priority.HOCH, 0.9, review=True), (None, True)),
        (Priority.HOCH, guess(Priority.MITTEL, 0.99), (None, False)),  # lower: keeps Hoch
        (Priority.HOCH, guess(Priority.HOCH, 0.99), (None, False)),
        (None, guess(Priority.KRITISCH, 0.99), (None, False)),
    ],
)
def test_only_a_confident_higher_proposal_raises_a_ticket(
    current: Priority | None, proposal: Prediction, expected: tuple[Priority | None, bool]
) -> None:
    assert raise_to(current, proposal, review_below=0.6) == expected


@pytest.fixture
def service(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> IntakeService:
    return IntakeService(cfg, sessions, model)


def receive(
    service: IntakeService, at: datetime = AT, sender: str = CUSTOMER, **mail: str
) -> Receipt:
    return service.receive(parse_email(make_mail(sender=sender, **(mail or QUESTION)), at))


def ticket_of(sessions: sessionmaker[Session], number: str | None) -> Ticket:
    with sessions() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        ticket.events  # noqa: B018 (load before the session closes)
        return ticket


def test_a_customer_escalation_raises_the_ticket_with_a_new_deadline_and_one_mail(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service)
    before = ticket_of(sessions, first.ticket_number)
    assert before.proposed_priority == "Niedrig" and before.deadline is not None
    replies = count(sessions, "outbox")
    again = receive(
        service,
        LATER,
        subject=f"Re: [Ticket#{first.ticket_number}] Frage zu Queues",
        body=ESCALATION,
    )
    assert again.outcome is Outcome.FOLLOW_UP and again.ticket_number == first.ticket_number
    assert again.priority is Priority.KRITISCH and again.reply_queued
    after = ticket_of(sessions, first.ticket_number)
    assert after.proposed_priority == "Kritisch" and after.unread_since == LATER
    # Basic, Kritisch: 4 service hours from the follow-up (13:00 Berlin) → 17:00, earlier than
    # the Niedrig deadline promised before.
    assert after.deadline == LATER + timedelta(hours=4) < before.deadline
    assert [e.kind for e in after.events] == ["message", "raised"]
    assert count(sessions, "outbox") == replies + 1  # one mail: the new priority and deadline
    mail = last_reply(sessions)
    assert "Kritisch" in mail and "17:00" in mail
    assert count(sessions, "tickets") == 1


def test_an_unsure_higher_proposal_goes_to_review_and_a_lower_one_changes_nothing(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service, subject="Produktion steht", body=ESCALATION)
    assert first.priority is Priority.KRITISCH
    receive(
        service,
        LATER,
        subject=f"Re: [Ticket#{first.ticket_number}] Produktion steht",
        body="Danke, wir warten auf Ihren Anruf.",
    )
    ticket = ticket_of(sessions, first.ticket_number)
    assert ticket.proposed_priority == "Kritisch"  # a calmer message never lowers it
    assert ticket.unread_since == LATER and [e.kind for e in ticket.events] == ["message"]


def test_a_follow_up_to_an_erledigt_ticket_reopens_it(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    first = receive(service)
    with sessions.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        ticket.status = TicketStatus.DONE
    receive(
        service, LATER, subject=f"Re: [Ticket#{first.ticket_number}]", body="Geht wieder nicht."
    )
    ticket = ticket_of(sessions, first.ticket_number)
    assert ticket.status == TicketStatus.NEW and ticket.unread_since == LATER
    assert [e.kind for e in ticket.events] == ["message", "reopened"]


@pytest.fixture
def client(cfg: Config, sessions: sessionmaker[Session], service: IntakeService) -> TestClient:
    with sessions.begin() as session:
        for name in ("anna", "ben"):
            session.add(Staff(name=name, password_hash=hash_password(PASSWORD), created_at=AT))
    receive(service)  # Niedrig, from a Basic customer
    receive(service, sender="fremd@elsewhere.example", subject="Hilfe", body="Unser Znuny hängt.")
    return TestClient(create_app(cfg, sessions, lambda: LATER), follow_redirects=False)


def numbers(client: TestClient, **params: str) -> list[str]:
    return re.findall(r'href="/tickets/(\d{16})"', client.get("/", params=params).text)


def test_erledigt_tickets_leave_the_queue_stay_findable_and_every_change_is_an_event(
    client: TestClient,
    sessions: sessionmaker[Session],
    cfg: Config,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(client) == 303
    open_number = numbers(client, status="new")[0]
    page = client.get(f"/tickets/{open_number}")
    token = csrf_of(page.text)
    client.post(f"/tickets/{open_number}/assign", data={"assignee": "ben", "csrf": token})
    assert numbers(client, mine="1") == []  # anna's tickets: none; ben has it
    client.post(f"/tickets/{open_number}/note", data={"note": "Kunde ruft zurück", "csrf": token})
    done = client.post(
        f"/tickets/{open_number}/status",
        data={"status": "done", "reason": "Anleitung geschickt", "csrf": token},
    )
    page = client.get(done.headers["location"]).text
    assert "Status: erledigt." in page and '<span id="status">erledigt</span>' in page
    assert open_number not in numbers(client)
    assert numbers(client, status="done") == [open_number]
    assert cmd_tickets_show(cfg, argparse.Namespace(number=open_number, json=True)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["staff"], e["what"], e["reason"]) for e in shown["events"]] == [
        ("assigned", "anna", "an ben", ""),
        ("status", "anna", "neu → in Bearbeitung", ""),
        ("note", "anna", "Kunde ruft zurück", ""),
        ("status", "anna", "in Bearbeitung → erledigt", "Anleitung geschickt"),
    ]
    assert shown["status"] == "done" and shown["status_label"] == "erledigt"
    # A held request cannot be marked erledigt by hand: staff accept or reject it.
    held = numbers(client, status="held")[0]
    refused = client.post(f"/tickets/{held}/status", data={"status": "done", "csrf": token})
    assert "Nicht möglich" in client.get(refused.headers["location"]).text
    assert count(sessions, "tickets", "status = 'held'") == 1


def test_bulk_erledigt_and_assignment_from_the_queue(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert login(client) == 303
    token = csrf_of(client.get("/").text)
    everything = numbers(client)
    response = client.post(
        "/bulk",
        data={"action": "assign", "assignee": "anna", "tickets": everything, "csrf": token},
    )
    assert "2 Ticket(s) anna zugewiesen." in client.get(response.headers["location"]).text
    assert sorted(numbers(client, mine="1")) == sorted(everything)
    response = client.post(
        "/bulk", data={"action": "done", "tickets": everything, "csrf": token, "back": "/"}
    )
    message = client.get(response.headers["location"]).text
    assert "1 Ticket(s) als erledigt markiert. 1 unverändert" in message  # the held one stays
    assert count(sessions, "tickets", "status = 'done'") == 1
    forged = client.post("/bulk", data={"action": "done", "tickets": everything, "csrf": "x"})
    assert forged.status_code == 403


def test_a_correction_without_a_reason_is_refused_with_a_clear_message(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert login(client) == 303
    number = numbers(client, status="new")[0]
    page = client.get(f"/tickets/{number}").text
    assert '<option value="" selected>– bitte wählen –</option>' in page
    response = client.post(
        f"/tickets/{number}/priority",
        data={"priority": "Hoch", "reason": "", "csrf": csrf_of(page)},
    )
    assert (
        "Nicht gespeichert: bitte einen Grund wählen."
        in client.get(response.headers["location"]).text
    )
    assert count(sessions, "corrections") == 0


def test_accepting_a_held_request_sends_the_confirmation_and_rejecting_sends_staffs_text(
    client: TestClient, sessions: sessionmaker[Session], service: IntakeService
) -> None:
    assert login(client) == 303
    held = numbers(client, status="held")[0]
    page = client.get(f"/tickets/{held}").text
    replies = count(sessions, "outbox")
    client.post(
        f"/tickets/{held}/held",
        data={"action": "accept", "goodwill": "professional", "csrf": csrf_of(page)},
    )
    assert count(sessions, "outbox") == replies + 1
    confirmation = last_reply(sessions)
    assert (
        held in confirmation and "Antwort bis:      Mittwoch, 25.11.2026, 12:00 Uhr" in confirmation
    )
    ticket = ticket_of(sessions, held)
    assert ticket.status == TicketStatus.NEW and ticket.deadline is not None
    # A second unknown sender's request, rejected with the text staff edited.
    receive(service, sender="noch@elsewhere.example", subject="Angebot", body="Was kostet Support?")
    other = next(n for n in numbers(client, status="held") if n != held)
    page = client.get(f"/tickets/{other}").text
    assert "nicht im Rahmen eines Supportvertrags" in page  # the text to edit is shown
    client.post(
        f"/tickets/{other}/held",
        data={
            "action": "reject",
            "reason": "kein Vertrag",
            "text": "Guten Tag,\n\nbitte schließen Sie zuerst einen Vertrag ab.\n\nIhr Support",
            "csrf": csrf_of(page),
        },
    )
    sent = last_reply(sessions)
    assert "bitte schließen Sie zuerst einen Vertrag ab." in sent
    assert "nicht im Rahmen" not in sent
    assert ticket_of(sessions, other).status == TicketStatus.REJECTED


def test_training_pairs_a_decision_with_the_message_it_was_about(
    client: TestClient, sessions: sessionmaker[Session], service: IntakeService
) -> None:
    assert login(client) == 303
    number = numbers(client, status="new")[0]
    receive(service, LATER, subject=f"Re: [Ticket#{number}]", body="Zusatz: betrifft nur mich.")
    page = client.get(f"/tickets/{number}").text
    client.post(
        f"/tickets/{number}/priority",
        data={"priority": "Mittel", "reason": "Weniger Benutzer betroffen", "csrf": csrf_of(page)},
    )
    with sessions() as session:
        examples = training_corrections(session)
    assert [(e.body, e.priority) for e in examples] == [
        ("Zusatz: betrifft nur mich.", Priority.MITTEL)
    ]


def test_an_attachment_downloads_and_is_never_rendered(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        message_id = session.scalars(select(Ticket)).first().messages[0].id  # type: ignore[union-attr]
        session.add(
            Attachment(
                message_id=message_id,
                filename='bild"\r\n.html',
                content_type="text/html",
                size=29,
                data=b"<script>alert(1)</script>....",
                created_at=AT,
            )
        )
    assert client.get("/attachments/1").status_code == 303  # staff only
    assert login(client) == 303
    with sessions() as session:
        attachment_id = session.scalars(select(Attachment.id)).one()
    response = client.get(f"/attachments/{attachment_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="bild___.html"')
    assert "\r" not in disposition and "\n" not in disposition


def test_the_search_box_finds_erledigte_tickets_and_combines_with_the_filters(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert login(client) == 303
    question = numbers(client, status="new")[0]
    token = csrf_of(client.get(f"/tickets/{question}").text)
    client.post(f"/tickets/{question}/status", data={"status": "done", "csrf": token})
    assert question not in numbers(client)  # erledigt: out of the queue …
    assert numbers(client, q="QUEUES") == [question]  # … and found, case-blind
    assert numbers(client, q="queues", status="done") == [question]
    assert numbers(client, q="queues", status="held") == []
    held = numbers(client, status="held")
    assert numbers(client, q="fremd@elsewhere.example") == held  # by sender address
    for hostile in ['"', "NEAR(", "a OR b", "*", "x" * 200]:
        assert client.get("/", params={"q": hostile}).status_code == 200, hostile
    assert client.get("/", params={"q": "x" * 201}).status_code == 400


def test_a_customer_sees_a_handed_over_ticket_as_in_progress_and_staff_see_where_it_went() -> None:
    assert TicketStatus.HANDED_OVER.label == "an Znuny übergeben"
    assert TicketStatus.HANDED_OVER.label_in("de") == "in Bearbeitung"
    assert TicketStatus.HANDED_OVER.label_in("en") == "in progress"
    assert TicketStatus.DONE.label_in("de") == "erledigt"
