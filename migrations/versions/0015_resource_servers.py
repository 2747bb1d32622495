"""The MCP servers whose tokens a resource server's client may introspect (RFC 7662 §4).

An introspecting client learns the claims of a token only when the token's audience is one of these
servers; existing clients start with none, so an operator names them (``broker clients resource-servers``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: a column older code never reads


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resource_servers', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('resource_servers')
