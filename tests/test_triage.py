"""The triage stage behind the door, on SQLite and PostgreSQL: batches, poison messages,
values that do not fit a column, several workers on one inbox."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.accept import Acceptor, Arrival
from intake.config import Config
from intake.db.engine import make_engine, make_sessions
from intake.db.tables import Attachment, InboxItem, Message, Ticket, TriageRecord
from intake.domain import Channel, InboxState, Outcome, Prediction, TicketStatus
from intake.service import IntakeService
from intake.triage import TriageWorker
from tests.support.clock import ManualClock
from tests.support.database import count
from tests.support.factories import make_mail, many_parts_mail, nested_mail

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # a Friday morning
POISON = "GIFTPILLE"


class CountingModel:
    """The real model; counts calls and refuses texts with POISON (a bug stands in)."""

    def __init__(self, model: PriorityModel) -> None:
        self.model = model
        self.calls: list[int] = []

    def predict_many(self, items: list[tuple[str | None, str]], max_chars: int = 20_000) -> Any:
        self.calls.append(len(items))
        if any(POISON in body for _, body in items):
            raise RuntimeError("the classifier choked")
        return self.model.predict_many(items, max_chars)


def stored(acceptor: Acceptor, raw: bytes, envelope: str = "it@muster.example") -> str:
    return acceptor.accept(Arrival(Channel.EMAIL, raw, NOW, envelope, ("support@example.com",)))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def counting(model: PriorityModel) -> CountingModel:
    return CountingModel(model)


@pytest.fixture
def worker(
    cfg: Config, sessions: sessionmaker[Session], counting: CountingModel, clock: ManualClock
) -> TriageWorker:
    return TriageWorker(cfg.triage, sessions, IntakeService(cfg, sessions, counting), clock)


def drain(worker: TriageWorker) -> int:
    total = 0
    while taken := worker.run_once():
        total += taken
    return total


def test_stored_mail_becomes_tickets_with_replies_and_the_batch_is_classified_in_one_call(
    sessions: sessionmaker[Session], worker: TriageWorker, counting: CountingModel
) -> None:
    acceptor = Acceptor(sessions)
    raws = [make_mail(subject=f"Frage {i}", body=f"Wie lege ich Queue {i} an?") for i in range(5)]
    queue_ids = [stored(acceptor, raw) for raw in raws]
    assert len(set(queue_ids)) == 5 and count(sessions, "tickets") == 0
    assert worker.run_once() == 5
    assert counting.calls == [5]  # one vectorised call for the batch
    assert count(sessions, "tickets") == 5 and count(sessions, "outbox") == 5
    with sessions() as session:
        items = session.scalars(select(InboxItem).order_by(InboxItem.id)).all()
        assert [i.state for i in items] == [InboxState.DONE] * 5
        assert all(i.raw is None and i.ticket_id for i in items)  # the message holds the bytes
        kept = session.scalars(select(Message.raw).where(Message.direction == "in")).all()
        assert sorted(kept) == sorted(raws)
    assert worker.run_once() == 0


def test_a_second_delivery_is_stored_and_recognised_by_its_message_id(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    acceptor = Acceptor(sessions)
    raw = make_mail(message_id="<twice@muster.example>")
    stored(acceptor, raw)
    stored(acceptor, raw)
    drain(worker)
    assert count(sessions, "inbox", "state = 'done'") == 2
    assert count(sessions, "tickets") == 1 and count(sessions, "outbox") == 1


def test_a_poisonous_message_is_retried_then_held_for_staff_and_never_blocks_the_rest(
    sessions: sessionmaker[Session], worker: TriageWorker, clock: ManualClock, cfg: Config
) -> None:
    acceptor = Acceptor(sessions)
    poison = make_mail(subject="Drucker", body=f"Der Drucker druckt {POISON} nicht.")
    stored(acceptor, make_mail(subject="Vorher", body="Wie exportiere ich Tickets?"))
    stored(acceptor, poison)
    stored(acceptor, make_mail(subject="Danach", body="Wie ändere ich eine Signatur?"))
    assert worker.run_once() == 3
    # The two good ones are done at once, with their replies; the poison waits for a retry.
    assert count(sessions, "tickets") == 2 and count(sessions, "outbox") == 2
    with sessions() as session:
        item = session.scalars(select(InboxItem).where(InboxItem.state == "pending")).one()
        assert item.attempts == 1 and "choked" in (item.last_error or "")
    assert worker.run_once() == 0  # not due yet: backoff
    for _ in range(cfg.triage.attempts - 1):
        clock.now += timedelta(minutes=5)
        assert worker.run_once() == 1
    with sessions() as session:
        held = session.scalars(select(Ticket).where(Ticket.subject == "Drucker")).one()
        assert held.status is TicketStatus.HELD and held.outcome == Outcome.UNREADABLE
        (record,) = session.scalars(select(TriageRecord).where(TriageRecord.ticket_id == held.id))
        reasons = " ".join(v["reason"] for v in record.verdicts if v["hit"])
        assert f"Nicht verarbeitbar nach {cfg.triage.attempts} Versuchen" in reasons
        assert "choked" in reasons
        message = session.scalars(select(Message).where(Message.ticket_id == held.id)).one()
        assert message.raw == poison  # staff can always see the original
    assert count(sessions, "outbox") == 2  # never answered automatically
    assert count(sessions, "inbox", "state = 'done'") == 3


def test_a_record_that_fails_half_way_leaves_nothing_half_written(
    sessions: sessionmaker[Session], worker: TriageWorker, clock: ManualClock, cfg: Config
) -> None:
    service = worker.service
    real = service.record

    def failing(session: Session, msg: Any, prediction: Prediction | None) -> Any:
        receipt = real(session, msg, prediction)  # ticket, ledger, reply written ...
        if msg.subject == "Kaputt":
            raise RuntimeError("a bug after the writes")  # ... and rolled back
        return receipt

    service.record = failing  # type: ignore[method-assign]
    acceptor = Acceptor(sessions)
    stored(acceptor, make_mail(subject="Gut", body="Wie exportiere ich Tickets?"))
    stored(acceptor, make_mail(subject="Kaputt", body="Wie ändere ich eine Signatur?"))
    assert worker.run_once() == 2
    assert count(sessions, "tickets") == 1 and count(sessions, "outbox") == 1
    assert count(sessions, "ledger") == 1  # only the good request used one of the year's
    assert count(sessions, "inbox", "state = 'pending' and attempts = 1") == 1


def test_values_that_do_not_fit_a_column_are_cut_or_hashed_never_a_failure(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    acceptor = Acceptor(sessions)
    long_id = "<" + "x" * 600 + "@muster.example>"
    long_from = "a" * 330 + "@muster.example"
    raw = make_mail(
        sender=long_from,
        subject="Betreff " * 100,
        message_id=long_id,
        body="Wie exportiere ich Tickets?",
    )
    stored(acceptor, raw, envelope=long_from)
    stored(acceptor, raw, envelope=long_from)  # and recognised the second time
    drain(worker)
    assert count(sessions, "inbox", "state = 'done'") == 2
    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.outcome != Outcome.UNREADABLE
        message = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert (message.dedupe_key or "").startswith("mid-sha256:")
        assert message.raw == raw


def test_a_file_name_of_a_thousand_characters_is_cut(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    from email import policy
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "it@muster.example"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Log anbei"
    msg["Message-ID"] = "<file-1@muster.example>"
    msg.set_content("Wie lese ich dieses Log?")
    msg.add_attachment(b"log", maintype="text", subtype="plain", filename="f" * 1000 + ".log")
    stored(Acceptor(sessions), msg.as_bytes(policy=policy.SMTP))
    drain(worker)
    with sessions() as session:
        (attachment,) = session.scalars(select(Attachment)).all()
        assert attachment.filename.startswith("fff") and len(attachment.filename) <= 512


@pytest.mark.postgres
def test_two_workers_on_postgresql_share_the_inbox_one_ticket_and_one_reply_each(
    pg_url: str, tmp_path: Any, model: PriorityModel
) -> None:
    from intake.customers import import_customers, parse_customers
    from tests.support.config import FIXED_NOW, ROOT, make_config

    cfg = make_config(tmp_path, pg_url, INTAKE_TRIAGE__BATCH_SIZE="4")
    cfg = cfg.model_copy(
        update={"mail": cfg.mail.model_copy(update={"reply_limits": ((10, 1000),)})}
    )
    engines = [make_engine(pg_url) for _ in range(2)]
    factories = [make_sessions(e) for e in engines]
    with factories[0].begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )
    acceptor = Acceptor(factories[0])
    for i in range(40):
        stored(acceptor, make_mail(subject=f"Frage {i}", body=f"Wie lege ich Queue {i} an?"))
    workers = [
        TriageWorker(cfg.triage, f, IntakeService(cfg, f, model), lambda: NOW) for f in factories
    ]
    taken = [0, 0]

    def run(k: int) -> None:
        taken[k] = drain(workers[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert sum(taken) == 40 and all(taken), taken  # both worked, none twice
        assert count(factories[0], "tickets") == 40 and count(factories[0], "outbox") == 40
        assert count(factories[0], "inbox", "state = 'done'") == 40
    finally:
        for e in engines:
            e.dispose()


def test_a_flood_from_one_sender_does_not_keep_a_customer_waiting(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    acceptor = Acceptor(sessions)
    for i in range(100):
        ooo = make_mail(
            sender="urlaub@storm.example",
            subject=f"Abwesend {i}",
            headers={"Auto-Submitted": "auto-replied"},
        )
        stored(acceptor, ooo, envelope="urlaub@storm.example")
    stored(acceptor, make_mail(subject="Dringend", body="Wie exportiere ich Tickets?"))
    worker.run_once()  # one batch: the customer's turn comes before the flood's second mail
    with sessions() as session:
        done = session.scalars(
            select(Ticket.subject).join(InboxItem, InboxItem.ticket_id == Ticket.id)
        ).all()
    assert "Dringend" in done and len(done) == worker.cfg.batch_size
    assert count(sessions, "outbox") == 1  # the customer is answered, the storm never


def test_a_hostile_envelope_is_stored_and_the_mail_triaged(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    """What the door stores comes from the sender: NUL bytes (PostgreSQL refuses them), lone
    surrogates, thousands of characters, hundreds of recipients."""
    envelope = "it\x00\udcff@muster.example" + "x" * 5000
    recipients = tuple(f"r{i}\x00@example.com" for i in range(500))
    acceptor = Acceptor(sessions)
    acceptor.accept(
        Arrival(Channel.EMAIL, make_mail(), NOW, envelope, recipients, peer="\x00" * 3000)
    )
    drain(worker)
    with sessions() as session:
        item = session.scalars(select(InboxItem)).one()
        assert item.state is InboxState.DONE and item.ticket_id is not None
        assert "\x00" not in (item.envelope_from or "") and len(item.envelope_from or "") <= 1000
        assert len(item.recipients) == 100 and len(item.peer or "") <= 1000
    assert count(sessions, "tickets") == 1


def test_mail_of_too_many_parts_or_levels_becomes_a_held_ticket_with_its_bytes(
    sessions: sessionmaker[Session], worker: TriageWorker
) -> None:
    acceptor = Acceptor(sessions)
    raws = [many_parts_mail(5_000), nested_mail(5_000), make_mail()]
    for raw in raws:
        stored(acceptor, raw)
    drain(worker)
    assert count(sessions, "inbox", "state = 'done'") == 3 and count(sessions, "tickets") == 3
    with sessions() as session:
        for raw, subject in zip(raws[:2], ("Viele Teile", "Tief verschachtelt"), strict=True):
            ticket = session.scalars(select(Ticket).where(Ticket.subject == subject)).one()
            assert ticket.status is TicketStatus.HELD
            message = session.scalars(select(Message).where(Message.ticket_id == ticket.id)).one()
            assert message.raw == raw and "Nur teilweise gelesen" in (message.parse_error or "")
    assert count(sessions, "outbox") == 1  # only the ordinary mail is answered
