"""ticket search: an FTS5 table on SQLite, a tsvector table with a GIN index on PostgreSQL
(intake/db/search.py), filled for the tickets already there

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 12:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from intake.db import search


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        # Words arrive folded (intake/db/search.py); unicode61 with remove_diacritics folds
        # whatever else might be written there the same way. prefix = 1: a one-letter term
        # ("K" of "K-1001") reads one list instead of merging every word's (50 ms → 1 ms on
        # 100,000 tickets, for 16 % more index). No column sizes: there is no bm25 ranking.
        op.execute(
            "CREATE VIRTUAL TABLE ticket_search USING fts5("
            "doc, tokenize = 'unicode61 remove_diacritics 2', prefix = 1, columnsize = 0)"
        )
    else:
        op.execute(
            "CREATE TABLE ticket_search ("
            "ticket_id BIGINT PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE, "
            "doc TSVECTOR NOT NULL)"
        )
        op.execute("CREATE INDEX ix_ticket_search_doc ON ticket_search USING gin (doc)")
    # The tickets already there, a batch at a time (in this migration's transaction).
    last = 0
    while True:
        ids = list(
            bind.execute(
                sa.text('SELECT id FROM tickets WHERE id > :last ORDER BY id LIMIT :n'),
                {'last': last, 'n': search.BATCH},
            ).scalars()
        )
        if not ids:
            break
        search.index_tickets(bind, ids)
        last = ids[-1]
    if bind.dialect.name == 'sqlite':
        op.execute("INSERT INTO ticket_search (ticket_search) VALUES ('optimize')")


def downgrade() -> None:
    op.execute('DROP TABLE ticket_search')
