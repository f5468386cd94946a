"""Migrations carry an installation's data forward, not only an empty database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from intake.db.engine import make_engine
from intake.db.migrate import upgrade
from tests.support.database import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    name = create_pg_database(admin)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_pg_database(admin, name)


def test_a_version_1_database_with_tickets_upgrades_to_head_with_everything_kept(
    empty_url: str,
) -> None:
    upgrade(empty_url, "0001")
    engine = make_engine(empty_url)
    now = "2026-11-27 09:00:00"
    with engine.begin() as c:
        c.execute(
            text("insert into customers (number, name, created_at) values ('K-1', 'Alt GmbH', :n)"),
            {"n": now},
        )
        c.execute(
            text(
                "insert into contacts (customer_id, email, name, language, created_at) values (1, 'a@alt.example', 'A', 'de', :n)"
            ),
            {"n": now},
        )
        c.execute(
            text(
                "insert into tickets (number, channel, subject, status, outcome, sender, customer_id, contact_id, "
                "needs_review, language, received_at, created_at) values "
                "('2026112710000001', 'email', 'Alt', 'open', 'accepted', 'a@alt.example', 1, 1, false, 'de', :n, :n)"
            ),
            {"n": now},
        )
        c.execute(
            text(
                "insert into messages (ticket_id, direction, channel, dedupe_key, sender, recipient, subject, body_text, "
                "automatic_reasons, created_at) values (1, 'in', 'email', 'mid:<alt@x>', 'a@alt.example', '', 'Alt', 'Text', '[]', :n)"
            ),
            {"n": now},
        )
        c.execute(
            text(
                "insert into triage_records (ticket_id, message_id, outcome, probabilities, explanation, verdicts, created_at) "
                "values (1, 1, 'accepted', '{}', '{}', '[]', :n)"
            ),
            {"n": now},
        )
    engine.dispose()
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as c:
        assert c.execute(text("select number, subject, refers_to_id from tickets")).one() == (
            "2026112710000001",
            "Alt",
            None,
        )
        assert c.execute(text("select status from tickets")).scalar_one() == "new"  # was open
        assert c.execute(text("select count(*) from messages")).scalar_one() == 1
        assert c.execute(text("select count(*) from triage_records")).scalar_one() == 1
        assert c.execute(text("select failing_since from contacts")).scalar_one() is None
        if engine.dialect.name == "sqlite":
            assert c.execute(text("pragma foreign_key_check")).all() == []
    engine.dispose()


def test_the_lifecycle_migration_names_old_statuses_as_staff_know_them(empty_url: str) -> None:
    """0013: open → neu; closed → abgelehnt where staff declined a held request (its outcome
    still says held), else erledigt (machine mail, answered downloads)."""
    upgrade(empty_url, "0012")
    engine = make_engine(empty_url)
    rows = [("open", "accepted"), ("closed", "held"), ("closed", "ignored"), ("held", "held")]
    with engine.begin() as c:
        for i, (status, outcome) in enumerate(rows, 1):
            c.execute(
                text(
                    "insert into tickets (number, channel, subject, status, outcome, sender, "
                    "needs_review, language, received_at, created_at) values "
                    "(:number, 'email', 'x', :status, :outcome, 'a@b.example', false, 'de', :n, :n)"
                ),
                {
                    "number": f"20261127100000{i:02}",
                    "status": status,
                    "outcome": outcome,
                    "n": "2026-11-27 09:00:00",
                },
            )
    engine.dispose()
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as c:
        statuses = c.execute(text("select status from tickets order by id")).scalars().all()
    engine.dispose()
    assert statuses == ["new", "rejected", "done", "held"]


def test_the_migrations_build_exactly_the_tables_the_code_uses(empty_url: str) -> None:
    """A column the models have and no migration creates fails in production, not in tests
    that build from the same migrations: compare the migrated schema with the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from intake.db.search import include_name
    from intake.db.tables import Base

    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            # The search's own tables are no model's (intake/db/search.py), as in env.py.
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": include_name}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
