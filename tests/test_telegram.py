"""The Telegram channel end to end: the real IntakeApp and python-telegram-bot against a local
fake Bot API (tests/fake_botapi.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
import re
import smtplib
import time
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.config import Config
from intake.db.engine import make_engine, make_sessions
from intake.db.tables import (
    Attachment,
    Correction,
    Message,
    OutboxItem,
    TelegramChat,
    TelegramLink,
    Ticket,
)
from intake.delivery import priority_callback
from intake.domain import Priority
from tests.support.config import FIXED_NOW, make_config
from tests.support.factories import CRITICAL, SMALL, make_mail
from tests.support.fake_botapi import TOKEN, FakeBotAPI
from tests.support.servers import AppThread, wait_until

STAFF_CHAT = -100500
CUSTOMER_CHAT = 4711


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as fake:
        yield fake


def telegram_config(tmp_path: Path, db_url: str, api: FakeBotAPI, **extra: str) -> Config:
    return make_config(
        tmp_path,
        db_url,
        INTAKE_TELEGRAM__ENABLED="true",
        INTAKE_TELEGRAM__TOKEN=TOKEN,
        INTAKE_TELEGRAM__BASE_URL=api.base_url,
        INTAKE_TELEGRAM__BASE_FILE_URL=api.base_file_url,
        INTAKE_TELEGRAM__STAFF_CHAT_ID=str(STAFF_CHAT),
        INTAKE_TELEGRAM__POLL_TIMEOUT="1",
        INTAKE_TELEGRAM__RETRY_SECONDS="0.2",
        INTAKE_OUTBOX__RETRY_BASE_SECONDS="0.2",
        **extra,
    )


class BotApp(AppThread):
    """The IntakeApp with its bot connected to the fake Bot API."""

    def __enter__(self) -> BotApp:
        super().__enter__()
        assert self.app.telegram is not None
        asyncio.run_coroutine_threadsafe(self.app.telegram.wait_ready(10), self.loop).result(15)
        return self


def sent_texts(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [str(s["text"]) for s in api.sent_to(chat_id)]


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_chat(api: FakeBotAPI, chat_id: int, n: int, timeout: float = 10.0) -> list[str]:
    wait_for(lambda: len(api.sent_to(chat_id)) >= n, timeout, f"{n} messages to chat {chat_id}")
    return sent_texts(api, chat_id)


def mails_to(maildir: Path, address: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((maildir / "new").glob("*")) if (maildir / "new").exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if address in str(msg["To"]):
            found.append(msg)  # type: ignore[arg-type]
    return found


def code_from_mail(maildir: Path, address: str) -> str:
    wait_for(lambda: mails_to(maildir, address), what=f"a code mail to {address}")
    body = mails_to(maildir, address)[-1].get_body(("plain",))
    assert body is not None
    match = re.search(r"Ihr Code: (\d{6})", body.get_content())
    assert match, "the mail names the code"
    return match.group(1)


def inbound_of(sessions: sessionmaker[Session], ticket_id: int) -> list[Message]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Message)
                .where(Message.ticket_id == ticket_id, Message.direction == "in")
                .order_by(Message.id)
            )
        )


def wait_for_markup(api: FakeBotAPI, chat_id: int, n: int) -> dict[str, Any]:
    """The n-th message to the chat, which must carry buttons."""
    wait_chat(api, chat_id, n)
    message = api.sent_to(chat_id)[n - 1]
    assert "reply_markup" in message, message["text"]
    return message


def db(cfg: Config) -> sessionmaker[Session]:
    return make_sessions(make_engine(cfg.database.url))


def tickets(sessions: sessionmaker[Session]) -> list[Ticket]:
    with sessions() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def link(api: FakeBotAPI, maildir: Path, chat_id: int, address: str, **kw: Any) -> None:
    """Link the chat the way a customer does: /start, the address, the code from the mail."""
    before = len(api.sent_to(chat_id))
    api.push_text(chat_id, "/start", **kw)
    api.push_text(chat_id, address, **kw)
    code = code_from_mail(maildir, address)
    api.push_text(chat_id, code, **kw)
    wait_chat(api, chat_id, before + 3)


def test_link_request_follow_up_and_status(
    tmp_path: Path, db_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, db_url, api)
    maildir = tmp_path / "maildir"
    sessions = db(cfg)
    _import_examples(cfg, sessions)
    with BotApp(cfg, model) as running:
        api.push_text(CUSTOMER_CHAT, "/start")
        welcome = wait_chat(api, CUSTOMER_CHAT, 1)[0]
        assert "E-Mail-Adresse" in welcome

        api.push_text(CUSTOMER_CHAT, "it@muster.example")
        said = wait_chat(api, CUSTOMER_CHAT, 2)[1]
        assert "it@muster.example" in said and "Code" in said
        code = code_from_mail(maildir, "it@muster.example")
        wrong = "000000" if code != "000000" else "111111"
        api.push_text(CUSTOMER_CHAT, wrong)
        assert "noch 4 Versuche" in wait_chat(api, CUSTOMER_CHAT, 3)[2]
        api.push_text(CUSTOMER_CHAT, code)
        linked = wait_chat(api, CUSTOMER_CHAT, 4)[3]
        assert "verknüpft" in linked and "Muster GmbH" in linked
        with sessions() as session:
            row = session.scalars(select(TelegramLink)).one()
            assert row.chat_id == CUSTOMER_CHAT and row.unlinked_at is None
            assert row.contact_id == session.get_one(TelegramChat, CUSTOMER_CHAT).contact_id

        # A critical request: answered in the chat like a mail would be, and staff alerted.
        api.push_text(CUSTOMER_CHAT, CRITICAL)
        confirmation = wait_chat(api, CUSTOMER_CHAT, 5)[4]
        [ticket] = tickets(sessions)
        assert ticket.channel == "telegram" and ticket.sender == "it@muster.example"
        assert ticket.proposed_priority == "Kritisch" and ticket.status == "new"
        assert f"Ticket: {ticket.number}" in confirmation
        assert "Priorität: Kritisch" in confirmation and "Antwort bis:" in confirmation
        assert "dies ist Ihre 1. von 30, es verbleiben 29" in confirmation
        alert = wait_chat(api, STAFF_CHAT, 1)[0]
        assert ticket.number is not None and ticket.number in alert
        buttons = api.sent_to(STAFF_CHAT)[0]["reply_markup"]["inline_keyboard"][0]
        assert [b["callback_data"] for b in buttons] == [
            priority_callback(ticket.number, p) for p in Priority
        ]

        # The next message: the bot asks whether it belongs to the open ticket.
        api.push_text(CUSTOMER_CHAT, "Nachtrag: auch die Weboberfläche für Kunden ist weg.")
        wait_chat(api, CUSTOMER_CHAT, 6)
        question = api.sent_to(CUSTOMER_CHAT)[5]
        assert ticket.number in question["text"]
        add, new = question["reply_markup"]["inline_keyboard"][0]
        assert "Neue Anfrage" in new["text"]
        api.push_callback(CUSTOMER_CHAT, add["callback_data"], message_id=99)
        assert f"Ticket {ticket.number} hinzugefügt" in wait_chat(api, CUSTOMER_CHAT, 7)[6]
        assert len(tickets(sessions)) == 1
        assert [m.body_text[:8] for m in inbound_of(sessions, ticket.id)] == [
            "Unser Pr",
            "Nachtrag",
        ]

        # Another message is kept with the open ticket too, until the customer says "new".
        api.push_text(CUSTOMER_CHAT, SMALL)
        question = wait_for_markup(api, CUSTOMER_CHAT, 8)
        _, new = question["reply_markup"]["inline_keyboard"][0]
        assert len(inbound_of(sessions, ticket.id)) == 3  # staff see it at once
        api.push_callback(CUSTOMER_CHAT, new["callback_data"], message_id=100)
        second = wait_chat(api, CUSTOMER_CHAT, 9)[8]
        assert "dies ist Ihre 2. von 30" in second
        assert len(inbound_of(sessions, ticket.id)) == 2
        assert len(tickets(sessions)) == 2
        api.push_callback(CUSTOMER_CHAT, new["callback_data"], message_id=100)  # pressed twice
        api.push_text(CUSTOMER_CHAT, "/status")
        status = wait_chat(api, CUSTOMER_CHAT, 10)[9]
        numbers = [t.number for t in tickets(sessions)]
        assert len(numbers) == 2 and all(n and n in status for n in numbers)
        assert status.index(numbers[0] or "") < status.index(numbers[1] or "")  # by deadline

        # /neu: the next message is a new request without asking.
        api.push_text(CUSTOMER_CHAT, "/neu")
        wait_chat(api, CUSTOMER_CHAT, 11)
        api.push_text(CUSTOMER_CHAT, "Noch etwas anderes: bitte einen Benutzer sperren.")
        assert "dies ist Ihre 3. von 30" in wait_chat(api, CUSTOMER_CHAT, 12)[11]

        # The same critical request by mail gets the same priority and deadline rule.
        with smtplib.SMTP("127.0.0.1", running.port) as client:
            client.sendmail(
                "it@muster.example",
                ["support@example.com"],
                make_mail(sender="it@muster.example", subject="Ausfall", body=CRITICAL),
            )
        wait_until(lambda: len(tickets(sessions)) == 4)  # triage runs behind the 250
        by_mail = tickets(sessions)[-1]
        assert by_mail.channel == "email" and by_mail.proposed_priority == "Kritisch"
        assert by_mail.deadline is not None and ticket.deadline is not None
        assert abs(by_mail.deadline - ticket.deadline) < timedelta(minutes=2)

        # /abmelden ends the link and keeps the record.
        api.push_text(CUSTOMER_CHAT, "/abmelden")
        assert "aufgehoben" in wait_chat(api, CUSTOMER_CHAT, 13)[12]
    with sessions() as session:
        row = session.scalars(select(TelegramLink)).one()
        assert row.unlinked_at is not None
        assert session.get_one(TelegramChat, CUSTOMER_CHAT).contact_id is None


def test_unknown_address_gets_the_same_answer_and_no_code(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    _import_examples(cfg, sessions)
    with BotApp(cfg, model):
        api.push_text(1, "/start")
        api.push_text(1, "it@muster.example")
        api.push_text(2, "/start")
        api.push_text(2, "fremd@unbekannt.example")
        known = wait_chat(api, 1, 2)[1]
        unknown = wait_chat(api, 2, 2)[1]
        assert known.replace("it@muster.example", "X") == unknown.replace(
            "fremd@unbekannt.example", "X"
        )
        for attempt in range(5):
            api.push_text(2, f"{attempt:06d}")
            wait_chat(api, 2, 3 + attempt)
        replies = sent_texts(api, 2)
        assert "noch 1 Versuch." in replies[-2]
        assert "neuen Code" in replies[-1]  # the code is void after five wrong entries
        wait_for(lambda: mails_to(tmp_path / "maildir", "it@muster.example"), what="code mail")
    assert mails_to(tmp_path / "maildir", "fremd@unbekannt.example") == []
    with sessions() as session:
        assert session.scalars(select(TelegramLink)).all() == []


def test_unlinked_user_is_held_for_staff_and_told_how_to_link(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    with BotApp(cfg, model):
        api.push_text(777, SMALL, language_code="en")
        answer = wait_chat(api, 777, 1)[0]
    [ticket] = tickets(sessions)
    assert ticket.status == "held" and ticket.sender == "telegram:777"
    assert ticket.chat_id == 777
    assert ticket.number is not None and ticket.number in answer
    assert "/start" in answer


def test_a_command_without_its_entity_is_still_a_command(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    update = api.text_update(6, "/start")
    del update["message"]["entities"]
    with BotApp(cfg, model):
        api.push_update(update)
        assert "E-Mail-Adresse" in wait_chat(api, 6, 1)[0]
    assert tickets(sessions) == []


def test_english_speaker_is_greeted_in_english(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    with BotApp(cfg, model):
        api.push_text(5, "/start", language_code="en-GB")
        assert "e-mail address" in wait_chat(api, 5, 1)[0]


def test_failed_sends_are_retried_from_the_outbox(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    api.fail_next("sendMessage", 1, status=502, description="Bad Gateway")
    api.drop_next("sendMessage", 1)
    with BotApp(cfg, model):
        api.push_text(9, "/start")
        wait_chat(api, 9, 1, timeout=15)
        time.sleep(0.5)
    assert len(api.sent_to(9)) == 1, "sent once, not once per attempt"
    failed = [c for c in api.calls if c[0] == "sendMessage"]
    assert len(failed) == 3
    with sessions() as session:
        row = session.scalars(select(OutboxItem).where(OutboxItem.channel == "telegram")).one()
        assert row.status == "sent" and row.attempts == 3


def test_a_blocked_bot_is_not_retried_for_ever(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    api.fail_next(
        "sendMessage", 1, status=403, description="Forbidden: bot was blocked by the user"
    )
    with BotApp(cfg, model):
        api.push_text(9, "/start")
        wait_for(lambda: _outbox_status(sessions) == ["failed"], what="the row marked failed")
    assert api.sent_to(9) == []


def test_updates_are_confirmed_after_commit_and_never_done_twice(
    tmp_path: Path, db_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, db_url, api)
    sessions = db(cfg)
    with BotApp(cfg, model):
        first = api.push_text(31, SMALL)
        command = api.push_text(33, "/start")
        wait_chat(api, 31, 1)
        wait_chat(api, 33, 1)
        wait_for(lambda: api.confirmed_offset > command["update_id"], what="offset confirmed")
    # Delivered while the service is down, then once more after the restart: a crash between
    # commit and confirmation looks like this to the bot.
    api.push_update(first)
    api.push_update(command)
    second = api.push_text(32, SMALL)
    with BotApp(cfg, model):
        wait_chat(api, 32, 1)
        wait_for(lambda: api.pending_updates() == [], what="all updates confirmed")
        time.sleep(0.3)
    assert [t.sender for t in tickets(sessions)] == ["telegram:31", "telegram:32"]
    assert len(api.sent_to(31)) == 1 and len(api.sent_to(33)) == 1
    assert api.confirmed_offset > second["update_id"]


def test_an_update_that_cannot_be_stored_is_not_confirmed(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    """The attachment download fails: the update stays with Telegram and is taken later."""
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    with BotApp(cfg, model):
        api.fail_next("getFile", 2)
        update = api.push_document(
            41, b"%PDF-1.4 log", file_name="fehler.pdf", mime_type="application/pdf", caption=SMALL
        )
        wait_chat(api, 41, 1, timeout=15)
        assert api.confirmed_offset > update["update_id"]
    [ticket] = tickets(sessions)
    with sessions() as session:
        [attachment] = session.scalars(select(Attachment)).all()
        assert attachment.filename == "fehler.pdf" and attachment.data == b"%PDF-1.4 log"
    assert ticket.sender == "telegram:41"


def test_an_update_that_keeps_failing_is_kept_for_staff_and_stops_nothing(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api, INTAKE_TELEGRAM__UPDATE_ATTEMPTS="3")
    sessions = db(cfg)
    api.fail_next("getFile", 100, status=502, description="Bad Gateway")
    api.push_document(44, b"log", file_name="a.log", mime_type="text/plain", caption=SMALL)
    after = api.push_text(45, SMALL)
    with BotApp(cfg, model):
        wait_chat(api, 45, 1, timeout=15)  # the next update is not held up for ever
        wait_for(lambda: api.confirmed_offset > after["update_id"], what="both confirmed")
    [kept, answered] = tickets(sessions)
    assert (kept.sender, kept.status, kept.outcome) == ("telegram:44", "held", "unreadable")
    assert answered.sender == "telegram:45"
    [message] = inbound_of(sessions, kept.id)
    assert message.parse_error is not None and "Datei nicht abrufbar" in message.parse_error
    assert message.raw is not None and b"a.log" in message.raw  # what Telegram sent, for staff
    assert api.sent_to(44) == []  # unreadable input is never answered


def test_photos_and_documents_are_kept_and_oversized_files_named(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, sqlite_url, api)
    sessions = db(cfg)
    _import_examples(cfg, sessions)
    big = b"%PDF" + bytes(12 * 1024 * 1024)  # more than a mail attachment keeps (10 MB)
    with BotApp(cfg, model):
        link(api, tmp_path / "maildir", 50, "it@muster.example")
        api.push_photo(50, b"\xff\xd8 jpeg bytes", caption=SMALL)
        wait_chat(api, 50, 4)
        api.push_text(50, "/neu")
        wait_chat(api, 50, 5)
        api.push_document(50, big, file_name="protokoll.pdf", mime_type="application/pdf")
        wait_chat(api, 50, 6)
        api.push_text(50, "/neu")
        wait_chat(api, 50, 7)
        api.push_document(
            50,
            b"x",
            file_name="dump.tar",
            mime_type="application/x-tar",
            caption="Der komplette Datenbank-Dump als Anhang",
            file_size=25 * 1024 * 1024,
        )
        texts = wait_chat(api, 50, 9)
    assert any("dump.tar" in t and "20 MB" in t for t in texts[7:])
    with sessions() as session:
        files = session.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [f.filename for f in files][1:] == ["protokoll.pdf"]
        assert files[0].filename.startswith("foto-") and files[0].content_type == "image/jpeg"
        assert files[0].data == b"\xff\xd8 jpeg bytes" and files[1].data == big
    assert len(tickets(sessions)) == 3  # the oversized file's message is still a request


def test_staff_correct_a_priority_by_button(
    tmp_path: Path, db_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(tmp_path, db_url, api)
    sessions = db(cfg)
    _import_examples(cfg, sessions)
    with BotApp(cfg, model):
        link(api, tmp_path / "maildir", 60, "it@muster.example")
        api.push_text(60, CRITICAL)
        alert = api.wait_sent(5)  # welcome, code sent, linked, confirmation, staff alert
        [ticket] = tickets(sessions)
        assert ticket.number is not None
        assert any(s["chat_id"] == str(STAFF_CHAT) for s in alert)
        # Someone outside the staff chat cannot decide.
        api.push_callback(60, priority_callback(ticket.number, Priority.NIEDRIG), message_id=1)
        wait_for(lambda: any(m == "answerCallbackQuery" for m, _ in api.calls), what="answer")
        api.push_callback(
            STAFF_CHAT,
            priority_callback(ticket.number, Priority.HOCH),
            message_id=1,
            user_id=900,
            username="schichtleitung",
        )
        done = wait_chat(api, STAFF_CHAT, 2)[1]
        assert "Hoch" in done and "korrigiert von Kritisch" in done and "@schichtleitung" in done
        update = wait_chat(api, 60, 5)[4]
        assert "Priorität auf Hoch festgelegt" in update
    with sessions() as session:
        [correction] = session.scalars(select(Correction)).all()
        assert (correction.old_priority, correction.new_priority) == ("Kritisch", "Hoch")
        assert correction.staff == "telegram:@schichtleitung"
        assert session.get_one(Ticket, ticket.id).final_priority == "Hoch"


def test_webhook_commits_before_it_answers(
    tmp_path: Path, sqlite_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    cfg = telegram_config(
        tmp_path,
        sqlite_url,
        api,
        INTAKE_TELEGRAM__MODE="webhook",
        INTAKE_TELEGRAM__WEBHOOK_URL="https://bot.example.com/telegram/webhook",
        INTAKE_TELEGRAM__WEBHOOK_SECRET="geheim-123",
    )
    sessions = db(cfg)
    with BotApp(cfg, model) as running:
        assert api.webhook["url"] == "https://bot.example.com/telegram/webhook"
        url = f"http://127.0.0.1:{running.app.web_port}/telegram/webhook"
        update = api.text_update(70, SMALL)
        wrong = httpx.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "falsch"})
        assert wrong.status_code == 403 and tickets(sessions) == []
        good = {"X-Telegram-Bot-Api-Secret-Token": "geheim-123"}
        first = httpx.post(url, json=update, headers=good)
        assert first.status_code == 200
        assert len(tickets(sessions)) == 1  # committed before the 200
        again = httpx.post(url, json=update, headers=good)
        assert again.status_code == 200
        wait_chat(api, 70, 1)
        # Not stored (the file could not be fetched): 503, so that Telegram sends it again.
        document = api.push_document(71, b"log", file_name="a.log", mime_type="text/plain")
        api.fail_next("getFile")
        assert httpx.post(url, json=document, headers=good).status_code == 503
        assert len(tickets(sessions)) == 1
        assert httpx.post(url, json=document, headers=good).status_code == 200
        time.sleep(0.3)
    assert len(tickets(sessions)) == 2 and len(api.sent_to(70)) == 1
    assert not any(m == "getUpdates" for m, _ in api.calls)


def _outbox_status(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return [r.status for r in session.scalars(select(OutboxItem))]


def _import_examples(cfg: Config, sessions: sessionmaker[Session]) -> None:
    from intake.customers import import_customers, parse_customers
    from tests.support.config import ROOT

    with sessions.begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )


def test_two_instances_share_one_bot_and_the_other_takes_over(
    tmp_path: Path, pg_url: str, api: FakeBotAPI, model: PriorityModel
) -> None:
    """On one PostgreSQL database one instance polls the bot (advisory lock); when it stops,
    the other one takes over, and nothing is done twice."""
    first_cfg = telegram_config(tmp_path / "a", pg_url, api)
    second_cfg = telegram_config(tmp_path / "b", pg_url, api)
    sessions = db(first_cfg)
    second = BotApp(second_cfg, model).__enter__()
    try:
        with BotApp(first_cfg, model):
            for chat in range(101, 104):
                api.push_text(chat, SMALL)
            for chat in range(101, 104):
                wait_chat(api, chat, 1)
        for chat in range(104, 107):  # the first instance is gone
            api.push_text(chat, SMALL)
        for chat in range(104, 107):
            wait_chat(api, chat, 1, timeout=15)
        time.sleep(0.5)
    finally:
        second.__exit__(None, None, None)
    assert [len(api.sent_to(chat)) for chat in range(101, 107)] == [1] * 6
    assert sorted(t.sender for t in tickets(sessions)) == [f"telegram:{c}" for c in range(101, 107)]
