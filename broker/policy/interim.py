"""The stand-in policy until the rule engine (issue 5): default scopes for users, registered scopes for clients.

- A user may reach any enabled MCP server, with at most that server's default scopes.
- A client acting for itself (client credentials) gets at most the scopes it was registered with,
  and only those the server defines: so no client reaches the admin API unless an operator
  registered it with admin scopes.
"""

from __future__ import annotations

from broker.policy.model import AccessRequest, Decision

RULE_ID = "interim-default-scopes"


class DefaultScopesPolicy:
    def decide(self, request: AccessRequest) -> Decision:
        target, subject = request.target, request.subject
        if subject.kind == "user":
            if target.builtin:
                return Decision.deny("users do not get tokens for the admin API", (RULE_ID,))
            allowed = target.default_scopes
        else:
            allowed = subject.client_scopes & target.scopes
        wanted = request.requested_scopes if request.requested_scopes is not None else allowed
        granted = frozenset(wanted) & allowed
        if not granted:
            return Decision.deny(f"no requested scope of {target.id} is allowed", (RULE_ID,))
        return Decision(True, granted, (RULE_ID,), f"{target.id}: granted {' '.join(sorted(granted))}")
