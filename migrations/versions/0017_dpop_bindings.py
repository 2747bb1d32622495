"""DPoP bindings (RFC 9449): the key a sign-in's code is bound to (``dpop_jkt`` at /authorize, §10), and the key
a public client's refresh tokens are bound to (§5). Both are JWK SHA-256 thumbprints (RFC 7638); NULL: unbound.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: nullable columns older code never reads

TABLES = ('pending_authorizations', 'authorization_codes', 'refresh_token_families')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('dpop_jkt', sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('dpop_jkt')
