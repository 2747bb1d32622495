"""Authorization server state: pending authorizations, consents, single-use JWT ids; client roles.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:31:44.745311
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('seen_jtis',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_seen_jtis'))
    )
    with op.batch_alter_table('seen_jtis', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_jtis_expires_at'), ['expires_at'], unique=False)

    op.create_table('consents',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.String(length=2048), nullable=False),
    sa.Column('server_id', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_consents_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'client_id', 'server_id', name=op.f('pk_consents'))
    )
    op.create_table('pending_authorizations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.String(length=2048), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2048), nullable=False),
    sa.Column('resource', sa.String(length=2048), nullable=False),
    sa.Column('server_id', sa.String(length=64), nullable=False),
    sa.Column('requested_scope', sa.Text(), nullable=False),
    sa.Column('granted_scope', sa.Text(), nullable=True),
    sa.Column('state', sa.Text(), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=False),
    sa.Column('nonce', sa.String(length=512), nullable=True),
    sa.Column('idp_id', sa.String(length=64), nullable=False),
    sa.Column('upstream_state_hash', sa.String(length=64), nullable=False),
    sa.Column('upstream_nonce', sa.String(length=64), nullable=False),
    sa.Column('upstream_verifier_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=True),
    sa.Column('auth_time', sa.DateTime(), nullable=True),
    sa.Column('acr', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pending_authorizations_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_authorizations')),
    sa.UniqueConstraint('upstream_state_hash', name=op.f('uq_pending_authorizations_upstream_state_hash'))
    )
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_authorizations_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('may_introspect', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('registered_from', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_clients_registered_from'), ['registered_from'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clients_registered_from'))
        batch_op.drop_column('registered_from')
        batch_op.drop_column('may_introspect')
        batch_op.drop_column('scopes')

    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_authorizations_expires_at'))

    op.drop_table('pending_authorizations')
    op.drop_table('consents')
    with op.batch_alter_table('seen_jtis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_jtis_expires_at'))

    op.drop_table('seen_jtis')
