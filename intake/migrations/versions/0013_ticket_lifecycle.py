"""Ticket lifecycle: statuses neu/in Bearbeitung/erledigt/gehalten/abgelehnt/an Znuny
übergeben, ticket_events, the assignee and the unread flag; a correction names its message

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 22:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from intake.db.tables import BigId, UTCDateTime


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'ticket_events',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('ticket_id', BigId, sa.ForeignKey('tickets.id'), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('staff', sa.String(length=128), nullable=True),
        sa.Column('what', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_ticket_events_ticket_id', 'ticket_events', ['ticket_id'])
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('assignee', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('unread_since', UTCDateTime(), nullable=True))
        batch.create_index('ix_tickets_assignee', ['assignee'])
    with op.batch_alter_table('corrections') as batch:
        batch.add_column(sa.Column('message_id', BigId, nullable=True))
        batch.create_foreign_key(
            'fk_corrections_message_id', 'messages', ['message_id'], ['id']
        )
    # open → neu; closed → abgelehnt where staff declined a held request (its outcome still
    # says held), else erledigt (machine mail, answered downloads).
    op.execute("update tickets set status = 'new' where status = 'open'")
    op.execute(
        "update tickets set status = 'rejected' where status = 'closed' "
        "and outcome in ('held', 'unverified', 'unreadable')"
    )
    op.execute("update tickets set status = 'done' where status = 'closed'")


def downgrade() -> None:
    op.execute("update tickets set status = 'open' where status in ('new', 'in_progress', 'handed_over')")
    op.execute("update tickets set status = 'closed' where status in ('done', 'rejected')")
    with op.batch_alter_table('corrections') as batch:
        batch.drop_constraint('fk_corrections_message_id', type_='foreignkey')
        batch.drop_column('message_id')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_index('ix_tickets_assignee')
        batch.drop_column('unread_since')
        batch.drop_column('assignee')
    op.drop_index('ix_ticket_events_ticket_id', 'ticket_events')
    op.drop_table('ticket_events')
