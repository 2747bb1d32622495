"""Audit events by outcome, newest first: the console's denials (and their count per hour) stay on an index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive (an index): what 0009 supports still runs


def upgrade() -> None:
    op.create_index('ix_audit_events_outcome_id', 'audit_events', ['outcome', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_events_outcome_id', table_name='audit_events')
