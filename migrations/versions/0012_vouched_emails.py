"""Users' and identities' emails are only addresses their IdP vouched for (email_verified, Entra's xms_edov).

Data only: an identity keeps its email when the claims of its latest sign-in say the IdP verified it (the
connector's verdict, stored as ``email_verified``); an unverified ``email`` claim moves to
``unverified_email``; a user keeps an email only when one of their identities vouches for it. Nothing a
release reads changes shape, so older code runs on the result.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None
compatible_with = '0008'  # data only: the columns older code reads are unchanged

_IDENTITIES = sa.table('upstream_identities', sa.column('id', sa.String), sa.column('user_id', sa.String),
                       sa.column('email', sa.String), sa.column('claims', sa.JSON))
_USERS = sa.table('users', sa.column('id', sa.String), sa.column('email', sa.String))


def upgrade() -> None:
    connection = op.get_bind()
    vouched: dict[str, set[str]] = {}
    for row in connection.execute(sa.select(_IDENTITIES)).all():
        claims = dict(row.claims or {})
        verified = claims.get('email_verified') is True
        if row.email and verified:
            vouched.setdefault(row.user_id, set()).add(row.email.lower())
        changed = not verified and 'email' in claims
        if changed:
            claims['unverified_email'] = claims.pop('email')
        if changed or (row.email and not verified):
            connection.execute(sa.update(_IDENTITIES).where(_IDENTITIES.c.id == row.id)
                               .values(email=row.email if verified else None, claims=claims))
    for row in connection.execute(sa.select(_USERS).where(_USERS.c.email.is_not(None))).all():
        if row.email.lower() not in vouched.get(row.id, set()):
            connection.execute(sa.update(_USERS).where(_USERS.c.id == row.id).values(email=None))


def downgrade() -> None:
    pass  # what was dropped was never vouched for; it is not put back
