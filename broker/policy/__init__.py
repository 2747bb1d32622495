"""Access decisions: who may reach which MCP server with which scopes. Pure: no I/O, no storage.

``Policy.decide(AccessRequest) -> Decision`` is the whole interface the protocol core uses.
The rule engine: a ``PolicyDocument`` of allow and deny rules (``parse_policy`` reads the TOML policy
file, ``dump_policy`` writes it), ``compile(document)`` builds the indexed ``CompiledPolicy`` that
decides and explains. ``broker.policy.simulate`` answers who-can and what-changes questions;
``broker.policy.matrix`` builds the access matrix (subjects x servers) and simulates subjects the broker
does not know yet.
``DefaultScopesPolicy`` (``broker.policy.interim``) is the stand-in until the composition root switches.
Semantics and file format: docs/policy.md.
"""

from broker.policy.checks import PolicyError, Problem, ServerInfo, check_document
from broker.policy.document import ALL, ClaimMatch, Conditions, PolicyDocument, Rule, Subjects, Targets
from broker.policy.engine import CompiledPolicy, compile
from broker.policy.explain import Check, Explanation, RuleTrace
from broker.policy.matrix import (
                                  Cell,
                                  Matrix,
                                  Row,
                                  SubjectChange,
                                  access_matrix,
                                  diff_subjects,
                                  hypothetical,
                                  parse_claims,
                                  subject_rows,
                                  user_row,
)
from broker.policy.model import AccessRequest, Decision, Policy, PolicySource, Subject, Target
from broker.policy.policyfile import dump_policy, parse_policy, read_policy
from broker.policy.simulate import (
                                    Change,
                                    RuleChange,
                                    UserFacts,
                                    WhoCan,
                                    diff_access,
                                    diff_documents,
                                    render_document_diff,
                                    who_can,
)

__all__ = [
    "ALL", "AccessRequest", "Cell", "Change", "Check", "ClaimMatch", "CompiledPolicy", "Conditions", "Decision",
    "Explanation", "Matrix", "Policy", "PolicyDocument", "PolicyError", "PolicySource", "Problem", "Row", "Rule",
    "RuleChange", "RuleTrace", "ServerInfo", "Subject", "SubjectChange", "Subjects", "Target", "Targets",
    "UserFacts", "WhoCan", "access_matrix", "check_document", "compile", "diff_access", "diff_documents",
    "diff_subjects", "dump_policy", "hypothetical", "parse_claims", "parse_policy", "read_policy",
    "render_document_diff", "subject_rows", "user_row", "who_can",
]
