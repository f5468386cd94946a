"""Staff passwords: argon2id hashes, checking a login against them, and the session version that
ends an account's sessions at logout and at a new password."""

from __future__ import annotations

import functools
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from intake.db.tables import Staff

# OWASP's argon2id setting (19 MiB, 2 passes, 1 lane). argon2-cffi's default takes 64 MiB per
# hash, which a login would add to the service's memory. Older hashes keep verifying (their
# parameters are in the hash) and are rehashed at the next login.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps an unknown name as slow as a wrong password (no probing)."""
    return HASHER.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def set_password(session: Session, name: str, password: str, now: datetime) -> bool:
    """Create the account or give it a new password, which ends all its sessions (the web pages
    compare `session_version` on every request). True if the account is new."""
    staff = session.scalars(select(Staff).where(Staff.name == name)).first()
    if staff is None:
        session.add(Staff(name=name, password_hash=hash_password(password), created_at=now))
        return True
    session.execute(
        update(Staff)
        .where(Staff.id == staff.id)
        .values(password_hash=hash_password(password), session_version=Staff.session_version + 1)
    )
    return False


def check_login(session: Session, name: str, password: str) -> bool:
    staff = session.scalars(select(Staff).where(Staff.name == name)).first()
    try:
        ok = HASHER.verify(staff.password_hash if staff else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    if staff is None:
        return False
    if ok and HASHER.check_needs_rehash(staff.password_hash):
        staff.password_hash = HASHER.hash(password)
    return ok


def session_version(session: Session, name: str) -> int | None:
    """The account's current session version (None: no such account); one indexed lookup."""
    return session.scalar(select(Staff.session_version).where(Staff.name == name))


def end_sessions(session: Session, name: str, version: int) -> None:
    """Logging out ends every session of the account signed with `version` (a cookie kept from
    before opens nothing); a stale session changes nothing."""
    session.execute(
        update(Staff)
        .where(Staff.name == name, Staff.session_version == version)
        .values(session_version=Staff.session_version + 1)
    )
