"""Upstream refresh tokens of offboarded users, waiting to be revoked at their IdP (RFC 7009).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: a table older code never reads or writes


def upgrade() -> None:
    op.create_table('upstream_revocations',
                    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column('user_id', sa.String(length=36), nullable=False),
                    sa.Column('idp_id', sa.String(length=64), nullable=False),
                    sa.Column('identity_id', sa.String(length=36), nullable=False),
                    sa.Column('token_encrypted', sa.LargeBinary(), nullable=False),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_revocations')))


def downgrade() -> None:
    op.drop_table('upstream_revocations')
