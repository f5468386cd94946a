"""Login rate limiting and CSRF tokens for the staff pages (passwords: intake/passwords.py)."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque


class LoginLimiter:
    """At most `attempts` failed logins per (name, address) within `window` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def blocked(self, key: tuple[str, str], now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        failures = self._failures[key]
        while failures and moment - failures[0] > self.window:
            failures.popleft()
        return len(failures) >= self.attempts

    def failed(self, key: tuple[str, str], now: float | None = None) -> None:
        self._failures[key].append(time.monotonic() if now is None else now)

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
