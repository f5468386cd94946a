"""Test databases: a PostgreSQL database of a test's own, and counting rows."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy

import psycopg
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from intake.db.tables import OutboxItem

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def create_pg_database(admin_url: str) -> str:
    name = f"intake_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count(sessions: sessionmaker[Session], table: str, where: str = "1=1") -> int:
    with sessions() as session:
        return int(
            session.execute(text(f"select count(*) from {table} where {where}")).scalar_one()
        )


def last_reply(sessions: sessionmaker[Session]) -> str:
    """The plain text of the latest mail in the outbox."""
    with sessions() as session:
        item = session.scalars(select(OutboxItem).order_by(OutboxItem.id.desc())).first()
    assert item is not None
    return str(
        message_from_bytes(item.payload, policy=policy.default).get_body(("plain",)).get_content()
    )
