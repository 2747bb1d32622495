"""``audit_events.outcome``: how the action an event records ended (members compare equal to the stored strings)."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCESS = "success"  # the default: the change was made
    ALLOWED = "allowed"  # a policy decision that allowed
    DENIED = "denied"  # refused by policy or by a check of the request (the console's denials)
    REJECTED = "rejected"  # malformed or unauthenticated input (a SCIM request, a security signal)
    IGNORED = "ignored"  # understood, but nothing to do (a signal about an unknown subject)
    REVOKED = "revoked"  # access ended: tokens, families, sessions, users
    FAILURE = "failure"  # an upstream call that did not succeed (revocation at the IdP)
