"""Linking rules of the ChatService with a clock the test moves: expiry, attempts, the limit."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.config import Config
from intake.db.tables import Contact, Message, OutboxItem, TelegramChat, TelegramCode, Ticket
from intake.service import IntakeService
from intake.telegram.chat import ChatService
from intake.telegram.events import ChatEvent
from tests.support.clock import ManualClock
from tests.support.config import FIXED_NOW, make_config
from tests.support.web import PASSWORD, csrf_of, login


@pytest.fixture
def cfg(tmp_path: Path, sqlite_url: str) -> Config:
    return make_config(
        tmp_path, sqlite_url, INTAKE_TELEGRAM__ENABLED="true", INTAKE_TELEGRAM__TOKEN="1:x"
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(FIXED_NOW)


@pytest.fixture
def chat(
    cfg: Config, sessions: sessionmaker[Session], model: PriorityModel, clock: ManualClock
) -> ChatService:
    return ChatService(cfg, sessions, IntakeService(cfg, sessions, model), 1, clock)


class Chat:
    """One customer's chat: each say() is a new update."""

    def __init__(self, service: ChatService, clock: ManualClock, chat_id: int = 42) -> None:
        self.service, self.clock, self.chat_id, self.update = service, clock, chat_id, 0

    def say(self, text: str) -> None:
        self.update += 1
        command = text[1:] if text.startswith("/") else None
        self.service.handle(
            ChatEvent(
                update_id=self.chat_id * 1000 + self.update,
                chat_id=self.chat_id,
                received_at=self.clock(),
                command=command,
                text="" if command else text,
                message_id=self.update,
            )
        )


def linked(service: ChatService, clock: ManualClock, address: str, chat_id: int = 42) -> Chat:
    """A chat linked the way a customer does it: /start, the address, the mailed code."""
    user = Chat(service, clock, chat_id)
    user.say("/start")
    user.say(address)
    user.say(mailed_code(service.sessions))
    return user


def chat_texts(sessions: sessionmaker[Session], chat_id: int) -> list[str]:
    with sessions() as session:
        rows = session.scalars(
            select(Message)
            .where(Message.channel == "telegram", Message.recipient == str(chat_id))
            .order_by(Message.id)
        )
        return [m.body_text for m in rows]


