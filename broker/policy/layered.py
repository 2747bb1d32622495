"""Which rules govern what: the built-in targets by fixed rules, MCP servers by the policy document.

A client gets admin API scopes only when an operator registered it with them
(``broker clients add --scope admin:read``), itself an audited admin action; the policy document
governs every MCP server. Users never reach the admin API through a token.
Sign-in (OpenID Connect, ``SIGN_IN_TARGET``) reaches no MCP server: every active user may sign in
to any client, with the OIDC scopes asked for; clients acting for themselves never may.
"""

from __future__ import annotations

from broker.policy.interim import DefaultScopesPolicy
from broker.policy.model import AccessRequest, Decision, Policy

SIGN_IN_TARGET = "broker-userinfo"  # the target of an OIDC sign-in without a resource (its audience: /userinfo)
SIGN_IN_DEFAULT_SCOPES = frozenset({"openid"})
_REGISTRATION = DefaultScopesPolicy()


class AdminApiByRegistration:
    def __init__(self, rules: Policy):
        self.rules = rules

    def decide(self, request: AccessRequest) -> Decision:
        if request.target.builtin and request.target.id == SIGN_IN_TARGET:
            return _sign_in(request)
        if request.target.builtin:
            if request.subject.kind != "client":
                return Decision.deny("users do not get tokens for the admin API", ("admin-api",))
            decision = _REGISTRATION.decide(request)
            return Decision(decision.allowed, decision.scopes, ("client-registration",), decision.reason)
        return self.rules.decide(request)

    def needs_step_up(self, request: AccessRequest) -> bool:
        """Whether a stronger sign-in would allow what ``decide`` denies (never for built-in targets)."""
        step_up = getattr(self.rules, "needs_step_up", None)
        return not request.target.builtin and step_up is not None and bool(step_up(request))


def _sign_in(request: AccessRequest) -> Decision:
    if request.subject.kind != "user":
        return Decision.deny("only users sign in", ("sign-in",))  # a client has no identity to release
    wanted = request.requested_scopes if request.requested_scopes is not None else SIGN_IN_DEFAULT_SCOPES
    granted = frozenset(wanted) & request.target.scopes
    if not granted:
        return Decision.deny("no requested sign-in scope is known", ("sign-in",))
    return Decision(True, granted, ("sign-in",), f"sign-in: granted {' '.join(sorted(granted))}")


class StaticPolicy:
    """A fixed policy as a source (tests and tools): ``current(session)`` ignores the session."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def current(self, session: object) -> Policy:
        return self.policy

    async def current_hot(self, tx: object) -> Policy:
        return self.policy
