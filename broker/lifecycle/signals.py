"""Security events from the IdP: Shared Signals (SSF/CAEP/RISC, RFC 8935 push) and Global Token
Revocation (what Okta Universal Logout calls).

Verification is async (the transmitter's JWKS is fetched over HTTP and cached); acting on a
verified event is a database transaction. Nothing is trusted before its signature: the issuer is
looked up from the unverified ``iss`` only to choose the keys, then checked again by the decode.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import httpx
import jwt
from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.config import IdpSettings, SignalIssuer
from broker.federation.errors import InvalidIdToken, UpstreamError
from broker.federation.idtoken import UnverifiedHeader
from broker.federation.jwks import JwksCache, http_fetcher
from broker.lifecycle import offboarding
from broker.storage import grants, users
from broker.storage.models import User

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
END_SESSIONS = {CAEP + "session-revoked", CAEP + "credential-change"}
OFFBOARD = {RISC + "account-disabled", RISC + "account-purged"}
MAX_TOKEN_BYTES = 16_384
# How long each event's jti is remembered; an event older than that is refused, whatever its exp says, so
# no event is ever accepted once its first delivery has been forgotten.
REPLAY_MEMORY = dt.timedelta(days=7)


class SignalError(Exception):
    """A refused event: ``code`` is the RFC 8935 §2.4 error code."""

    def __init__(self, code: str, description: str, status_code: int = 400):
        super().__init__(description)
        self.code, self.description, self.status_code = code, description, status_code


class BadSignature(SignalError):
    """The signature does not verify with the key used (the sender may have re-keyed under the same ``kid``)."""


@dataclass(frozen=True)
class VerifiedSignal:
    """A security event whose signature, issuer, audience and times were checked."""

    sender: SignalIssuer
    claims: Mapping[str, Any]
    remember_until: dt.datetime  # its jti, against replay: until it is too old to be accepted anyway


class SignedEventVerifier:
    def __init__(self, senders: list[SignalIssuer], audience: str, http: httpx.AsyncClient, *, skew: int = 60,
                 clock: Callable[[], float] = time.time):
        self.audience = audience
        self.skew = skew
        self.clock = clock
        self.senders = {s.issuer: s for s in senders}
        self.keys = {s.issuer: JwksCache(http_fetcher(http, s.jwks_uri, s.id, "signal_sender"), idp_id=s.id, ttl=600,
                                         min_refresh_interval=30, clock=clock) for s in senders}

    async def verify(self, unverified_token: str, *, typ: str | None, required: tuple[str, ...]) -> VerifiedSignal:
        if len(unverified_token) > MAX_TOKEN_BYTES or unverified_token.count(".") != 2:
            raise SignalError("invalid_request", "the body is not a signed JWT")
        try:
            header = jwt.get_unverified_header(unverified_token)
            unverified_claims = jwt.decode(unverified_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise SignalError("invalid_request", "the JWT is malformed") from None
        if typ is not None and str(header.get("typ", "")).lower() not in (typ, f"application/{typ}"):
            raise SignalError("invalid_request", f"typ must be {typ}")  # RFC 8417 §2.3: explicit typing
        sender = self.senders.get(str(unverified_claims.get("iss")))
        if sender is None:
            raise SignalError("invalid_issuer", "the issuer is not a configured sender")
        alg = header.get("alg")
        if alg not in sender.algorithms:  # never none or HS*: only the sender's configured algorithms
            raise SignalError("invalid_key", "the signing algorithm is not allowed for this sender")
        claims = await self._verified(sender, UnverifiedHeader(alg=alg, kid=header.get("kid")),
                                      lambda key: self._decode(unverified_token, key, alg, sender, required))
        self._check_replay_window(claims)
        issued = dt.datetime.fromtimestamp(float(claims["iat"]), dt.UTC)
        return VerifiedSignal(sender, claims, issued + REPLAY_MEMORY + dt.timedelta(seconds=self.skew))

    def _check_replay_window(self, claims: Mapping[str, Any]) -> None:
        iat, jti = claims.get("iat"), claims.get("jti")
        if not _numeric_date(iat) or ("exp" in claims and not _numeric_date(claims["exp"])):
            raise SignalError("invalid_request", "iat and exp must be numbers")  # RFC 7519 §2 NumericDate
        if "jti" in claims and (not isinstance(jti, str) or not jti or len(jti) > 256):
            raise SignalError("invalid_request", "jti must be a short string")  # RFC 7519 §4.1.7
        if iat < self.clock() - REPLAY_MEMORY.total_seconds():
            raise SignalError("invalid_request", f"the event is older than {REPLAY_MEMORY.days} days, longer than "
                                                 "its id is remembered against replay")

    def _decode(self, token: str, key: Any, alg: str, sender: SignalIssuer,
                required: tuple[str, ...]) -> dict[str, Any]:
        try:
            return jwt.decode(token, key, algorithms=[alg], audience=self.audience, issuer=sender.issuer,
                              leeway=self.skew, options={"require": ["iss", "aud", "iat", *required]})
        except jwt.InvalidAudienceError:
            raise SignalError("invalid_audience", "the audience is not this broker") from None
        except jwt.InvalidSignatureError:
            raise BadSignature("invalid_key", "the signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise SignalError("invalid_request", f"the JWT was refused ({type(exc).__name__})") from None

    async def _verified(self, sender: SignalIssuer, header: UnverifiedHeader,
                        decode: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """``decode(key)`` with the sender's key; a bad signature refetches its JWKS once (``JwksCache.verified``)."""
        try:
            return await self.keys[sender.issuer].verified(header, decode, BadSignature)
        except InvalidIdToken:
            raise SignalError("invalid_key", "the signing key is not one the sender publishes") from None
        except UpstreamError:
            raise SignalError("invalid_key", "the sender's keys could not be fetched", 503) from None


