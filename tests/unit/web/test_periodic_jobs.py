"""The periodic-job loop: a database outage is one warning when the job starts failing and one line when
it works again, not a traceback every round; other failures keep their traceback."""

from __future__ import annotations

import logging

import anyio
import pytest
from sqlalchemy.exc import OperationalError

from broker.web import _every


@pytest.mark.anyio
async def test_a_database_outage_is_logged_once_and_the_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    def seal() -> None:
        rounds.append(len(rounds))
        if len(rounds) <= 5:
            raise OperationalError("UPDATE audit_chain_head ...", {"p": "digest"}, Exception("server closed"))

    caplog.set_level(logging.INFO, logger="broker.web")
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_every, 0.01, seal)
            while len(rounds) < 8:
                await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["periodic job seal failed, database unavailable: server closed",
                        "periodic job seal works again after 5 failed rounds"]
    assert not any(record.exc_info for record in caplog.records)


@pytest.mark.anyio
async def test_any_other_failure_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def purge() -> None:
        raise ValueError("a bug")

    caplog.set_level(logging.INFO, logger="broker.web")
    with anyio.move_on_after(0.1):
        await _every(0.01, purge)
    assert caplog.records and all(record.exc_info for record in caplog.records)
