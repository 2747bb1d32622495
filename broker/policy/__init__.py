"""Access decisions: who may reach which MCP server with which scopes. Pure: no I/O, no storage.

``Policy.decide(AccessRequest) -> Decision`` is the whole interface. Until the rule engine
lands (issue 5), ``DefaultScopesPolicy`` grants every subject an enabled server's default scopes.
"""

from broker.policy.model import AccessRequest, Decision, Policy, Subject, Target

__all__ = ["AccessRequest", "Decision", "Policy", "Subject", "Target"]
