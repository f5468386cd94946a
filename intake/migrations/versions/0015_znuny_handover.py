"""Znuny hand-over: the Znuny ticket (id and number) per ticket, the customer user per customer

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 09:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('znuny_ticket_id', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('znuny_ticket_number', sa.String(length=200), nullable=True))
    with op.batch_alter_table('customers') as batch:
        batch.add_column(sa.Column('znuny_customer_user', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customers') as batch:
        batch.drop_column('znuny_customer_user')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('znuny_ticket_number')
        batch.drop_column('znuny_ticket_id')
