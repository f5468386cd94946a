"""The intake service end to end below the adapters, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake import staff
from intake.config import Config
from intake.db.tables import Contact, Message, OutboxItem, Ticket, TriageRecord
from intake.domain import Outcome, Priority
from intake.mail.parse import parse_email
from intake.service import IntakeService
from tests.support.database import count
from tests.support.factories import make_dsn, make_mail

FRIDAY_1600_BERLIN = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
LATER = FRIDAY_1600_BERLIN + timedelta(hours=1)


@pytest.fixture
def service(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> IntakeService:
    return IntakeService(cfg, sessions, model)


def receive(
    service: IntakeService,
    raw: bytes,
    at: datetime = FRIDAY_1600_BERLIN,
    envelope: str | None = None,
):
    return service.receive(parse_email(raw, at, envelope))


def outbox_mail(sessions: sessionmaker[Session]):
    with sessions() as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
    return [message_from_bytes(i.payload, policy=policy.default) for i in items]


def test_critical_outage_from_a_basic_customer_on_friday_afternoon_is_due_monday_at_eleven(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receipt = receive(service, make_mail())
    assert receipt.outcome is Outcome.ACCEPTED
    assert receipt.priority is Priority.KRITISCH
    assert receipt.ticket_number is not None and receipt.ticket_number.startswith("20261127")
    assert len(receipt.ticket_number) == 16
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.deadline == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Mon 11:00 Berlin
        assert ticket.status == "new"
        inbound = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert inbound.raw is not None and b"Produktivsystem" in inbound.raw
        triage = session.scalars(select(TriageRecord)).one()
        assert triage.model_version and triage.probabilities["Kritisch"] > 0.5
        assert {v["rule"] for v in triage.verdicts} >= {"unknown-sender", "no-contract"}
        assert not any(v["hit"] for v in triage.verdicts)
    (reply,) = outbox_mail(sessions)
    assert reply["To"] == "it@muster.example"
    assert reply["Subject"] == f"[Ticket#{receipt.ticket_number}] Re: Produktivsystem ausgefallen"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] is not None
    assert reply["Message-ID"].endswith("@example.com>")
    text = reply.get_body(("plain",)).get_content()
    assert "Montag, 30.11.2026, 11:00 Uhr" in text
    assert "Kritisch" in text and "OTRS-Support Basic" in text
    html = reply.get_body(("html",)).get_content()
    assert "Montag, 30.11.2026, 11:00 Uhr" in html


def test_the_same_message_id_delivered_twice_makes_one_ticket_and_one_reply(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    raw = make_mail(message_id="<same@customer.example>")
    first = receive(service, raw)
    second = receive(service, raw)
    assert second.duplicate and second.ticket_number == first.ticket_number
    assert count(sessions, "tickets") == 1
    assert count(sessions, "outbox") == 1


def test_an_unknown_sender_is_held_and_asked_for_the_customer_number(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receipt = receive(service, make_mail(sender="stranger@elsewhere.example"))
    assert receipt.outcome is Outcome.HELD
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.status == "held" and ticket.needs_review and ticket.deadline is None
    (reply,) = outbox_mail(sessions)
    assert "Kundennummer" in reply.get_body(("plain",)).get_content()


def test_an_expired_contract_is_held_and_the_reply_says_why(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    # The example Basic contract runs 01.01.2026 to 31.12.2026.
    receipt = receive(service, make_mail(), at=datetime(2027, 1, 5, 9, 0, tzinfo=UTC))
    assert receipt.outcome is Outcome.HELD
    (reply,) = outbox_mail(sessions)
    text = reply.get_body(("plain",)).get_content()
    assert "31.12.2026 abgelaufen" in text


def test_a_contract_that_has_not_started_yet_is_held(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    # The example on-demand contract of K-1004 starts on 01.06.2026.
    english = make_mail(
        sender="admin@flex.example",
        subject="Login broken",
        body="Hello, since this morning none of our agents can log in to the production system. "
        "We restarted the server but it did not help. Please call us. Regards, Frank",
    )
    receipt = receive(service, english, at=datetime(2026, 5, 4, 9, 0, tzinfo=UTC))
    assert receipt.outcome is Outcome.HELD
    (reply,) = outbox_mail(sessions)
    assert (
        "Your contract OTRS-Support on Demand starts on 01.06.2026"
        in reply.get_body(("plain",)).get_content()
    )


def test_an_english_request_gets_an_english_confirmation(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receive(
        service,
        make_mail(
            sender="helpdesk@beispiel.example",
            subject="Question about queues",
            body="Hello, how can we create a new queue for our purchasing team? Thanks and regards, Max",
        ),
    )
    (reply,) = outbox_mail(sessions)
    text = reply.get_body(("plain",)).get_content()
    assert "Response by:" in text and "Low" in text
    assert "OTRS-Support Professional" in text


def test_an_out_of_office_reply_is_stored_but_never_answered_or_classified(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    raw = make_mail(subject="Abwesenheitsnotiz", headers={"Auto-Submitted": "auto-replied"})
    receipt = receive(service, raw)
    assert receipt.outcome is Outcome.IGNORED and receipt.priority is None
    assert count(sessions, "outbox") == 0
    assert count(sessions, "messages", "direction = 'in'") == 1


def test_a_bounce_with_an_empty_envelope_sender_is_never_answered(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receipt = receive(service, make_mail(sender="mailer-daemon@customer.example"), envelope="")
    assert receipt.outcome is Outcome.IGNORED
    assert count(sessions, "outbox") == 0


def test_concurrent_intake_gives_every_ticket_its_own_number(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    numbers: list[str] = []
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            r = receive(
                service, make_mail(subject=f"Frage {i}", body=f"Wie lege ich Queue {i} an?")
            )
            assert r.ticket_number
            numbers.append(r.ticket_number)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(numbers) == 16 and len(set(numbers)) == 16
    assert count(sessions, "tickets") == 16


def test_nul_bytes_and_broken_bytes_are_stored_not_refused(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    # PostgreSQL text refuses NUL; the raw bytes keep it, the text fields drop it.
    raw = b"From: a@b.example\r\nSubject: x\x00y\r\n\r\nZeile\x00mit NUL \xc3(\r\n"
    receipt = receive(service, raw)
    assert receipt.ticket_number
    with sessions() as session:
        message = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert (
            message.raw == raw and "\x00" not in message.body_text and "\x00" not in message.subject
        )


def test_a_sender_with_control_characters_is_held_and_never_answered(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    for n, sender in enumerate((b"it\x1c@muster.example", b"Erika <it\x00@muster.example>")):
        raw = b"From: %s\r\nSubject: Server steht\r\nMessage-ID: <c%d@muster.example>\r\n\r\n"
        receipt = receive(service, raw % (sender, n) + b"Nichts geht mehr.\r\n")
        assert receipt.outcome is Outcome.HELD
    with sessions() as session:
        assert {t.sender for t in session.scalars(select(Ticket))} == {""}
    assert outbox_mail(sessions) == []


def test_attachments_are_stored_with_name_and_type(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "it@muster.example"
    msg["Subject"] = "Log"
    msg["Message-ID"] = "<att@muster.example>"
    msg.set_content("Anbei das Log.")
    msg.add_attachment(b"daemon stopped", maintype="text", subtype="plain", filename="daemon.log")
    receive(service, msg.as_bytes())
    with sessions() as session:
        rows = session.execute(
            text("select filename, content_type, size, data from attachments")
        ).all()
    assert [(r[0], r[1], r[2], bytes(r[3])) for r in rows] == [
        ("daemon.log", "text/plain", 14, b"daemon stopped")
    ]


def contact_failing(sessions: sessionmaker[Session], address: str) -> bool:
    with sessions() as session:
        contact = session.scalars(select(Contact).where(Contact.email == address)).one()
        return contact.failing_since is not None


RETURNED = "From: OTRS-Support <support@example.com>\nTo: {to}\nMessage-ID: {id}\n"


@pytest.mark.parametrize(
    "cites",
    ["returned headers", "returned message", "Original-Message-ID", "References"],
)
def test_a_bounce_of_our_reply_marks_the_address_failing_and_stops_replies(
    cites: str, service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receive(service, make_mail())  # we answer it@muster.example
    (ours,) = outbox_mail(sessions)
    returned = RETURNED.format(to="it@muster.example", id=ours["Message-ID"])
    dsn = {
        "returned headers": make_dsn("it@muster.example", returned=returned),
        "returned message": make_dsn(
            "it@muster.example", returned=returned, returned_as="message/rfc822"
        ),
        "Original-Message-ID": make_dsn(
            "it@muster.example", original_message_id=ours["Message-ID"]
        ),
        "References": make_dsn(
            "it@muster.example",
            headers={"In-Reply-To": ours["Message-ID"], "References": ours["Message-ID"]},
        ),
    }[cites]
    bounce = receive(service, dsn, envelope="")
    assert bounce.outcome is Outcome.IGNORED
    with sessions() as session:
        contact = session.scalars(select(Contact).where(Contact.email == "it@muster.example")).one()
        assert contact.failing_since is not None and "Undelivered" in (contact.failing_reason or "")
    later = receive(service, make_mail(subject="Noch etwas", body="Wie exportiere ich Tickets?"))
    assert later.outcome is Outcome.ACCEPTED and not later.reply_queued
    assert count(sessions, "outbox") == 1


def test_a_forged_bounce_without_our_message_id_leaves_the_customer_answered(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    """Anyone can write a delivery report naming a customer; it must not silence them."""
    receive(service, make_mail())  # we did write to it@muster.example
    forged = [
        make_dsn("it@muster.example"),
        make_dsn("it@muster.example", original_message_id="<made-up@example.com>"),
        # The returned message's own threading headers are the sender's, not ours to trust.
        make_dsn(
            "it@muster.example",
            returned="From: it@muster.example\nMessage-ID: <x@evil.example>\n"
            f"In-Reply-To: {outbox_mail(sessions)[0]['Message-ID']}\n",
        ),
    ]
    for dsn in forged:
        assert receive(service, dsn, envelope="").outcome is Outcome.IGNORED
    assert not contact_failing(sessions, "it@muster.example")
    later = receive(service, make_mail(subject="Noch etwas", body="Wie exportiere ich Tickets?"))
    assert later.outcome is Outcome.ACCEPTED and later.reply_queued
    assert count(sessions, "outbox") == 2
    assert count(sessions, "tickets") == 5  # the reports are stored as ignored tickets


def test_a_bounce_citing_our_reply_to_someone_else_marks_nobody_failing(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receive(service, make_mail())  # to it@muster.example
    receive(service, make_mail(sender="helpdesk@beispiel.example", subject="Frage"))
    to_erika = outbox_mail(sessions)[0]["Message-ID"]
    returned = RETURNED.format(to="helpdesk@beispiel.example", id=to_erika)
    for dsn in (
        make_dsn("helpdesk@beispiel.example", returned=returned),
        make_dsn("helpdesk@beispiel.example", original_message_id=to_erika),
    ):
        receive(service, dsn, envelope="")
    assert not contact_failing(sessions, "helpdesk@beispiel.example")
    assert not contact_failing(sessions, "it@muster.example")


@pytest.mark.parametrize(
    "sender", ["support@example.com", "Support@Example.COM", "team@example.com"]
)
def test_mail_from_our_own_address_gets_no_reply(
    sender: str, cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    """A reply to ourselves would come back as a new request, and be answered again."""
    ours = cfg.model_copy(
        update={"mail": cfg.mail.model_copy(update={"from_address": "team@example.com"})}
    )
    receipt = receive(IntakeService(ours, sessions, model), make_mail(sender=sender))
    assert receipt.ticket_number is not None and not receipt.reply_queued
    assert outbox_mail(sessions) == []


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example",
        "noreply@shop.example",
        "No-Reply@x.example",
        "postmaster@x.example",
    ],
)
def test_mail_from_a_machine_address_gets_no_reply(
    sender: str, service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    receipt = receive(service, make_mail(sender=sender))
    assert receipt.ticket_number is not None and not receipt.reply_queued
    assert outbox_mail(sessions) == []


def test_staff_decisions_never_mail_our_own_or_a_machine_address(
    cfg: Config, service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    own = receive(service, make_mail(sender="support@example.com"))
    machine = receive(service, make_mail(sender="noreply@shop.example"))
    stranger = receive(service, make_mail(sender="stranger@elsewhere.example"))
    with sessions.begin() as session:
        assert not staff.reject_held(session, cfg, own.ticket_number or "", "lead", "", LATER)
        assert not staff.notify_priority(session, cfg, machine.ticket_number or "", LATER)
        # A staff decision still reaches a customer's address.
        assert staff.reject_held(session, cfg, stranger.ticket_number or "", "lead", "", LATER)
    assert [m["To"] for m in outbox_mail(sessions)] == ["stranger@elsewhere.example"] * 2


PHISHING_NAME = "Ihr Konto ist gesperrt, bitte hier klicken http://evil.example"


def test_a_reply_greets_by_the_name_on_file_never_by_the_senders_display_name(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    sender = f'"{PHISHING_NAME}" <it@muster.example>'
    receive(service, make_mail(sender=sender, subject="Eins"))
    with sessions.begin() as session:  # a contact staff added without a name
        session.scalars(select(Contact).where(Contact.email == "it@muster.example")).one().name = ""
    receive(service, make_mail(sender=sender, subject="Zwei", body="Wie exportiere ich Tickets?"))
    named, unnamed = outbox_mail(sessions)
    assert named.get_body(("plain",)).get_content().startswith("Guten Tag Erika Muster,")
    assert unnamed.get_body(("plain",)).get_content().startswith("Guten Tag,")
    for reply in (named, unnamed):
        for part in ("plain", "html"):
            content = reply.get_body((part,)).get_content()
            assert "gesperrt" not in content and "evil" not in content


def test_a_hostile_subject_is_quoted_clean_cut_and_without_the_senders_ticket_tag(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    subject = "\u202eDrucker\u202c \x1b[2J[Ticket#2026010110000001] " + "kaputt " * 90
    receipt = receive(service, make_mail(subject=subject))
    (reply,) = outbox_mail(sessions)
    tag = f"[Ticket#{receipt.ticket_number}] Re: "
    assert reply["Subject"].startswith(tag + "Drucker [2J kaputt kaputt")
    quoted = reply["Subject"].removeprefix(tag)
    assert len(quoted) <= 120 and quoted.endswith("…")
    assert not {"\x1b", "\u202e", "\u202c"} & set(reply["Subject"])
    text = reply.get_body(("plain",)).get_content()
    assert quoted in text and "2026010110000001" not in text + reply["Subject"]


def test_replies_to_one_address_are_rate_limited_with_an_alert(
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = cfg.model_copy(
        update={"mail": cfg.mail.model_copy(update={"reply_limits": ((10, 3),)})}
    )
    service = IntakeService(limited, sessions, model)
    receipts = [
        receive(
            service,
            make_mail(
                sender="stranger@elsewhere.example", subject=f"Frage {i}", body=f"Frage Nummer {i}"
            ),
        )
        for i in range(5)
    ]
    assert [r.reply_queued for r in receipts] == [True, True, True, False, False]
    assert count(sessions, "tickets") == 5  # every message is still stored
    assert any(
        "reply-rate-limited" in r.message and "stranger@elsewhere.example" in r.message
        for r in caplog.records
    )


def test_every_reply_window_counts_on_its_own(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel
) -> None:
    """At most one reply a minute and three an hour: the short window blocks a quick second
    message, the long one the fourth reply."""
    limited = cfg.model_copy(
        update={"mail": cfg.mail.model_copy(update={"reply_limits": ((1, 1), (60, 3))})}
    )
    service = IntakeService(limited, sessions, model)
    minutes = [0, 0.5, 2, 4, 6]
    receipts = [
        receive(
            service,
            make_mail(sender="stranger@elsewhere.example", subject=f"Frage {i}", body=f"Nr. {i}"),
            at=FRIDAY_1600_BERLIN + timedelta(minutes=m),
        )
        for i, m in enumerate(minutes)
    ]
    assert [r.reply_queued for r in receipts] == [True, False, True, True, False]


def test_a_body_of_a_million_and_more_characters_is_cut_for_staff_and_kept_raw(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    raw = make_mail(subject="Log", body="Wie lese ich dieses Log?\n" + "Zeile 42 ok\n" * 100_000)
    receive(service, raw)
    with sessions() as session:
        inbound = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert len(inbound.body_text) < 1_000_100 and inbound.body_text.endswith(
            "der vollständige Text steht in der Originalnachricht]"
        )
        assert inbound.raw == raw
