"""Sign-in (OpenID Connect) as a built-in target: every user, only the OIDC scopes asked for, never a client."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.oauth.subjects import target
from broker.policy import AccessRequest, Decision, Subject
from broker.policy.layered import SIGN_IN_TARGET, AdminApiByRegistration
from broker.registry import servers

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIGN_IN = target(servers.userinfo("https://broker.example"))
USER = Subject(kind="user", id="u1")


class DenyAll:
    """An empty rule set: the MCP servers' policy must not matter for sign-in."""

    def decide(self, request: AccessRequest) -> Decision:
        return Decision.deny("no rule")


def decide(subject: Subject, requested: set[str] | None) -> Decision:
    request = AccessRequest(subject, "c1", SIGN_IN, None if requested is None else frozenset(requested), NOW)
    return AdminApiByRegistration(DenyAll()).decide(request)


def test_the_registry_and_the_policy_agree_on_the_sign_in_target() -> None:
    assert servers.USERINFO_ID == SIGN_IN_TARGET and SIGN_IN.builtin
    assert SIGN_IN.scopes == {"openid", "profile", "email"}


@pytest.mark.parametrize("requested,granted", [
    (None, {"openid"}), ({"openid"}, {"openid"}), ({"openid", "email", "profile"}, {"openid", "email", "profile"}),
    ({"openid", "tools:read"}, {"openid"}),
])
def test_every_user_may_sign_in_with_the_scopes_asked_for(requested, granted) -> None:
    decision = decide(USER, requested)
    assert decision.allowed and decision.scopes == frozenset(granted)
    assert decision.rule_ids == ("sign-in",)


def test_nothing_known_asked_for_is_denied() -> None:
    assert not decide(USER, {"tools:read"}).allowed


def test_a_client_acting_for_itself_never_signs_in() -> None:
    robot = Subject(kind="client", id="c1", client_scopes=frozenset({"openid"}))
    assert not decide(robot, {"openid"}).allowed


def test_the_admin_api_is_still_closed_to_users() -> None:
    admin = target(servers.admin_api("https://broker.example"))
    request = AccessRequest(USER, "c1", admin, frozenset({"admin:read"}), NOW)
    assert not AdminApiByRegistration(DenyAll()).decide(request).allowed
