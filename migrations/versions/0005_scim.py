"""SCIM provisioning: the SCIM resources over broker users and groups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

LIVE = sa.text('deleted_at IS NULL')


def upgrade() -> None:
    op.create_table('scim_users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('idp_id', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=320), nullable=False),
    sa.Column('user_name_key', sa.String(length=320), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('offboarded_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_scim_users_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_users'))
    )
    with op.batch_alter_table('scim_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scim_users_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_scim_users_live_user_name', ['idp_id', 'user_name_key'], unique=True,
                              sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.create_index('ix_scim_users_live_external_id', ['idp_id', 'external_id'], unique=True,
                              sqlite_where=LIVE, postgresql_where=LIVE)

    op.create_table('scim_groups',
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('idp_id', sa.String(length=64), nullable=False),
    sa.Column('display_name_key', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_scim_groups_group_id_groups')),
    sa.PrimaryKeyConstraint('group_id', name=op.f('pk_scim_groups'))
    )
    with op.batch_alter_table('scim_groups', schema=None) as batch_op:
        batch_op.create_index('ix_scim_groups_idp_name', ['idp_id', 'display_name_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('scim_groups', schema=None) as batch_op:
        batch_op.drop_index('ix_scim_groups_idp_name')
    op.drop_table('scim_groups')
    with op.batch_alter_table('scim_users', schema=None) as batch_op:
        batch_op.drop_index('ix_scim_users_live_external_id')
        batch_op.drop_index('ix_scim_users_live_user_name')
        batch_op.drop_index(batch_op.f('ix_scim_users_user_id'))
    op.drop_table('scim_users')
