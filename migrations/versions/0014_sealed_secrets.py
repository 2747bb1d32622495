"""Sealed secrets: the audit chain's MAC key, stored encrypted under the key-encryption key.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: a table that older code never reads


def upgrade() -> None:
    op.create_table('sealed_secrets',
                    sa.Column('name', sa.String(length=64), nullable=False),
                    sa.Column('value_encrypted', sa.LargeBinary(), nullable=False),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('name', name=op.f('pk_sealed_secrets')))


def downgrade() -> None:
    op.drop_table('sealed_secrets')
