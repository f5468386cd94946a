"""Login rate limiting, CSRF tokens and login redirects for the staff pages (passwords:
intake/passwords.py)."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Hashable
from urllib.parse import unquote, urlsplit

MAX_TARGET = 2000  # characters of a `next=` target


class LoginLimiter:
    """At most `attempts` failed logins per key (a name and an address, or a name alone) within
    `window` seconds. Logins run in worker threads, so every step holds a lock."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: Hashable, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return False
            while failures and moment - failures[0] > self.window:
                failures.popleft()
            if not failures:
                del self._failures[key]  # names tried once do not pile up
                return False
            return len(failures) >= self.attempts

    def failed(self, key: Hashable, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        with self._lock:
            self._failures.setdefault(key, deque()).append(moment)
            if len(self._failures) > 10_000:
                self._forget_before(moment - self.window)

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forget_before(self, moment: float) -> None:
        for key in [k for k, f in self._failures.items() if f[-1] < moment]:
            del self._failures[key]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def local_path(target: str) -> str:
    """Where a login may send the browser: a path on this site, else "/".

    Browsers read `//host`, `/\\host` and `\\\\host` as another host, drop tabs and newlines
    inside a URL, and some decode `%5C`; so a target is refused if it, or its percent-decoded
    form, has a backslash, a control character, a scheme or a host, or starts with two slashes.
    """
    if not target.startswith("/") or len(target) > MAX_TARGET:
        return "/"
    for form in (target, unquote(target)):
        if form.startswith("//") or "\\" in form:
            return "/"
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in form):
            return "/"
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return "/"
    return target
