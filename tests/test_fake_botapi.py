"""The fake Bot API (tests/fake_botapi.py) driven by the real python-telegram-bot ``Bot``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes, filters

from tests.support.fake_botapi import FakeBotAPI


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as server:
        yield server


def make_bot(api: FakeBotAPI) -> Bot:
    return Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)


def test_get_updates_offset_semantics(api: FakeBotAPI) -> None:
    first = api.push_text(42, "Hallo")
    second = api.push_text(43, "Drucker kaputt", username="kunde43")
    assert (first["update_id"], second["update_id"]) == (1000, 1001)

    async def main() -> tuple[list[Update], list[Update], list[Update]]:
        async with make_bot(api) as bot:
            assert bot.username == "support_test_bot"
            both = list(await bot.get_updates(timeout=0))
            rest = list(await bot.get_updates(offset=both[0].update_id + 1, timeout=0))
            none = list(await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0))
            return both, rest, none

    both, rest, none = asyncio.run(main())
    assert [u.message.text for u in both if u.message] == ["Hallo", "Drucker kaputt"]
    assert [u.update_id for u in rest] == [1001]
    assert rest[0].effective_user is not None and rest[0].effective_user.username == "kunde43"
    assert none == []
    assert api.confirmed_offset == 1002
    assert api.pending_updates() == []


def test_long_poll_wakes_on_push_from_another_thread(api: FakeBotAPI) -> None:
    threading.Timer(0.2, api.push_text, args=(7, "später")).start()

    async def main() -> tuple[list[Update], float]:
        async with make_bot(api) as bot:
            t0 = time.monotonic()
            updates = await bot.get_updates(timeout=10)
            return list(updates), time.monotonic() - t0

    updates, elapsed = asyncio.run(main())
    assert [u.message.text for u in updates if u.message] == ["später"]
    assert elapsed < 1.5  # woke on the push, not on the 2 s cap
    assert api.pending_updates() != []  # not confirmed until a later offset


def test_send_message_recorded_with_reply_markup(api: FakeBotAPI) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("P1", callback_data="prio:1")]])

    async def main() -> None:
        async with make_bot(api) as bot:
            msg = await bot.send_message(42, "Ticket angelegt", reply_markup=markup)
            assert msg.text == "Ticket angelegt" and msg.chat_id == 42
            assert msg.reply_markup == markup
            edited = await bot.edit_message_text("Priorität 1", chat_id=42, message_id=msg.id)
            assert not isinstance(edited, bool) and edited.message_id == msg.message_id

    asyncio.run(main())
    sent = api.wait_sent(2, timeout=1)
    assert sent[0]["_method"] == "sendMessage" and sent[0]["chat_id"] == "42"
    assert sent[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "P1", "callback_data": "prio:1"}]]
    }
    assert sent[1]["_method"] == "editMessageText" and sent[1]["text"] == "Priorität 1"
    assert api.sent_to(42) == sent and api.sent_to(43) == []
    with pytest.raises(TimeoutError, match="expected 3 sent"):
        api.wait_sent(3, timeout=0.05)


# PTB 22.8 warns about RetryAfter.retry_after becoming a timedelta from inside its own __init__.
@pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")
def test_fail_next_and_drop_next(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage")
    api.fail_next("SENDMESSAGE", status=400, description="Bad Request: chat not found")
    api.fail_next("sendMessage", status=429, description="Too Many Requests", retry_after=3)

    async def main() -> None:
        async with make_bot(api) as bot:
            with pytest.raises(NetworkError, match="Internal Server Error"):
                await bot.send_message(42, "eins")
            with pytest.raises(BadRequest, match=r"^Chat not found$"):
                await bot.send_message(42, "zwei")
            with pytest.raises(RetryAfter):
                await bot.send_message(42, "drei")
            await bot.send_message(42, "vier")
            api.drop_next("sendMessage")
            with pytest.raises(NetworkError) as dropped:
                await bot.send_message(42, "fünf")
            assert isinstance(dropped.value, TelegramError)
            await bot.send_message(42, "sechs")

    asyncio.run(main())
    assert [s["text"] for s in api.sent] == ["vier", "sechs"]
    texts = [p.get("text") for m, p in api.calls if m == "sendMessage"]
    assert texts == ["eins", "zwei", "drei", "vier", "fünf", "sechs"]


def test_get_file_and_download(api: FakeBotAPI) -> None:
    payload = b"%PDF-1.4 fake invoice\n" * 100
    update = api.push_document(
        42, payload, file_name="rechnung.pdf", mime_type="application/pdf", caption="Anbei"
    )
    photo = api.push_photo(42, b"\x89PNG fake image bytes")
    huge = api.add_file(b"tiny", file_size=50 * 1024 * 1024)

    async def main() -> None:
        async with make_bot(api) as bot:
            upd = Update.de_json(update, bot)
            assert upd.message is not None and upd.message.document is not None
            assert upd.message.caption == "Anbei"
            assert upd.message.document.file_name == "rechnung.pdf"
            tg_file = await upd.message.document.get_file()
            assert tg_file.file_size == len(payload)
            assert bytes(await tg_file.download_as_bytearray()) == payload

            pupd = Update.de_json(photo, bot)
            assert pupd.message is not None and len(pupd.message.photo) == 2
            largest = pupd.message.photo[-1]
            assert largest.width == 800 and largest.file_size == len(b"\x89PNG fake image bytes")
            data = await (await largest.get_file()).download_as_bytearray()
            assert bytes(data) == b"\x89PNG fake image bytes"

            assert (await bot.get_file(huge["file_id"])).file_size == 50 * 1024 * 1024
            with pytest.raises(BadRequest, match=r"^Invalid file_id$"):
                await bot.get_file("nope")

    asyncio.run(main())


def test_command_and_callback_updates_parse(api: FakeBotAPI) -> None:
    async def main() -> None:
        async with make_bot(api) as bot:
            cmd = Update.de_json(api.text_update(42, "/start@support_test_bot hallo"), bot)
            assert filters.COMMAND.check_update(cmd)
            plain = Update.de_json(api.text_update(42, "kein /befehl"), bot)
            assert not filters.COMMAND.check_update(plain)

            raw = api.push_callback(42, "prio:2", message_id=5, username="kunde")
            cb = Update.de_json(raw, bot)
            assert cb.callback_query is not None and cb.callback_query.data == "prio:2"
            assert cb.effective_chat is not None and cb.effective_chat.id == 42
            assert cb.effective_user is not None and cb.effective_user.username == "kunde"
            assert cb.callback_query.message is not None
            assert cb.callback_query.message.message_id == 5
            assert await cb.callback_query.answer("ok") is True

    asyncio.run(main())
    assert [m for m, _ in api.calls][-1] == "answerCallbackQuery"
    assert api.pending_updates()[-1]["callback_query"]["data"] == "prio:2"


def test_webhook_and_unknown_method(api: FakeBotAPI) -> None:
    api.push_text(1, "alt")

    async def main() -> None:
        async with make_bot(api) as bot:
            assert await bot.set_webhook("https://example.invalid/tg", secret_token="s3cr3t")
            info = await bot.get_webhook_info()
            assert info.url == "https://example.invalid/tg" and info.pending_update_count == 1
            assert await bot.delete_webhook(drop_pending_updates=True)
            with pytest.raises(TelegramError):
                await bot.send_chat_action(1, "typing")

    asyncio.run(main())
    assert api.webhook["url"] == "" and api.pending_updates() == []
    assert ("setWebhook", {"url": "https://example.invalid/tg", "secret_token": "s3cr3t"}) in [
        (m, {k: p[k] for k in ("url", "secret_token") if k in p}) for m, p in api.calls
    ]


def test_application_polling_roundtrip(api: FakeBotAPI) -> None:
    """A polling Application (own loop) answers a command pushed from the test thread."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("Willkommen")

    async def main() -> list[dict[str, Any]]:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)
            .base_file_url(api.base_file_url)
            .build()
        )
        app.add_handler(CommandHandler("start", start))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            api.push_text(42, "/start")
            sent = await asyncio.to_thread(api.wait_sent, 1, 5.0)
            await app.updater.stop()
            await app.stop()
        return sent

    sent = asyncio.run(main())
    assert sent[0]["text"] == "Willkommen" and sent[0]["chat_id"] == "42"
    assert api.pending_updates() == []  # confirmed by the final getUpdates on stop
    assert api.confirmed_offset == 1001
