"""The staff queue's search (intake/db/search.py), on SQLite and PostgreSQL: what it finds, that
nothing typed into the box is query syntax, and that the index follows the tickets."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake import staff
from intake.config import Config
from intake.customers import ContactEntry, ContractEntry, CustomerEntry, import_customers
from intake.db import search
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade
from intake.db.tables import Customer, Message, Ticket
from intake.domain import ContractModel, Direction
from intake.mail.parse import parse_email
from intake.service import IntakeService
from tests.support.command import environment, intake
from tests.support.database import create_pg_database, drop_pg_database
from tests.support.factories import make_mail

MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TUESDAY = MONDAY + timedelta(days=1)
MUELLER = "buero@mueller-soehne.example"


@dataclass(frozen=True)
class Tickets:
    outage: str  # Müller & Söhne KG (K-2042), Monday: "Störung im Druckerportal"
    licence: str  # Muster GmbH (K-1001), Monday: "Frage zur Lizenz"
    stranger: str  # unknown sender, Tuesday, held


def found(sessions: sessionmaker[Session], q: str | None) -> set[str]:
    with sessions() as session:
        query = search.search_filter(select(Ticket.number), session, q)
        return {n for n in session.scalars(query) if n is not None}


def receive(service: IntakeService, raw: bytes, at: datetime = MONDAY) -> str:
    receipt = service.receive(parse_email(raw, at))
    assert receipt.ticket_number is not None
    return receipt.ticket_number


@pytest.fixture
def service(cfg: Config, sessions: sessionmaker[Session], model: PriorityModel) -> IntakeService:
    return IntakeService(cfg, sessions, model)


@pytest.fixture
def tickets(service: IntakeService, sessions: sessionmaker[Session], cfg: Config) -> Tickets:
    mueller = CustomerEntry(
        number="K-2042",
        name="Müller & Söhne KG",
        contacts=(ContactEntry(email=MUELLER),),
        contracts=(ContractEntry(model=ContractModel.PROFESSIONAL, start=date(2026, 1, 1)),),
    )
    with sessions.begin() as session:
        import_customers(session, [mueller], cfg, MONDAY)
    outage = receive(
        service,
        make_mail(
            sender=MUELLER,
            subject="Störung im Druckerportal",
            body="Die Warteschlange zur Überwachung hängt seit gestern. Fehlercode QX-7781.",
        ),
    )
    licence = receive(
        service,
        make_mail(
            subject="Frage zur Lizenz",
            body="Wie verlängern wir unsere Lizenz für das Reporting-Modul?",
        ),
    )
    stranger = receive(
        service,
        make_mail(
            sender="jemand@anderswo.example",
            subject="Zugang gesperrt",
            body="Mein Konto ist seit heute gesperrt.",
        ),
        TUESDAY,
    )
    return Tickets(outage, licence, stranger)


def test_finds_a_ticket_by_its_number_and_by_the_start_of_one(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    assert found(sessions, tickets.outage) == {tickets.outage}
    assert found(sessions, tickets.stranger) == {tickets.stranger}
    assert found(sessions, "20261130") == {tickets.outage, tickets.licence}  # Monday's
    assert found(sessions, tickets.stranger[:12]) == {tickets.stranger}
    assert found(sessions, f"#{tickets.licence}") == {tickets.licence}


def test_finds_by_customer_number_and_name_whatever_the_case_and_accents(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    for q in ["K-2042", "k-2042", "Müller", "MÜLLER", "muller", "Muller Sohne", "söhne kg"]:
        assert found(sessions, q) == {tickets.outage}, q
    assert found(sessions, "K-1001") == found(sessions, "muster gmbh") == {tickets.licence}


def test_finds_by_sender_address_whole_or_in_part(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    assert found(sessions, MUELLER) == {tickets.outage}
    assert found(sessions, "mueller-soe") == {tickets.outage}
    assert found(sessions, "jemand@anderswo") == {tickets.stranger}
    assert found(sessions, "IT@MUSTER.EXAMPLE") == {tickets.licence}


def test_finds_words_of_the_subject_and_the_message_case_and_accent_insensitively(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    for q in ["Störung", "STORUNG", "storung", "störu", "druckerport"]:
        assert found(sessions, q) == {tickets.outage}, q
    for q in ["Warteschlange", "warteschl", "überwachung", "Uberwachung", "qx-7781", "hangt"]:
        assert found(sessions, q) == {tickets.outage}, q
    assert found(sessions, "verlängern") == found(sessions, "Verlangern") == {tickets.licence}
    assert found(sessions, "gesperrt") == {tickets.stranger}
    assert found(sessions, "nirgendwo") == set()


def test_every_term_must_match(sessions: sessionmaker[Session], tickets: Tickets) -> None:
    assert found(sessions, "lizenz reporting") == {tickets.licence}
    assert found(sessions, "lizenz störung") == set()
    assert found(sessions, "muller warteschlange 20261130") == {tickets.outage}
    # Only the first MAX_TERMS terms count: a ninth that matches nothing is not asked for.
    eight = "störung druckerportal warteschlange überwachung hängt gestern fehlercode qx"
    assert len(search.terms(eight)) == search.MAX_TERMS
    assert found(sessions, eight + " nirgendwo") == {tickets.outage}


def test_a_blank_query_filters_nothing(sessions: sessionmaker[Session], tickets: Tickets) -> None:
    everything = {tickets.outage, tickets.licence, tickets.stranger}
    assert found(sessions, None) == found(sessions, "") == found(sessions, "  \t") == everything


HOSTILE_NOTHING = [
    '"',
    '""',
    "*",
    "NEAR(",
    ")",
    "(",
    "-",
    ":",
    "^",
    "'",
    "\\",
    "%",
    "_",
    "\x00",
    "\x1b[2J",
    "' OR 1=1 --",  # every term would have to be a word: "or", "1"
    "störung OR lizenz",  # OR is a word here, not an operator
    "NEAR(störung warteschlange)",
    "doc:störung",  # not a column filter
    "lizenz NOT reporting",
    "stö\x00rung",  # a NUL separates: "stö" and "rung", and no word begins with "rung"
    "x" * 10_000,
]
HOSTILE_OUTAGE = [
    "-störung",  # not NOT
    "störung*",
    '"störung',
    'störung"',
    '"störung" "warteschlange"',
    "(störung)",
    "+störung",
    "{störung}",
    "\x00störung\x01",
    "störung\n\r\twarteschlange",
    "störung " * 1250,  # 10,000 characters: the first 200 are read
]


def test_hostile_queries_are_words_only_never_an_error_never_a_false_hit(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    for q in HOSTILE_NOTHING:
        assert found(sessions, q) == set(), repr(q)
    for q in HOSTILE_OUTAGE:
        assert found(sessions, q) == {tickets.outage}, repr(q)
    rng = random.Random(16)
    for _ in range(50):
        junk = "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(1, 300)))
        found(sessions, junk)  # anything at all: no error
    assert found(sessions, "".join(map(chr, range(0x20, 0x7F)))) == set()  # every ASCII sign


def test_a_follow_up_message_makes_its_words_findable(
    service: IntakeService, sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    assert found(sessions, "Seriennummer") == set()
    number = receive(
        service,
        make_mail(
            sender=MUELLER,
            subject=f"[Ticket#{tickets.outage}] Re: Störung im Druckerportal",
            body="Nachtrag: die Seriennummer des Druckers ist ZX-5520.",
        ),
        MONDAY + timedelta(hours=1),
    )
    assert number == tickets.outage  # a follow-up, not a ticket of its own
    assert found(sessions, "seriennummer zx-5520") == {tickets.outage}
    assert found(sessions, "warteschlange") == {tickets.outage}  # the first message still counts


def test_a_held_ticket_given_to_a_customer_is_found_by_that_customer(
    cfg: Config, sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    assert found(sessions, "beispiel") == found(sessions, "K-1002") == set()
    with sessions.begin() as session:
        staff.assign_held(session, cfg, tickets.stranger, "K-1002", "lead", TUESDAY)
    assert found(sessions, "beispiel ag") == {tickets.stranger}
    assert found(sessions, "K-1002 gesperrt") == {tickets.stranger}


def test_a_renamed_customer_is_found_by_its_new_name(
    cfg: Config, sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    with sessions.begin() as session:
        import_customers(
            session, [CustomerEntry(number="K-1001", name="Musterfrau AG")], cfg, TUESDAY
        )
    assert found(sessions, "musterfrau") == {tickets.licence}
    assert found(sessions, "muster gmbh") == set()


def test_combines_with_filters_counting_and_paging_like_the_queue(
    service: IntakeService, sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    for i in range(5):
        receive(
            service,
            make_mail(sender=MUELLER, subject=f"Störung {i}", body="Wieder eine Störung."),
            MONDAY + timedelta(minutes=i + 1),
        )
    with sessions() as session:
        query = select(Ticket).where(Ticket.status.in_(["new", "held"]))
        query = search.search_filter(query, session, "störung")
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        page = session.scalars(query.order_by(Ticket.id).offset(2).limit(2)).all()
        assert total == 6
        assert [t.subject for t in page] == ["Störung 1", "Störung 2"]
        for status, expected in [("held", [tickets.stranger]), ("new", [])]:
            only = select(Ticket.number).where(Ticket.status == status)
            assert (
                session.scalars(search.search_filter(only, session, "gesperrt")).all() == expected
            )
        joined = search.search_filter(
            select(Ticket).join(Customer, Customer.id == Ticket.customer_id), session, "muller"
        ).where(Customer.number == "K-2042")
        assert len(session.scalars(joined).all()) == 6


def test_a_long_message_is_read_up_to_its_bound(
    service: IntakeService, sessions: sessionmaker[Session]
) -> None:
    body = ("Protokollzeile ohne Befund. " * 1000)[: search.MESSAGE_CHARS - 40]
    body += " Anfangswort " + "." * 40 + " Endwort" * 5000
    number = receive(service, make_mail(body=body))
    assert found(sessions, "anfangswort") == {number}
    assert found(sessions, "endwort") == set()  # beyond MESSAGE_CHARS


def test_intake_search_reindex_rebuilds_a_lost_index(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    with sessions.begin() as session:
        session.execute(text("DELETE FROM ticket_search"))
    assert found(sessions, "störung") == set()
    done = intake(environment(tmp_path, db_url, 0), "search", "reindex")
    assert done.returncode == 0, done.stderr
    assert "search index rebuilt: 3 tickets" in done.stdout
    assert found(sessions, "störung") == {tickets.outage}
    assert found(sessions, "gesperrt") == {tickets.stranger}


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the kind at the revision before the search."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        admin = request.getfixturevalue("pg_server")
        name = create_pg_database(admin)
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url, "0013")
        yield url
    finally:
        if request.param == "postgresql":
            drop_pg_database(admin, name)


def test_the_migration_indexes_the_tickets_already_there(old_url: str) -> None:
    now = "2026-11-30 09:00:00"
    engine = make_engine(old_url)
    with engine.begin() as c:
        c.execute(
            text(
                "insert into customers (number, name, created_at) values ('K-7', 'Jäger OHG', :n)"
            ),
            {"n": now},
        )
        for i in range(1, 3 * search.BATCH // 2):  # more than one batch
            c.execute(
                text(
                    "insert into tickets (number, channel, subject, status, outcome, sender, "
                    "customer_id, needs_review, language, received_at, created_at) values "
                    "(:number, 'email', :subject, 'open', 'accepted', 'a@jaeger.example', 1, "
                    "false, 'de', :n, :n)"
                ),
                {"number": f"20261130{10000000 + i}", "subject": f"Anfrage {i}", "n": now},
            )
        c.execute(
            text(
                "insert into messages (ticket_id, direction, channel, sender, recipient, subject, "
                "body_text, automatic_reasons, sender_auth_reasons, created_at) values "
                "(7, 'in', 'email', 'a@jaeger.example', '', 'Anfrage 7', 'Kühlschrank defekt', "
                "'[]', '[]', :n)"
            ),
            {"n": now},
        )
    engine.dispose()
    upgrade(old_url)
    engine = make_engine(old_url)
    try:
        sessions = make_sessions(engine)
        assert found(sessions, "kuhlschrank jager") == {"2026113010000007"}
        assert len(found(sessions, "Jäger")) == 3 * search.BATCH // 2 - 1
    finally:
        engine.dispose()


def test_a_ticket_costs_the_intake_little_to_index(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    """The document is rebuilt in the intake's transaction: a cheap step, whatever the mail."""
    with sessions.begin() as session:
        ticket_id = session.scalars(select(Ticket.id).where(Ticket.number == tickets.outage)).one()
        search.index_ticket(session, ticket_id)  # warm
        started = time.perf_counter()
        for _ in range(50):
            search.index_ticket(session, ticket_id)
        assert (time.perf_counter() - started) / 50 < 0.01  # generous: shared CI cores