# ---------------------------------------------------------------- acting on a verified event


def first_delivery(session: Session, signal: VerifiedSignal, purpose: str, now: dt.datetime) -> bool:
    """RFC 8417 §2.2 ``jti``: each event is acted on once, across every instance, and remembered until it is
    older than ``REPLAY_MEMORY`` (plus the clock skew), when it is refused anyway whatever its ``exp``."""
    jti = str(signal.claims.get("jti", ""))
    key = hashlib.sha256(f"{purpose}\0{signal.sender.issuer}\0{jti}".encode()).hexdigest()
    return grants.first_use_of_jti(session, key, purpose, max(signal.remember_until, now))


def _numeric_date(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def subject_users(session: Session, subject: Any, sender: SignalIssuer, idps: list[IdpSettings]) -> list[User]:
    """The broker users a Subject Identifier (RFC 9493: iss_sub, email, opaque, complex) names.

    A sender bound to an IdP (``idp``) names that IdP's users only, in every format: an ``iss_sub`` whose
    ``iss`` is another IdP's names nobody. An unbound sender speaks for every configured IdP.
    """
    if not isinstance(subject, Mapping):
        raise SignalError("invalid_request", "the subject identifier is missing")
    fmt = subject.get("format")
    if fmt == "complex" and isinstance(subject.get("user"), Mapping):
        return subject_users(session, subject["user"], sender, idps)
    if fmt == "iss_sub" and isinstance(subject.get("sub"), str):
        idp = _idp_for(sender, str(subject.get("iss", "")), idps)
        return _by_identity(session, idp, subject["sub"])
    if fmt == "opaque" and isinstance(subject.get("id"), str) and sender.idp:
        return _by_identity(session, sender.idp, subject["id"])
    if fmt == "email" and isinstance(subject.get("email"), str):
        return _by_email(session, subject["email"], sender.idp)
    raise SignalError("invalid_request", f"unsupported subject format {str(fmt)[:40]!r}")


def _idp_for(sender: SignalIssuer, iss: str, idps: list[IdpSettings]) -> str | None:
    """The IdP whose users an ``iss_sub`` subject names, as far as this sender may speak for it."""
    issuers = {idp.id: idp.issuer for idp in idps}
    if sender.idp is not None:
        return sender.idp if iss in (sender.issuer, issuers.get(sender.idp)) else None
    return next((idp_id for idp_id, issuer in issuers.items() if issuer == iss), None)


def _by_identity(session: Session, idp_id: str | None, subject: str) -> list[User]:
    record = users.identity(session, idp_id, subject) if idp_id else None
    user = users.get(session, record.user_id) if record else None
    return [user] if user else []


def _by_email(session: Session, email: str, idp_id: str | None) -> list[User]:
    return users.by_identity_email(session, email, idp_id)


def apply_ssf(session: Session, signal: VerifiedSignal, idps: list[IdpSettings], now: dt.datetime) -> list[str]:
    """Act on each event of a SET; returns what was done, one line per event (also audited)."""
    events = signal.claims.get("events")
    if not isinstance(events, Mapping) or not events:
        raise SignalError("invalid_request", "the SET carries no events")  # RFC 8417 §2.2
    outcomes = []
    for event_type, payload in events.items():
        subject = signal.claims.get("sub_id") or (payload.get("subject") if isinstance(payload, Mapping) else None)
        found = subject_users(session, subject, signal.sender, idps)
        outcomes.append(_act(session, signal, str(event_type), found, now))
    return outcomes


def _act(session: Session, signal: VerifiedSignal, event_type: str, found: list[User], now: dt.datetime) -> str:
    actor, source = f"ssf:{signal.sender.id}", f"ssf:{signal.sender.id}"
    if not found or (event_type not in END_SESSIONS | OFFBOARD):
        why = "unknown subject" if not found else "event type not acted on"
        audit.record(session, "signal.ignored", actor=actor, outcome=Outcome.IGNORED,
                     data={"event_type": event_type, "why": why, "jti": signal.claims.get("jti")})
        return f"{event_type}: ignored ({why})"
    for user in found:
        if event_type in OFFBOARD:
            offboarding.revoke_user(session, user.id, reason=event_type.rsplit("/", 1)[-1], actor=actor, now=now,
                                    source=source)
        else:
            offboarding.revoke_sessions(session, user.id, reason=event_type.rsplit("/", 1)[-1], actor=actor, now=now,
                                        source=source)
    return f"{event_type}: applied to {len(found)} user(s)"


def apply_logout(session: Session, signal: VerifiedSignal, subject: Any, idps: list[IdpSettings],
                 now: dt.datetime) -> int:
    """Global Token Revocation: end every session and token of the subject; returns users affected."""
    found = subject_users(session, subject, signal.sender, idps)
    actor = f"global-logout:{signal.sender.id}"
    for user in found:
        offboarding.revoke_sessions(session, user.id, reason="global token revocation", now=now, actor=actor,
                                    source=actor)
    if not found:
        audit.record(session, "signal.ignored", actor=actor, outcome=Outcome.IGNORED, data={"why": "unknown subject"})
    return len(found)


def record_rejection(session: Session, receiver: str, error: SignalError) -> None:
    """A refused signal changes nothing but this audit event."""
    audit.record(session, "signal.rejected", actor=receiver, outcome=Outcome.REJECTED,
                 data={"error": error.code, "description": error.description})
