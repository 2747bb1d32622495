"""The fixed values of stored columns, one ``StrEnum`` per column.

Code writes and compares these members, never the bare strings. The database holds the members' strings
(a member is the string it names, so nothing is migrated), and rows read those strings back: compare a
column with a member (``row.status == UserStatus.ACTIVE``), or convert (``UserStatus(row.status)``) where a
member itself is wanted.
"""

from __future__ import annotations

from enum import StrEnum


class UserStatus(StrEnum):
    """``users.status``."""

    ACTIVE = "active"
    OFFBOARDED = "offboarded"  # cut off everywhere until restored


class ClientKind(StrEnum):
    """``clients.kind``: how the client came to be known."""

    PREREGISTERED = "preregistered"  # by an operator (the CLI, the console, the admin API, broker dev)
    DCR = "dcr"  # dynamic client registration (RFC 7591)
    CIMD = "cimd"  # its client_id is the URL of a Client ID Metadata Document


class ClientStatus(StrEnum):
    """``clients.status``."""

    ACTIVE = "active"
    PENDING = "pending"  # registered dynamically, waiting for an operator's approval
    DISABLED = "disabled"  # no new tokens; its tokens introspect inactive


class RevocationKind(StrEnum):
    """``revocations.kind``: what a revocation feed entry names."""

    TOKEN = "token"  # one access token, by jti
    FAMILY = "family"  # a refresh-token family
    USER = "user"  # everything of a user issued before not_before
    CLIENT = "client"  # everything of a client


class SignInStatus(StrEnum):
    """``pending_authorizations.status``: the step a sign-in is at; each step is taken once."""

    CHOOSE = "choose"  # the IdP picker page is showing
    LOGIN = "login"  # sent to the upstream IdP
    CALLBACK = "callback"  # the IdP's callback is being handled
    CONSENT = "consent"  # the consent page is showing
    DECIDING = "deciding"  # the consent answer is being handled
    DONE = "done"  # a code was issued
    FAILED = "failed"
