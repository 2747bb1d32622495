"""DPoP (RFC 9449): a client may register for DPoP-bound access tokens only, an MCP server may require them.

``clients.dpop_bound_access_tokens`` is the client metadata of RFC 9449 §5.2; ``mcp_servers.require_dpop``
makes the broker refuse a bearer token for that server. Both start false: nothing changes for existing rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 02:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None
compatible_with = '0008'  # additive: columns older code never reads


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dpop_bound_access_tokens', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('mcp_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_dpop', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('mcp_servers', schema=None) as batch_op:
        batch_op.drop_column('require_dpop')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('dpop_bound_access_tokens')
