"""Staff passwords: argon2id hashes, and checking a login against them."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
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
