"""Who a grant is for, as the policy engine sees it, and whether that user may still get tokens."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from broker.oauth import cutoff
from broker.oauth.clients import ClientView
from broker.oauth.errors import InvalidGrantError
from broker.policy import AccessRequest, Subject, Target
from broker.registry.servers import Server
from broker.storage import users
from broker.storage.enums import UserStatus
from broker.storage.models import User


def user_subject(session: Session, user: User | users.Account) -> Subject:
    """The policy subject: ``user`` with groups and the claims of their latest sign-in (read here for a
    ``User``; an ``Account`` row from ``active_user`` carries them already)."""
    if isinstance(user, User):
        latest = users.latest_login(session, user.id)
        idp_id, login_claims = (latest.idp_id, latest.claims) if latest else (None, None)
    else:
        idp_id, login_claims = user.login_idp_id, user.login_claims
    return subject_of(user.id, user.email, idp_id, login_claims, users.group_names(session, user.id))


def subject_of(user_id: str, email: str | None, idp_id: str | None, login_claims: Mapping[str, Any] | None,
               groups: list[str]) -> Subject:
    """The policy subject of a user with these groups and the claims of their latest sign-in."""
    claims = dict(login_claims) if login_claims else {}
    amr = claims.get("amr")
    return Subject(kind="user", id=user_id, email=email, idp_id=idp_id, groups=frozenset(groups), claims=claims,
                   acr=claims.get("acr") if isinstance(claims.get("acr"), str) else None,
                   amr=tuple(a for a in amr if isinstance(a, str)) if isinstance(amr, list) else ())


def with_login(subject: Subject, *, acr: str | None, amr: tuple[str, ...]) -> Subject:
    """``subject`` as of another sign-in (an identity assertion's ``acr``/``amr``), for step-up rules."""
    return dataclasses.replace(subject, acr=acr, amr=amr)


def client_subject(client: ClientView | Any) -> Subject:
    """The client as the subject of its own grant (client credentials); ``client.row`` holds its scopes."""
    return Subject(kind="client", id=client.client_id, client_scopes=frozenset(client.row.scopes))


def target(server: Server) -> Target:
    return Target(id=server.id, scopes=frozenset(server.scopes), default_scopes=frozenset(server.default_scopes),
                  tags=frozenset(server.tags), builtin=server.builtin)


def access_request(subject: Subject, client_id: str, server: Server, requested: frozenset[str] | None,
                   now: dt.datetime) -> AccessRequest:
    return AccessRequest(subject=subject, client_id=client_id, target=target(server), requested_scopes=requested,
                         now=now)


def active_user(session: Session, user_id: str, issued_at: dt.datetime | None = None, *,
                iat: int | None = None) -> users.Account:
    """The user's account (``users.account``), if they may still receive tokens; else ``InvalidGrantError``.

    ``issued_at``: when a stored grant (code, refresh-token family) was made; ``iat``: a signed token's.
    """
    return usable(users.account(session, user_id), issued_at, iat)


def usable(user: users.Account | None, issued_at: dt.datetime | None, iat: int | None) -> users.Account:
    """``user``, if they may still receive tokens from a grant made at ``issued_at`` (or a token of ``iat``)."""
    if user is None or user.status != UserStatus.ACTIVE:
        raise InvalidGrantError("the user may no longer sign in")
    if issued_at is not None and user.not_before is not None and issued_at < user.not_before:
        raise InvalidGrantError("the grant predates the user's revocation")
    if iat is not None and cutoff.predates(iat, user.not_before):
        raise InvalidGrantError("the grant predates the user's revocation")
    return user
