"""sender authentication: per message and ticket, per-customer mode; messages.direction as
wide as the model's state column

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:20:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('customers') as batch:
        batch.add_column(sa.Column('sender_auth', sa.String(length=16), nullable=True))
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('sender_auth', sa.String(length=16), nullable=True))
    with op.batch_alter_table('messages') as batch:
        batch.alter_column(
            'direction', existing_type=sa.String(length=8), type_=sa.String(length=16)
        )
        batch.add_column(sa.Column('sender_auth', sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column('sender_auth_reasons', sa.JSON(), nullable=False, server_default='[]')
        )


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('sender_auth_reasons')
        batch.drop_column('sender_auth')
        batch.alter_column(
            'direction', existing_type=sa.String(length=16), type_=sa.String(length=8)
        )
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('sender_auth')
    with op.batch_alter_table('customers') as batch:
        batch.drop_column('sender_auth')
