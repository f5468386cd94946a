"""The Telegram bot: python-telegram-bot's Application turns updates into ChatEvents for the
ChatService; the poller confirms an update to Telegram only after it is committed; the relay
sends the bot's outbox rows.

Exactly once: an update's id is recorded in the same transaction as what it caused. The
getUpdates offset moves past an update only after that commit, and a webhook post is answered
200 only then; a redelivered update finds its id and changes nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from intake.clock import Clock
from intake.config import Config
from intake.db.leadership import leadership
from intake.domain import AttachedFile
from intake.logs import log_event
from intake.outbox import Envelope, PermanentFailure
from intake.service import IntakeService
from intake.telegram.chat import ChatService
from intake.telegram.events import ChatEvent, ChatOutcome

log = logging.getLogger("intake.telegram")

ALLOWED_UPDATES = ["message", "callback_query"]
COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(@\w+)?(\s|$)")
SEND_TIMEOUT = 30.0


class UpdateFailed(Exception):
    """An update could not be committed; it stays unconfirmed and is fetched again."""


class TelegramChannel:
    """Everything `intake serve` runs for Telegram, on the service's event loop."""

    def __init__(
        self,
        cfg: Config,
        sessions: sessionmaker[Session],
        service: IntakeService,
        clock: Clock,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        tg = cfg.telegram
        assert tg.token is not None
        self.cfg = cfg
        self.sessions = sessions
        self.service = service
        self.clock = clock
        self.on_queued = on_queued
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(tg.token.get_secret_value())
            .base_url(tg.base_url)
            .base_file_url(tg.base_file_url)
            .updater(None)
            .build()
        )
        app = self.application
        app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        app.add_handler(
            MessageHandler(
                (filters.TEXT | filters.PHOTO | filters.Document.ALL) & ~filters.COMMAND,
                self._on_message,
            )
        )
        app.add_handler(CallbackQueryHandler(self._on_callback))
        self.chat: ChatService | None = None
        self._ready = asyncio.Event()
        self._failed: dict[int, str] = {}  # update id -> why it was not stored
        self._attempts: dict[int, int] = {}
        self._offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def bot(self) -> Bot:
        return cast(Bot, self.application.bot)

    # ---- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Start in the background: a Bot API that is not reachable yet delays only Telegram."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.application.running:
            await self.application.stop()
        with contextlib.suppress(Exception):
            await self.application.shutdown()

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _run(self) -> None:
        retry = self.cfg.telegram.retry_seconds
        while not self._ready.is_set():
            try:
                await self._initialize()
            except InvalidToken:
                log.error("telegram: the Bot API refused the token; the bot stays off")
                return
            except Exception as exc:
                log.warning("telegram: Bot API not reachable (%s); retrying in %.0f s", exc, retry)
                await asyncio.sleep(retry)
        if self.cfg.telegram.mode == "polling":
            await self._poll_forever()

    async def _initialize(self) -> None:
        await self.application.initialize()  # getMe: the bot's id keys the update ids
        self.chat = ChatService(
            self.cfg, self.sessions, self.service, self.bot.id, self.clock, self.on_queued
        )
        tg = self.cfg.telegram
        if tg.mode == "webhook":
            assert tg.webhook_url is not None and tg.webhook_secret is not None
            try:
                await self.bot.set_webhook(
                    tg.webhook_url,
                    secret_token=tg.webhook_secret.get_secret_value(),
                    allowed_updates=ALLOWED_UPDATES,
                )
            except TelegramError as exc:  # posts with the right secret are still taken
                log.error("telegram: setWebhook failed (%s); set the webhook by hand", exc)
        self._ready.set()
        log_event(log, "telegram-started", bot=self.bot.username, mode=tg.mode)

    # ---- polling -----------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        """Poll while this instance holds the bot's advisory lock (one poller per bot)."""
        retry = self.cfg.telegram.retry_seconds
        while True:
            try:
                lock = leadership(self.sessions, f"telegram:{self.bot.id}")
                leader = await asyncio.to_thread(lock.__enter__)
                try:
                    if leader:
                        await self._drop_webhook()
                        await self._poll()
                finally:
                    await asyncio.shield(asyncio.to_thread(lock.__exit__, None, None, None))
                await asyncio.sleep(retry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("telegram: polling stopped (%s); again in %.0f s", exc, retry)
                await asyncio.sleep(retry)

    async def _drop_webhook(self) -> None:
        """getUpdates does not work while a webhook is set; a failure here is only logged."""
        try:
            await self.bot.delete_webhook()
        except TelegramError as exc:
            log.warning("telegram: deleteWebhook failed (%s); polling anyway", exc)

    async def _poll(self) -> None:
        timeout = self.cfg.telegram.poll_timeout
        while True:
            updates = await self.bot.get_updates(
                offset=self._offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES
            )
            for update in updates:
                if not await self.process(update):
                    raise UpdateFailed(f"update {update.update_id} not committed")
                self._offset = update.update_id + 1  # confirmed with the next getUpdates

    # ---- webhook -----------------------------------------------------------------------
    async def process_json(self, data: dict[str, Any]) -> bool:
        """A webhook post: True once the update is committed (then answer 200)."""
        if not self._ready.is_set():
            return False
        update = Update.de_json(data, self.bot)
        return await self.process(update)

    async def process(self, update: Update) -> bool:
        """Handle the update; True once it is committed. An update that fails again and again
        (a file that cannot be fetched, a bug) is kept raw for staff after
        telegram.update_attempts tries, so that it cannot stop every later update."""
        uid = update.update_id
        self._failed.pop(uid, None)
        await self.application.process_update(update)
        error = self._failed.pop(uid, None)
        if error is None:
            self._attempts.pop(uid, None)
            return True
        attempts = self._attempts[uid] = self._attempts.get(uid, 0) + 1
        if attempts < self.cfg.telegram.update_attempts:
            return False
        chat = update.effective_chat
        raw = json.dumps(update.to_dict(), ensure_ascii=False).encode()
        await asyncio.to_thread(
            self._service().keep_unreadable, uid, chat.id if chat else None, raw, error
        )  # raises while the database is away: the update then stays with Telegram
        self._attempts.pop(uid, None)
        log.error(
            "telegram: update %s failed %d times; kept raw for staff: %s", uid, attempts, error
        )
        return True

    # ---- handlers ----------------------------------------------------------------------
    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        word = message.text.split()[0][1:]
        command = word.split("@", 1)[0].lower()
        await self._handle(update, self._event(update, message, command=command))

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        if message.text and COMMAND.match(message.text):
            # "/start" without its bot_command entity (some clients and bridges omit it)
            await self._on_command(update, context)
            return
        has_files = message.document is not None or bool(message.photo)
        if has_files and await asyncio.to_thread(self._service().seen, update.update_id):
            return  # stored before: do not fetch its files again
        try:
            files, too_large = await self._download(message)
        except TelegramError as exc:
            log.warning("telegram: update %s: download failed: %s", update.update_id, exc)
            self._failed[update.update_id] = f"Datei nicht abrufbar: {exc}"
            return
        text = message.text or message.caption or ""
        event = self._event(update, message, text=text, files=files, too_large=too_large)
        await self._handle(update, event)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        chat = update.effective_chat
        user = query.from_user
        event = ChatEvent(
            update_id=update.update_id,
            chat_id=chat.id if chat is not None else user.id,
            received_at=self.clock(),
            user_id=user.id,
            username=user.username,
            language_code=user.language_code,
            private=chat is None or chat.type == "private",
            callback_data=query.data or "",
        )
        outcome = await self._handle(update, event)
        if outcome is not None:
            with contextlib.suppress(TelegramError):
                await query.answer(outcome.answer)

    def _event(self, update: Update, message: Message, **values: Any) -> ChatEvent:
        user = message.from_user
        return ChatEvent(
            update_id=update.update_id,
            chat_id=message.chat.id,
            received_at=self.clock(),
            user_id=user.id if user else None,
            username=user.username if user else None,
            language_code=user.language_code if user else None,
            private=message.chat.type == "private",
            message_id=message.message_id,
            **values,
        )

    async def _handle(self, update: Update, event: ChatEvent) -> ChatOutcome | None:
        try:
            return await asyncio.to_thread(self._service().handle, event)
        except Exception as exc:
            log.exception("telegram: update %s not stored; it will come again", update.update_id)
            self._failed[update.update_id] = f"{type(exc).__name__}: {exc}"
            return None

    def _service(self) -> ChatService:
        assert self.chat is not None, "process() before the bot is initialised"
        return self.chat

    async def _download(self, message: Message) -> tuple[tuple[AttachedFile, ...], tuple[str, ...]]:
        """Photos (the largest size) and documents up to max_file_bytes; bigger ones by name."""
        limit = self.cfg.telegram.max_file_bytes
        wanted: list[tuple[str, int | None, str, str]] = []
        if message.document is not None:
            doc = message.document
            wanted.append(
                (
                    doc.file_id,
                    doc.file_size,
                    doc.file_name or f"dokument-{message.message_id}",
                    doc.mime_type or "application/octet-stream",
                )
            )
        if message.photo:
            photo = message.photo[-1]
            wanted.append(
                (photo.file_id, photo.file_size, f"foto-{message.message_id}.jpg", "image/jpeg")
            )
        files: list[AttachedFile] = []
        too_large: list[str] = []
        for file_id, size, name, content_type in wanted:
            if size is not None and size > limit:
                too_large.append(name)
                continue
            handle = await self.bot.get_file(file_id)
            data = bytes(await handle.download_as_bytearray())
            if len(data) > limit:
                too_large.append(name)
                continue
            files.append(AttachedFile(name, content_type, data))
        return tuple(files), tuple(too_large)

    # ---- sending -----------------------------------------------------------------------
    def send_from_thread(self, payload: bytes, timeout: float = SEND_TIMEOUT) -> None:
        """Send one outbox payload from a worker thread on the loop where the bot lives."""
        if self._loop is None or not self._ready.is_set():
            raise RuntimeError("the Telegram bot is not connected yet")
        future = asyncio.run_coroutine_threadsafe(self._send(payload), self._loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _send(self, payload: bytes) -> None:
        body = json.loads(payload)
        markup = body.get("reply_markup")
        await self.bot.send_message(
            chat_id=body["chat_id"],
            text=body["text"],
            reply_markup=InlineKeyboardMarkup.de_json(markup, self.bot) if markup else None,
        )


class TelegramRelay:
    """The outbox's way out for chat rows (the outbox sender runs in a worker thread)."""

    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel

    def deliver(self, envelope: Envelope) -> None:
        try:
            self.channel.send_from_thread(envelope.payload)
        except (Forbidden, BadRequest) as exc:
            # The user blocked the bot, or the chat is gone: retrying will not help.
            raise PermanentFailure(f"Telegram: {exc}") from exc
