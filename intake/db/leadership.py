"""Which of several instances on one database does a job that only one may do (poll a mailbox,
poll the Telegram bot): a PostgreSQL advisory lock per job."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def leadership(sessions: sessionmaker[Session], name: str) -> Iterator[bool]:
    """Whether this process may do `name` now: a PostgreSQL session-level advisory lock, held for
    as long as the block runs (SQLite serves a single instance: always yes)."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        held = bool(connection.execute(select(func.pg_try_advisory_lock(key))).scalar())
        connection.commit()
        try:
            yield held
        finally:
            if held:
                connection.execute(select(func.pg_advisory_unlock(key)))
                connection.commit()
