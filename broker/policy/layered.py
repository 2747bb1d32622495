"""Which rules govern what: the admin API by client registration, MCP servers by the policy document.

A client gets admin API scopes only when an operator registered it with them
(``broker clients add --scope admin:read``), itself an audited admin action; the policy document
governs every MCP server. Users never reach the admin API through a token.
"""

from __future__ import annotations

from broker.policy.interim import DefaultScopesPolicy
from broker.policy.model import AccessRequest, Decision, Policy

_REGISTRATION = DefaultScopesPolicy()


class AdminApiByRegistration:
    def __init__(self, rules: Policy):
        self.rules = rules

    def decide(self, request: AccessRequest) -> Decision:
        if request.target.builtin:
            if request.subject.kind != "client":
                return Decision.deny("users do not get tokens for the admin API", ("admin-api",))
            decision = _REGISTRATION.decide(request)
            return Decision(decision.allowed, decision.scopes, ("client-registration",), decision.reason)
        return self.rules.decide(request)


class StaticPolicy:
    """A fixed policy as a source (tests and tools): ``current(session)`` ignores the session."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def current(self, session: object) -> Policy:
        return self.policy
