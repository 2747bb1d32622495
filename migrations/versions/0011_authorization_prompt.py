"""The OpenID Connect prompt values an authorization request carried (prompt=consent asks for consent again).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: a nullable column older code never writes or reads


def upgrade() -> None:
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompt', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_column('prompt')
