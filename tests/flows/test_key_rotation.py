"""Scheduled signing-key rotation as the broker wires it: the periodic job, and its audit event."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from broker.admin import keys as key_admin
from broker.storage import signing_keys
from broker.storage.models import AuditEvent, utcnow


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(keys={"rotate_every": 2, "activation_delay": 1})


def test_the_broker_rotates_on_schedule_by_itself(state: Any) -> None:
    [(interval, job)] = [(i, j) for i, j in state.periodic if j.__name__ == "rotate_signing_key_when_due"]
    assert interval == 1.0
    with state.database.sessions() as session:
        [first] = signing_keys.list_keys(session, "broker")
    job()
    with state.database.sessions() as session:
        assert len(signing_keys.list_keys(session, "broker")) == 1  # not due until a delay before 2 s
    due = first.activates_at + dt.timedelta(seconds=1)
    while utcnow() < due:
        job()
    job()
    with state.database.sessions() as session:
        keys = signing_keys.list_keys(session, "broker")
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.event_type == "key.rotated")))
    assert len(keys) == 2 and keys[0].retired_at == keys[1].activates_at
    # due 2 s after the first started signing; published a full delay (1 s) ahead, so a check that runs late
    # moves it by that much
    assert keys[1].activates_at - keys[1].created_at >= dt.timedelta(seconds=1)
    assert first.activates_at + dt.timedelta(seconds=2) <= keys[1].activates_at \
        <= first.activates_at + dt.timedelta(seconds=2 + interval)
    assert [(e.actor, e.data["after"]["kid"]) for e in events] == [(key_admin.SCHEDULE, keys[1].kid)]


def test_no_schedule_by_default(make_settings: Any) -> None:
    assert make_settings().keys.rotate_every == 0