def test_two_messages_to_one_ticket_at_the_same_moment_both_become_findable(
    sessions: sessionmaker[Session], tickets: Tickets
) -> None:
    """Each transaction rebuilds the ticket's document from what it reads; the second must read
    after the first commits, or its write drops the first message's words."""

    def add(session: Session, ticket_id: int, body: str) -> None:
        session.add(
            Message(
                ticket_id=ticket_id,
                direction=Direction.IN,
                channel="email",
                sender=MUELLER,
                subject="Nachtrag",
                body_text=body,
                created_at=TUESDAY,
            )
        )
        session.flush()
        search.index_ticket(session, ticket_id)

    with sessions() as session:
        ticket_id = session.scalars(select(Ticket.id).where(Ticket.number == tickets.outage)).one()
    second = threading.Thread(
        target=lambda: _in_transaction(sessions, lambda s: add(s, ticket_id, "Zweitnachtrag"))
    )
    with sessions.begin() as session:
        add(session, ticket_id, "Erstnachtrag")
        second.start()
        time.sleep(0.5)  # the second has read (without the lock) or waits for this commit
    second.join(10)
    assert found(sessions, "erstnachtrag") == found(sessions, "zweitnachtrag") == {tickets.outage}


def _in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], None]) -> None:
    with sessions.begin() as session:
        work(session)
