"""Two first sign-ins creating the same group at once (users.set_groups): both succeed, one group."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from broker.storage import users
from broker.storage.db import Database
from broker.storage.models import Group, User


def test_two_transactions_create_one_group(migrated) -> None:
    with migrated.transaction() as session:
        ids = []
        for name in ("ann", "ben"):
            user = User(email=f"{name}@example.com", display_name=name)
            session.add(user)
            session.flush()
            ids.append(user.id)
    barrier, errors = threading.Barrier(2), []
    # Two instances, as two broker processes would be.
    instances = [migrated, Database(migrated.url)]

    def sign_in(database: Database, user_id: str) -> None:
        try:
            with database.transaction() as session:
                barrier.wait(timeout=10)
                users.set_groups(session, user_id, "idp:test", ["engineering", "new-team"])
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=sign_in, args=pair) for pair in zip(instances, ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    instances[1].dispose()
    assert errors == []
    with migrated.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Group)) == 2
        assert users.group_names(session, ids[0]) == users.group_names(session, ids[1]) == ["engineering", "new-team"]
