"""The audit chain on both stores: intact chains verify; every kind of tampering is named."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from broker import audit
from broker.storage.db import Database

KEY = audit.AuditKey(os.urandom(32))


def write(db: Database, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with db.transaction() as session:
            audit.record(session, "token.issued", actor="client-1", user_id=f"user-{i}", client_id="client-1",
                         server_id="demo", data={"jti": f"jti-{i}", "scopes": ["tools:read"]})


def seal_all(db: Database) -> int:
    with db.transaction() as session:
        return audit.seal(session, KEY)


def check(db: Database, key: audit.AuditKey = KEY) -> audit.VerifyResult:
    with db.sessions() as session:
        return audit.verify(session, key)


def execute(db: Database, sql: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql))


def test_sealed_chain_verifies(migrated: Database) -> None:
    write(migrated, 5)
    assert seal_all(migrated) == 5
    write(migrated, 3)
    assert seal_all(migrated) == 3 and seal_all(migrated) == 0
    result = check(migrated)
    assert result.ok and result.checked == 8 and result.head_seq == 8 and result.unsealed == 0


def test_empty_log_verifies(migrated: Database) -> None:
    assert check(migrated).ok


def test_unsealed_events_are_counted(migrated: Database) -> None:
    write(migrated, 2)
    result = check(migrated)
    assert result.ok and result.unsealed == 2


def test_an_edited_event_is_named(migrated: Database) -> None:
    write(migrated, 5)
    seal_all(migrated)
    execute(migrated, "UPDATE audit_events SET actor = 'someone-else' WHERE chain_seq = 3")
    result = check(migrated)
    assert not result.ok and result.broken_seq == 3 and "altered" in result.reason


def test_an_edited_timestamp_or_data_is_named(migrated: Database) -> None:
    write(migrated, 3)
    seal_all(migrated)
    execute(migrated, "UPDATE audit_events SET occurred_at = '2020-01-01 00:00:00' WHERE chain_seq = 2")
    assert check(migrated).broken_seq == 2


def test_a_deleted_event_is_named(migrated: Database) -> None:
    write(migrated, 5)
    seal_all(migrated)
    execute(migrated, "DELETE FROM audit_events WHERE chain_seq = 2")
    result = check(migrated)
    assert not result.ok and result.broken_seq == 3 and "removed" in result.reason


def test_cutting_off_the_end_is_detected(migrated: Database) -> None:
    write(migrated, 5)
    seal_all(migrated)
    execute(migrated, "DELETE FROM audit_events WHERE chain_seq >= 4")
    result = check(migrated)
    assert not result.ok and "removed" in result.reason


def test_reordered_events_are_detected(migrated: Database) -> None:
    write(migrated, 4)
    seal_all(migrated)
    execute(migrated, "UPDATE audit_events SET chain_seq = -2 WHERE chain_seq = 2")
    execute(migrated, "UPDATE audit_events SET chain_seq = 2 WHERE chain_seq = 3")
    execute(migrated, "UPDATE audit_events SET chain_seq = 3 WHERE chain_seq = -2")
    result = check(migrated)
    assert not result.ok and result.broken_seq == 2


def test_an_inserted_event_is_detected(migrated: Database) -> None:
    write(migrated, 3)
    seal_all(migrated)
    with migrated.engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM audit_events WHERE chain_seq = 3")).mappings().one()
        conn.execute(text("UPDATE audit_events SET chain_seq = 4 WHERE chain_seq = 3"))
        conn.execute(text("INSERT INTO audit_events (occurred_at, event_type, actor, outcome, data, chain_seq, "
                          "prev_hash, hash) VALUES (:t, 'user.restored', 'attacker', 'success', '{}', 3, :p, :h)"),
                     {"t": row["occurred_at"], "p": row["prev_hash"], "h": row["hash"]})
    assert not check(migrated).ok


def test_another_key_cannot_verify_or_forge(migrated: Database) -> None:
    write(migrated, 2)
    seal_all(migrated)
    assert not check(migrated, audit.AuditKey(os.urandom(32))).ok


def test_rows_committed_out_of_id_order_join_the_chain(migrated: Database) -> None:
    """A writer that took an id first but commits last is sealed later: the chain stays whole."""
    if migrated.dialect == "sqlite":
        pytest.skip("SQLite serialises writers, so ids always commit in order there")
    slow = migrated.sessions()
    slow.begin()
    audit.record(slow, "login.success", actor="slow")
    slow.flush()  # takes the smaller id, not yet committed
    write(migrated, 2)
    assert seal_all(migrated) == 2
    slow.commit()
    slow.close()
    assert seal_all(migrated) == 1
    result = check(migrated)
    assert result.ok and result.checked == 3 and result.unsealed == 0


@pytest.mark.parametrize("data", [{"nested": {"refresh_token": "x"}}, {"secret": "x"}, {"steps": [1, {"code": "x"}]},
                                  {"deep": ({"a": [{"password": "x"}]},)}])
def test_credentials_are_refused_in_event_data(migrated: Database, data: dict[str, object]) -> None:
    with migrated.transaction() as session, pytest.raises(ValueError, match="credentials"):
        audit.record(session, "token.issued", data=data)


def test_concurrent_sealers_do_not_collide(migrated: Database) -> None:
    import threading

    write(migrated, 40)
    errors: list[Exception] = []

    def sealer() -> None:
        try:
            with migrated.transaction() as session:
                audit.seal(session, KEY, limit=7)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=sealer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while seal_all(migrated):
        pass
    assert errors == [] and check(migrated).checked == 40


def test_cli_verify_and_export(migrated: Database, settings, monkeypatch, capsys) -> None:
    import json

    from broker.cli import main

    monkeypatch.setenv("BROKER_MODE", "dev")
    monkeypatch.setenv("BROKER_ISSUER", settings.issuer)
    monkeypatch.setenv("BROKER_DATABASE__URL", settings.database_url)
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", settings.keys.key_encryption_key.get_secret_value())
    key = audit.AuditKey.derived_from(settings.key_encryption_key())  # as releases before the stored key sealed
    with migrated.transaction() as session:
        for i in range(3):
            audit.record(session, "client.registered", actor="cli", client_id=f"c{i}")
        audit.seal(session, key)
    assert main(["audit", "verify"]) == 0
    assert "audit chain intact: 3 events" in capsys.readouterr().out
    assert main(["audit", "export", "--since", "2000-01-01T00:00:00Z"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["client_id"] for e in lines] == ["c0", "c1", "c2"] and all(e["hash"] for e in lines)
    execute(migrated, "UPDATE audit_events SET client_id = 'evil' WHERE chain_seq = 2")
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at event" in capsys.readouterr().err