def mailed_code(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        mail = session.scalars(
            select(Message).where(Message.channel == "email").order_by(Message.id.desc())
        ).first()
    assert mail is not None
    return mail.body_text.split("Ihr Code: ")[1][:6]


def state(sessions: sessionmaker[Session], chat_id: int = 42) -> TelegramChat:
    with sessions() as session:
        return session.get_one(TelegramChat, chat_id)


def test_a_code_expires_after_fifteen_minutes(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    user = Chat(chat, clock)
    user.say("/start")
    user.say("it@muster.example")
    code = mailed_code(sessions)
    clock.now += timedelta(minutes=15, seconds=1)
    user.say(code)
    assert "abgelaufen" in chat_texts(sessions, 42)[-1]
    assert state(sessions).contact_id is None


def test_a_code_within_its_time_links_the_chat(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    user = Chat(chat, clock)
    user.say("/start")
    user.say("it@muster.example")
    clock.now += timedelta(minutes=14)
    code = mailed_code(sessions)
    user.say(code)
    assert state(sessions).contact_id is not None
    with sessions() as session:
        [row] = session.scalars(select(TelegramCode)).all()
        assert row.used_at is not None and code not in row.code_hash


def test_five_wrong_codes_void_the_code_even_the_right_one_after(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    user = Chat(chat, clock)
    user.say("/start")
    user.say("it@muster.example")
    code = mailed_code(sessions)
    wrong = [c for c in ("111111", "222222", "333333", "444444", "555555", "666666") if c != code]
    for guess in wrong[:5]:
        user.say(guess)
    user.say(code)
    assert state(sessions).contact_id is None


def test_codes_per_hour_are_limited_per_chat_and_per_address(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    user = Chat(chat, clock)
    user.say("/start")
    for _ in range(4):
        user.say("it@muster.example")
    other = Chat(chat, clock, chat_id=43)
    other.say("/start")
    other.say("it@muster.example")  # a second chat cannot flood the same address
    with sessions() as session:
        mails = session.scalars(select(OutboxItem).where(OutboxItem.channel == "email")).all()
    assert len(mails) == 3
    assert "mehrere Codes" in chat_texts(sessions, 42)[-1]
    assert "mehrere Codes" in chat_texts(sessions, 43)[-1]
    clock.now += timedelta(hours=1, seconds=1)
    other.say("it@muster.example")
    with sessions() as session:
        assert (
            len(session.scalars(select(OutboxItem).where(OutboxItem.channel == "email")).all()) == 4
        )


@pytest.mark.parametrize("address", ["support@example.com", "noreply@muster.example"])
def test_no_code_is_mailed_to_our_own_or_a_machine_address_even_if_a_contact_has_it(
    address: str, chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions.begin() as session:  # a mistake in customers.yaml
        contact = session.scalars(select(Contact).where(Contact.email == "it@muster.example")).one()
        contact.email = address
    user = Chat(chat, clock)
    user.say("/start")
    user.say(address)
    with sessions() as session:
        assert session.scalars(select(OutboxItem).where(OutboxItem.channel == "email")).all() == []
    assert "Code" in chat_texts(sessions, 42)[-1]  # the chat hears the same as ever


def test_the_log_keeps_a_typed_address_with_a_quote_and_a_backslash_as_json(
    chat: ChatService, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The address is whatever the customer typed; it must not break the log line."""
    address = 'o"brien\\x@muster.example'
    user = Chat(chat, clock)
    user.say("/start")
    with caplog.at_level(logging.INFO, logger="intake.telegram"):
        for _ in range(4):
            user.say(address)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "intake.telegram"]
    assert lines.count({"event": "telegram-code", "chat": 42, "known": False}) == 3
    assert lines[-1] == {"event": "telegram-code-limit", "chat": 42, "address": address}


def test_a_priority_button_outside_the_staff_chat_is_refused_and_logged_as_json(
    chat: ChatService, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="intake.telegram"):
        outcome = chat.handle(
            ChatEvent(
                update_id=1,
                chat_id=43,
                received_at=clock(),
                callback_data="prio:2026112810000001:K",
            )
        )
    assert outcome.answer == "Nicht erlaubt."
    [record] = [r for r in caplog.records if r.name == "intake.telegram"]
    assert json.loads(record.getMessage()) == {
        "event": "telegram-staff-refused",
        "chat": 43,
        "user": None,
    }


def test_an_address_written_by_a_linked_customer_is_a_request_with_a_priority(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    user = linked(chat, clock, "it@muster.example")
    user.say("kollege@muster.example")
    with sessions() as session:
        [ticket] = session.scalars(select(Ticket)).all()
    assert ticket.status == "new" and ticket.proposed_priority is not None
    assert "Priorität:" in chat_texts(sessions, 42)[-1]


def test_staff_see_a_chat_ticket_and_a_correction_is_told_in_the_chat(
    cfg: Config, chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    from fastapi.testclient import TestClient

    from intake.db.tables import Staff
    from intake.passwords import hash_password
    from intake.web.app import create_app

    user = linked(chat, clock, "it@muster.example")
    user.say("Kleine Frage: wie ändere ich die Farbe der Ticketübersicht?")
    with sessions.begin() as session:
        session.add(Staff(name="anna", password_hash=hash_password(PASSWORD), created_at=clock()))
        ticket = session.scalars(select(Ticket)).one()
        number, proposed = ticket.number, ticket.proposed_priority
    client = TestClient(create_app(cfg, sessions, clock), follow_redirects=False)
    assert login(client) == 303
    queue = client.get("/")
    assert number and number in queue.text and "telegram" in queue.text
    page = client.get(f"/tickets/{number}")
    assert "Farbe der Ticketübersicht" in page.text
    new = "Hoch" if proposed != "Hoch" else "Mittel"
    done = client.post(
        f"/tickets/{number}/priority",
        data={
            "priority": new,
            "reason": "Vorschlag bestätigt",
            "notify": "1",
            "csrf": csrf_of(page.text),
        },
    )
    assert done.status_code == 303
    assert f"Priorität auf {new} festgelegt" in chat_texts(sessions, 42)[-1]


def test_another_chat_cannot_move_a_customers_message(
    chat: ChatService, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    """Buttons carry a message id; a forged press from another chat changes nothing."""
    owner = linked(chat, clock, "it@muster.example", 42)
    stranger = linked(chat, clock, "helpdesk@beispiel.example", 43)
    owner.say("Unser Produktivsystem ist ausgefallen, niemand kann arbeiten.")
    owner.say("Nachtrag: auch der Kundenzugang ist betroffen.")
    with sessions() as session:
        follow_up = session.scalars(
            select(Message).where(Message.direction == "in").order_by(Message.id.desc())
        ).first()
    assert follow_up is not None
    stranger.update += 1
    outcome = chat.handle(
        ChatEvent(
            update_id=99_999,
            chat_id=43,
            received_at=clock(),
            callback_data=f"fu:{follow_up.id}:new",
        )
    )
    assert outcome.answer == "Bereits erledigt."
    with sessions() as session:
        assert len(session.scalars(select(Ticket)).all()) == 1
        assert session.get_one(Message, follow_up.id).ticket_id == follow_up.ticket_id
