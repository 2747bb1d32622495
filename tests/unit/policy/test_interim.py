"""The interim policy (until the rule engine): default scopes for users, registered scopes for clients."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.policy import AccessRequest, Subject, Target
from broker.policy.interim import DefaultScopesPolicy

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEMO = Target(id="demo", scopes=frozenset({"read", "write", "admin"}), default_scopes=frozenset({"read", "write"}))
ADMIN = Target(id="broker-admin-api", scopes=frozenset({"admin:read"}), default_scopes=frozenset(), builtin=True)
USER = Subject(kind="user", id="u1")


def decide(subject: Subject, target: Target, requested: set[str] | None):
    return DefaultScopesPolicy().decide(AccessRequest(subject, "c1", target,
                                                      None if requested is None else frozenset(requested), NOW))


@pytest.mark.parametrize("requested,granted", [
    (None, {"read", "write"}), ({"read"}, {"read"}), ({"read", "admin"}, {"read"}), ({"admin"}, None),
])
def test_users_get_at_most_the_default_scopes(requested, granted) -> None:
    decision = decide(USER, DEMO, requested)
    assert decision.allowed is (granted is not None)
    assert decision.scopes == frozenset(granted or ())
    assert decision.rule_ids == ("interim-default-scopes",) and decision.reason


def test_users_never_reach_the_admin_api() -> None:
    assert not decide(USER, ADMIN, {"admin:read"}).allowed


def test_clients_get_only_their_registered_scopes() -> None:
    robot = Subject(kind="client", id="c1", client_scopes=frozenset({"admin:read"}))
    assert decide(robot, ADMIN, None).scopes == {"admin:read"}
    assert not decide(Subject(kind="client", id="c2"), ADMIN, None).allowed
