"""``grants.consent``: a user's consent to one client at one server, as stored, and only that one."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants, users
from broker.storage.db import Database
from broker.storage.models import Consent, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def test_a_consent_is_found_by_user_client_and_server(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        grants.add(session, Consent(user_id="u1", client_id="app", server_id="s1", scopes=["a", "b"], granted_at=NOW),
                   Consent(user_id="u1", client_id="app", server_id="s2", scopes=["c"], granted_at=NOW))
    with database.transaction() as session:
        found = grants.consent(session, "u1", "app", "s1")
        assert type(found) is Consent and (found.scopes, found.granted_at) == (["a", "b"], NOW)
        assert grants.consent(session, "u1", "app", "s2").scopes == ["c"]
        assert grants.consent(session, "u2", "app", "s1") is None
        assert grants.consent(session, "u1", "other", "s1") is None
        found.scopes, found.granted_at = ["a", "b", "d"], NOW + dt.timedelta(hours=1)  # how a new approval widens it
    with database.transaction() as session:
        assert grants.consent(session, "u1", "app", "s1").scopes == ["a", "b", "d"]
        assert grants.consent(session, "u1", "app", "s2").scopes == ["c"]
