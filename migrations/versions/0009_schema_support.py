"""Schema support: the oldest code revision that runs on this schema, for rolling upgrades.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: a table that older code never reads


def upgrade() -> None:
    op.create_table('schema_support',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('oldest_code_revision', sa.String(length=32), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_schema_support')))


def downgrade() -> None:
    op.drop_table('schema_support')
