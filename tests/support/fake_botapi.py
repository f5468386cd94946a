"""A fake Telegram Bot API server (aiohttp) running in its own thread and event loop.

The code under test (python-telegram-bot, another thread/loop or another process) talks
HTTP to it; the test thread feeds updates and observes calls through synchronous,
thread-safe helpers::

    with FakeBotAPI() as api:
        bot = Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)
        api.push_text(42, "Hallo")
        ...
        api.wait_sent(1)

Routes: ``* /bot{token}/{method}`` and ``GET /file/bot{token}/{file_path}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from typing import Any

from aiohttp import web

from tests.support.loopserver import LoopServer

JSON = dict[str, Any]
TOKEN = "123456:TEST-TOKEN"

_JSON_PARAMS = (
    "reply_markup",
    "entities",
    "caption_entities",
    "allowed_updates",
    "link_preview_options",
    "reply_parameters",
)


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class FakeBotAPI(LoopServer):
    """Fake Bot API on 127.0.0.1 (free port) served from a background thread."""

    thread_name = "fake-botapi"

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.bot_user: JSON = {
            "id": 123456,
            "is_bot": True,
            "first_name": "Support Bot",
            "username": "support_test_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.sent: list[JSON] = []
        self.calls: list[tuple[str, JSON]] = []
        self.confirmed_offset = 0
        self.webhook: JSON = {
            "url": "",
            "secret_token": None,
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        self._updates: list[JSON] = []
        self._files: dict[str, tuple[bytes, int]] = {}
        self._fail: dict[str, list[tuple[int, str, int | None]]] = {}
        self._drop: dict[str, int] = {}
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sent_cond = threading.Condition(self._lock)
        self._new_update: asyncio.Event | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """Base URL for ``Bot(base_url=...)``; PTB appends the token."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Base file URL for ``Bot(base_file_url=...)``; PTB appends the token."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    def _application(self) -> web.Application:
        self._closing = False
        self._new_update = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._download)
        return app

    async def _before_stop(self) -> None:
        self._closing = True
        if self._new_update is not None:
            self._new_update.set()

    def _notify_new_update(self) -> None:
        loop, event = self._loop, self._new_update
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    # ------------------------------------------------------------------ feeding updates

    def push_update(self, update: JSON) -> JSON:
        """Queue an update (assigning ``update_id`` if missing) and wake long polls."""
        with self._lock:
            if "update_id" not in update:
                update["update_id"] = next(self._update_ids)
            self._updates.append(update)
        self._notify_new_update()
        return update

    def _next_update_id(self) -> int:
        with self._lock:
            return next(self._update_ids)

    def _next_message_id(self) -> int:
        with self._lock:
            return next(self._message_ids)

    @staticmethod
    def _user(user_id: int, first_name: str, username: str | None, language_code: str) -> JSON:
        user: JSON = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }
        if username is not None:
            user["username"] = username
        return user

    @staticmethod
    def _chat(chat_id: int, chat_type: str, first_name: str, username: str | None) -> JSON:
        if chat_type == "private":
            chat: JSON = {"id": chat_id, "type": "private", "first_name": first_name}
            if username is not None:
                chat["username"] = username
            return chat
        return {"id": chat_id, "type": chat_type, "title": "Test Group"}

    def _incoming_message(
        self,
        chat_id: int,
        *,
        user_id: int | None = None,
        language_code: str = "de",
        first_name: str = "Kunde",
        username: str | None = None,
        chat_type: str = "private",
    ) -> JSON:
        return {
            "message_id": self._next_message_id(),
            "date": int(time.time()),
            "chat": self._chat(chat_id, chat_type, first_name, username),
            "from": self._user(
                chat_id if user_id is None else user_id, first_name, username, language_code
            ),
        }

    def text_update(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        language_code: str = "de",
        first_name: str = "Kunde",
        username: str | None = None,
        chat_type: str = "private",
    ) -> JSON:
        """Build (not push) a text message update with a fresh ``update_id``.

        Text starting with ``/`` gets a bot_command entity over its first word.
        """
        message = self._incoming_message(
            chat_id,
            user_id=user_id,
            language_code=language_code,
            first_name=first_name,
            username=username,
            chat_type=chat_type,
        )
        message["text"] = text
        if text.startswith("/"):
            first_word = text.split(maxsplit=1)[0]
            # Telegram counts entity offsets/lengths in UTF-16 code units.
            length = len(first_word.encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return {"update_id": self._next_update_id(), "message": message}

    def push_text(self, chat_id: int, text: str, **kw: Any) -> JSON:
        """Build and push a text message update (keywords as for :meth:`text_update`)."""
        return self.push_update(self.text_update(chat_id, text, **kw))

    def add_file(self, data: bytes, *, file_size: int | None = None) -> JSON:
        """Register downloadable bytes; ``file_size`` may claim a different (huge) size."""
        with self._lock:
            n = next(self._file_ids)
            file_id = f"FILE{n:06d}"
            size = len(data) if file_size is None else file_size
            self._files[file_id] = (bytes(data), size)
        return {"file_id": file_id, "file_unique_id": f"U{n:06d}", "file_size": size}

    def push_document(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        file_size: int | None = None,
        language_code: str = "de",
    ) -> JSON:
        """Push a message with a document whose bytes are served by getFile."""
        message = self._incoming_message(chat_id, language_code=language_code)
        message["document"] = {
            **self.add_file(data, file_size=file_size),
            "file_name": file_name,
            "mime_type": mime_type,
        }
        if caption is not None:
            message["caption"] = caption
        return self.push_update({"message": message})

    def push_photo(
        self,
        chat_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        language_code: str = "de",
    ) -> JSON:
        """Push a photo message: a thumbnail (a prefix of ``data``) and the full bytes last."""
        message = self._incoming_message(chat_id, language_code=language_code)
        sizes: list[JSON] = []
        if len(data) > 1:
            sizes.append({**self.add_file(data[: len(data) // 2]), "width": 90, "height": 68})
        sizes.append({**self.add_file(data), "width": 800, "height": 600})
        message["photo"] = sizes
        if caption is not None:
            message["caption"] = caption
        return self.push_update({"message": message})

    def callback_update(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int,
        user_id: int | None = None,
        username: str | None = None,
        language_code: str = "de",
    ) -> JSON:
        """Build (not push) a callback_query update (fresh ``update_id``) on bot message ``message_id``."""
        with self._lock:
            query_id = str(next(self._callback_ids))
        return {
            "update_id": self._next_update_id(),
            "callback_query": {
                "id": query_id,
                "from": self._user(
                    chat_id if user_id is None else user_id, "Kunde", username, language_code
                ),
                "chat_instance": f"ci-{chat_id}",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": self._chat(chat_id, "private", "Kunde", username),
                    "from": self.bot_user,
                    "text": "…",
                },
            },
        }

    def push_callback(self, chat_id: int, data: str, *, message_id: int, **kw: Any) -> JSON:
        """Build and push a callback_query update (keywords as for :meth:`callback_update`)."""
        return self.push_update(self.callback_update(chat_id, data, message_id=message_id, **kw))

    # ------------------------------------------------------------------ observing

    def wait_sent(self, n: int, timeout: float = 10.0) -> list[JSON]:
        """Block until at least ``n`` messages were sent/edited; return a copy of ``sent``."""
        with self._sent_cond:
            if not self._sent_cond.wait_for(lambda: len(self.sent) >= n, timeout):
                got = [(s.get("_method"), s.get("chat_id"), s.get("text")) for s in self.sent]
                methods = [m for m, _ in self.calls]
                raise TimeoutError(
                    f"expected {n} sent message(s) within {timeout}s, got {len(got)}: {got!r}; "
                    f"calls so far: {methods!r}"
                )
            return list(self.sent)

    def sent_to(self, chat_id: int) -> list[JSON]:
        """Sent/edited messages addressed to ``chat_id``."""
        with self._lock:
            return [s for s in self.sent if str(s.get("chat_id")) == str(chat_id)]

    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return list(self._updates)

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        status: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (``retry_after`` -> 429 style)."""
        with self._lock:
            self._fail.setdefault(method.lower(), []).extend(
                [(status, description, retry_after)] * times
            )

    def drop_next(self, method: str, times: int = 1) -> None:
        """Close the connection without an answer on the next ``times`` calls of ``method``."""
        with self._lock:
            key = method.lower()
            self._drop[key] = self._drop.get(key, 0) + times

    # ------------------------------------------------------------------ server side

    @staticmethod
    async def _params(request: web.Request) -> JSON:
        params: JSON = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:  # form-urlencoded or multipart
                for key, value in (await request.post()).items():
                    if isinstance(value, str):
                        params[key] = value
                    elif isinstance(value, bytes | bytearray):
                        params[key] = bytes(value)
                    else:  # uploaded file
                        params[key] = {
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": value.file.read(),
                        }
        return params

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: JSON = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    def _take_injection(self, m: str) -> str | tuple[int, str, int | None] | None:
        with self._lock:
            if self._drop.get(m, 0) > 0:
                self._drop[m] -= 1
                return "drop"
            failures = self._fail.get(m)
            if failures:
                return failures.pop(0)
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        m = method.lower()
        with self._lock:
            self.calls.append((method, params))
        injected = self._take_injection(m)
        if injected == "drop":
            if request.transport is not None:
                request.transport.abort()  # RST, no response bytes
            # aiohttp's write of this response hits a ConnectionError and is skipped quietly.
            return web.Response(status=204)
        if isinstance(injected, tuple):
            return self._error(*injected)

        if m == "getme":
            return self._ok(self.bot_user)
        if m == "getupdates":
            return self._ok(await self._get_updates(params))
        if m == "sendmessage":
            return self._ok(self._record_message(method, params, edit=False))
        if m == "editmessagetext":
            if "inline_message_id" in params:
                self._record_sent(method, params)
                return self._ok(True)
            return self._ok(self._record_message(method, params, edit=True))
        if m == "answercallbackquery":
            return self._ok(True)
        if m == "getfile":
            return self._get_file(params)
        if m in ("deletewebhook", "close", "logout"):
            with self._lock:
                if _truthy(params.get("drop_pending_updates")):
                    self._updates.clear()
                self.webhook.update(url="", secret_token=None)
            return self._ok(True)
        if m == "setwebhook":
            with self._lock:
                if _truthy(params.get("drop_pending_updates")):
                    self._updates.clear()
                self.webhook.update(
                    url=params.get("url", ""), secret_token=params.get("secret_token")
                )
            return self._ok(True)
        if m == "getwebhookinfo":
            with self._lock:
                info = {k: v for k, v in self.webhook.items() if k != "secret_token"}
                info["pending_update_count"] = len(self._updates)
            return self._ok(info)
        return self._error(404, f"Not Found: method {method} not faked")

    async def _get_updates(self, params: JSON) -> list[JSON]:
        offset = _as_int(params.get("offset"))
        limit = _as_int(params.get("limit"), 100) or 100
        timeout = float(params.get("timeout") or 0)
        with self._lock:
            if offset > 0:
                self.confirmed_offset = max(self.confirmed_offset, offset)
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, 2.0)
        event = self._new_update
        assert event is not None
        while True:
            with self._lock:
                if self._updates or self._closing:
                    return list(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event.clear()
            with self._lock:  # re-check: an update may have arrived before clear()
                if self._updates or self._closing:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _record_sent(self, method: str, params: JSON) -> JSON:
        record = dict(params)
        for key in _JSON_PARAMS:
            value = record.get(key)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    record[key] = json.loads(value)
        record["_method"] = method
        with self._sent_cond:
            self.sent.append(record)
            self._sent_cond.notify_all()
        return record

    def _record_message(self, method: str, params: JSON, *, edit: bool) -> JSON:
        record = self._record_sent(method, params)
        chat_id = _as_int(params.get("chat_id"), -1)
        message: JSON = {
            "message_id": (_as_int(params.get("message_id")) if edit else self._next_message_id()),
            "date": int(time.time()),
            "chat": self._chat(chat_id, "private" if chat_id > 0 else "supergroup", "Kunde", None),
            "from": self.bot_user,
            "text": params.get("text", ""),
        }
        if edit:
            message["edit_date"] = int(time.time())
        markup = record.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    def _get_file(self, params: JSON) -> web.Response:
        file_id = str(params.get("file_id", ""))
        with self._lock:
            entry = self._files.get(file_id)
        if entry is None:
            return self._error(400, "Bad Request: invalid file_id")
        return self._ok(
            {
                "file_id": file_id,
                "file_unique_id": "U" + file_id.removeprefix("FILE"),
                "file_size": entry[1],
                "file_path": f"documents/{file_id}",
            }
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        file_id = request.match_info["file_path"].rsplit("/", 1)[-1]
        with self._lock:
            entry = self._files.get(file_id)
        if entry is None:
            return self._error(404, "Not Found")
        return web.Response(body=entry[0], content_type="application/octet-stream")
