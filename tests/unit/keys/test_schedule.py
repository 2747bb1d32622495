"""The rotation schedule: when a key is published and when it signs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker.keys import schedule

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
GRACE = dt.timedelta(minutes=6)


@dataclass
class Key:
    kid: str
    created_at: dt.datetime
    activates_at: dt.datetime
    retired_at: dt.datetime | None = None


def test_newest_active_key_signs() -> None:
    old = Key("old", T0, T0, retired_at=T0 + HOUR)
    new = Key("new", T0 + HOUR / 2, T0 + HOUR)
    keys = [old, new]
    assert schedule.signing_key(keys, T0 + HOUR / 2).kid == "old"  # new one is only published yet
    assert schedule.signing_key(keys, T0 + HOUR).kid == "new"


def test_pending_key_is_published_before_it_signs() -> None:
    new = Key("new", T0, T0 + HOUR)
    assert schedule.is_published(new, T0, GRACE)
    assert not schedule.is_signing(new, T0)


def test_retired_key_stays_published_for_the_longest_token_lifetime() -> None:
    old = Key("old", T0, T0, retired_at=T0 + HOUR)
    assert schedule.is_published(old, T0 + HOUR + GRACE - dt.timedelta(seconds=1), GRACE)
    assert not schedule.is_published(old, T0 + HOUR + GRACE, GRACE)
    assert [k.kid for k in schedule.published([old], T0 + 2 * HOUR, GRACE)] == []


def test_a_server_with_a_longer_token_lifetime_lengthens_the_publication() -> None:
    settings_longest = schedule.Publication(longest=360, skew=60)  # 300 s tokens plus the skew
    assert settings_longest.grace(None) == settings_longest.grace(120) == dt.timedelta(seconds=360)
    assert settings_longest.grace(3600) == dt.timedelta(seconds=3660)


def test_no_key_signs_before_the_first_activation() -> None:
    assert schedule.signing_key([Key("k", T0, T0 + HOUR)], T0) is None


def test_rotation_retires_every_key_that_would_still_sign() -> None:
    signing = Key("a", T0, T0)
    pending = Key("b", T0, T0 + HOUR)
    retired = Key("c", T0, T0, retired_at=T0)
    assert [k.kid for k in schedule.retirements_for_rotation([signing, pending, retired], T0 + 2 * HOUR)] == ["a", "b"]


def test_an_immediate_rotation_supersedes_a_pending_key() -> None:
    pending = Key("pending", T0, T0 + HOUR)
    for key in schedule.retirements_for_rotation([pending], T0):
        key.retired_at = T0
    urgent = Key("urgent", T0, T0)
    assert schedule.signing_key([pending, urgent], T0 + 2 * HOUR).kid == "urgent"


DAY = dt.timedelta(days=1)


def test_scheduled_rotation_publishes_the_next_key_one_delay_before_it_is_due() -> None:
    current = Key("k0", T0, T0)
    assert schedule.next_activation([current], T0 + DAY - HOUR - dt.timedelta(seconds=1), DAY, HOUR) is None
    assert schedule.next_activation([current], T0 + DAY - HOUR, DAY, HOUR) == T0 + DAY


def test_a_missed_schedule_rotates_at_once_still_one_delay_ahead() -> None:
    current = Key("k0", T0, T0)
    assert schedule.next_activation([current], T0 + 3 * DAY, DAY, HOUR) == T0 + 3 * DAY + HOUR


def test_nothing_is_due_while_a_key_is_pending() -> None:
    keys = [Key("k0", T0, T0, retired_at=T0 + DAY), Key("k1", T0 + DAY - HOUR, T0 + DAY)]
    assert schedule.next_activation(keys, T0 + DAY - HOUR / 2, dt.timedelta(minutes=1), HOUR) is None
    assert schedule.next_activation(keys, T0 + DAY, dt.timedelta(minutes=1), HOUR) == T0 + DAY + HOUR


def test_no_key_no_schedule() -> None:
    assert schedule.next_activation([], T0, DAY, HOUR) is None
