"""Leistungskatalog: the proposed service, its confidence and the decided service per ticket;
a correction may decide a service instead of a priority

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('proposed_service', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('service_confidence', sa.Float(), nullable=True))
        batch.add_column(sa.Column('final_service', sa.String(length=32), nullable=True))
    with op.batch_alter_table('corrections') as batch:
        batch.alter_column('new_priority', existing_type=sa.String(length=16), nullable=True)
        batch.add_column(sa.Column('old_service', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('new_service', sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A service decision has no priority: it cannot stay in a table that demands one.
    op.execute("delete from corrections where new_priority is null")
    with op.batch_alter_table('corrections') as batch:
        batch.drop_column('new_service')
        batch.drop_column('old_service')
        batch.alter_column('new_priority', existing_type=sa.String(length=16), nullable=False)
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('final_service')
        batch.drop_column('service_confidence')
        batch.drop_column('proposed_service')
