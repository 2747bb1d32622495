"""Properties of the audit chain (``broker.audit``): whatever the events and however they are sealed,
the chain verifies; any single change to a sealed row, a removed row or a cut-off tail is named.

SQLite only (``database_url`` is overridden below) and few examples: every example is database work.
One migrated database per test; each example starts from an empty log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from broker import audit
from broker.storage.db import Database
from tests.support.budget import examples

KEY = audit.AuditKey(os.urandom(32))
SETTINGS = settings(max_examples=examples(25), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only here (overrides the both-stores fixture of tests/conftest.py): keeps the properties fast."""
    yield f"sqlite:///{tmp_path / 'audit.db'}"


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.text(max_size=12))
data = st.dictionaries(st.sampled_from(["jti", "scopes", "n", "note", "grund", "ключ"]),
                       st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), max_size=4)
events = st.tuples(st.sampled_from(["token.issued", "login.success", "user.revoked", "policy.imported"]),
                   st.text(max_size=20), st.one_of(st.none(), st.text(min_size=1, max_size=36)), data)
# A script: write k events, or seal with a batch limit.
steps = st.lists(st.one_of(st.tuples(st.just("write"), st.lists(events, min_size=1, max_size=4)),
                           st.tuples(st.just("seal"), st.integers(1, 5))), min_size=1, max_size=8)


def reset(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))
        conn.execute(text("DELETE FROM audit_chain_head"))


def write(db: Database, batch: list[tuple]) -> None:
    with db.transaction() as session:
        for event_type, actor, user_id, payload in batch:
            audit.record(session, event_type, actor=actor, user_id=user_id, data=payload)


def seal(db: Database, limit: int = 5000) -> int:
    with db.transaction() as session:
        return audit.seal(session, KEY, limit=limit)


def check(db: Database) -> audit.VerifyResult:
    with db.sessions() as session:
        return audit.verify(session, KEY)


def execute(db: Database, sql: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


def run(db: Database, script: list[tuple]) -> int:
    """Play a script, then seal what is left; returns how many events were written."""
    reset(db)
    written = 0
    for kind, arg in script:
        if kind == "write":
            write(db, arg)
            written += len(arg)
        else:
            seal(db, arg)
            assert check(db).ok  # every intermediate state verifies too
    while seal(db, 3):
        pass
    return written


@SETTINGS
@given(script=steps)
def test_any_events_sealed_in_any_batches_verify(migrated: Database, script) -> None:
    """Sealing in id order, in batches of any size, yields a chain that verifies end to end."""
    written = run(migrated, script)
    result = check(migrated)
    assert result.ok and result.checked == result.head_seq == written and result.unsealed == 0


EDITS = {
    "data": "UPDATE audit_events SET data = '{\"tampered\": true}' WHERE chain_seq = :k",
    "event_type": "UPDATE audit_events SET event_type = 'tampered.event' WHERE chain_seq = :k",
    "actor": "UPDATE audit_events SET actor = actor || 'x' WHERE chain_seq = :k",
    "user_id": "UPDATE audit_events SET user_id = 'tampered' WHERE chain_seq = :k",
    "outcome": "UPDATE audit_events SET outcome = 'failure' WHERE chain_seq = :k",
    "occurred_at": "UPDATE audit_events SET occurred_at = '2020-01-01 00:00:00.000000' WHERE chain_seq = :k",
    "hash": "UPDATE audit_events SET hash = substr('0123456789abcdef' || hash, 1, 64) WHERE chain_seq = :k",
    "prev_hash": "UPDATE audit_events SET prev_hash = substr('f' || prev_hash, 1, 64) WHERE chain_seq = :k",
}


@SETTINGS
@given(script=steps.filter(lambda s: sum(len(a) for k, a in s if k == "write") >= 1),
       column=st.sampled_from(sorted(EDITS)), where=st.integers(0, 100))
def test_any_edit_of_a_sealed_row_is_named(migrated: Database, script, column, where) -> None:
    """Each link MACs the event's content, its position and the link before it: editing any of them in the
    row at position k breaks the chain exactly there (the k - 1 before it still verify)."""
    written = run(migrated, script)
    k = 1 + where % written
    execute(migrated, EDITS[column], k=k)
    result = check(migrated)
    assert not result.ok and result.broken_seq == k and result.checked == k - 1, (column, result)


@SETTINGS
@given(script=steps.filter(lambda s: sum(len(a) for k, a in s if k == "write") >= 1), where=st.integers(0, 100))
def test_moving_a_row_out_of_its_position_is_named(migrated: Database, script, where) -> None:
    """The position is part of the link: a row given another ``chain_seq`` breaks the chain where it was."""
    written = run(migrated, script)
    k = 1 + where % written
    execute(migrated, "UPDATE audit_events SET chain_seq = :v WHERE chain_seq = :k", k=k, v=written + 10)
    result = check(migrated)
    assert not result.ok and result.checked == k - 1 and result.broken_seq in (k + 1, written + 10), result


@SETTINGS
@given(script=steps.filter(lambda s: sum(len(a) for k, a in s if k == "write") >= 3), where=st.integers(0, 100))
def test_a_row_deleted_from_the_middle_is_named(migrated: Database, script, where) -> None:
    """Positions are consecutive: deleting the row at k (not the last) is named at k + 1, "removed"."""
    written = run(migrated, script)
    k = 1 + where % (written - 1)
    execute(migrated, "DELETE FROM audit_events WHERE chain_seq = :k", k=k)
    result = check(migrated)
    assert not result.ok and result.broken_seq == k + 1 and result.checked == k - 1 and "removed" in result.reason


@SETTINGS
@given(script=steps.filter(lambda s: sum(len(a) for k, a in s if k == "write") >= 1), where=st.integers(0, 100))
def test_a_cut_off_tail_is_named(migrated: Database, script, where) -> None:
    """The head row MACs the last link: deleting every row from k to the end is named at k."""
    written = run(migrated, script)
    k = 1 + where % written
    execute(migrated, "DELETE FROM audit_events WHERE chain_seq >= :k", k=k)
    result = check(migrated)
    assert not result.ok and result.broken_seq == k and result.checked == k - 1 and "removed" in result.reason


@SETTINGS
@given(script=steps.filter(lambda s: sum(len(a) for k, a in s if k == "write") >= 1),
       column=st.sampled_from(["seq", "hash", "mac"]))
def test_an_edited_head_is_detected(migrated: Database, script, column) -> None:
    """The head row is MAC'd: changing its position, its link or its MAC fails verification."""
    run(migrated, script)
    change = {"seq": "seq = seq + 1", "hash": "hash = substr('0' || hash, 1, 64)",
              "mac": "mac = substr('0' || mac, 1, 64)"}
    execute(migrated, f"UPDATE audit_chain_head SET {change[column]}")
    assert not check(migrated).ok
