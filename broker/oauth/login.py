"""From a validated authorization request to a code: upstream sign-in, policy, consent.

A ``PendingAuthorization`` row carries the request across the browser's trip to the IdP.
It is bound to the browser that started it (a cookie whose SHA-256 is stored), found at the
callback by the upstream ``state`` (stored as a digest), and advanced once per step by a
conditional update, so a replayed callback or consent does nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.config import Settings
from broker.federation.identity import Identity
from broker.keys.crypto import Encryptor, upstream_verifier_aad
from broker.oauth import codes, oidc_claims, provisioning, redirects, secrets, subjects
from broker.oauth.authorize import AuthorizationRequest, redirect_location
from broker.oauth.errors import AccessDeniedError, AuthorizationPageError, OAuth2Error
from broker.oauth.tokens import scope_string
from broker.policy import Decision, PolicySource
from broker.registry import servers
from broker.storage import clients, grants, users
from broker.storage.enums import ClientKind, SignInStatus, UserStatus
from broker.storage.models import Consent, User

NOT_ALLOWED = "access to this MCP server is not allowed"  # the user sees why on the broker's page, not the client


@dataclass(frozen=True)
class UpstreamStart:
    pending_id: str
    state: str
    nonce: str
    code_challenge: str


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class ConsentNeeded:
    pending_id: str


@dataclass(frozen=True)
class ConsentView:
    """What the consent page shows (the CIMD draft: the redirect host, and a warning for loopback-only clients).

    ``client_host`` is set for CIMD clients: the host serving their document is the only verified part of
    who they are (their ``client_name`` is whatever the document says).
    """

    pending_id: str
    client_name: str
    client_id: str
    client_kind: str
    client_host: str | None
    redirect_host: str
    loopback_only: bool
    server_name: str
    server_resource: str
    scopes: tuple[tuple[str, str], ...]  # (scope, description)
    sign_in: bool = False  # OpenID Connect sign-in: no MCP server, the user's identity only


class LoginFlow:
    def __init__(self, settings: Settings, encryptor: Encryptor, policy: PolicySource, csrf_key: bytes):
        self.issuer = settings.issuer
        self.login_timeout = dt.timedelta(seconds=settings.authorization.login_timeout)
        self.code_lifetime = settings.tokens.authorization_code_lifetime
        self.encryptor = encryptor
        self.policy = policy
        self.csrf_key = csrf_key
        self.linked_idps = frozenset(settings.federation.link_by_verified_email)
        self.keeps_refresh_tokens = {idp.id for idp in settings.idps if idp.store_refresh_token}
        self.checks_upstream = {idp.id for idp in settings.idps if idp.check_upstream_on_refresh}

    # ---------------------------------------------------------------- to the IdP and back

    def begin(self, session: Session, request: AuthorizationRequest, idp_id: str, browser: str,
              now: dt.datetime) -> UpstreamStart:
        """Record the request and go straight to ``idp_id``."""
        pending_id = self.hold(session, request, browser, now)
        return self.start_upstream(session, pending_id, idp_id, browser, now)

    def hold(self, session: Session, request: AuthorizationRequest, browser: str, now: dt.datetime) -> str:
        """Record a validated request while the user picks an identity provider; returns its id."""
        pending_id = secrets.new_token()[:36]
        grants.hold_pending(
            session, id=pending_id, browser_hash=secrets.digest(browser), status=SignInStatus.CHOOSE,
            client_id=request.client.client_id, redirect_uri=request.redirect_uri, resource=request.server.resource,
            server_id=request.server.id, requested_scope=" ".join(sorted(request.requested_scopes or ())),
            state=request.state, code_challenge=request.code_challenge, code_challenge_method="S256",
            nonce=request.nonce, idp_id="", upstream_state_hash=secrets.digest(secrets.new_token()),
            upstream_nonce="", upstream_verifier_encrypted=b"", oidc_scope=oidc_claims.stored(request.oidc_scopes),
            prompt=" ".join(sorted(request.prompt))[:64] or None, dpop_jkt=request.dpop_jkt, created_at=now,
            expires_at=now + self.login_timeout)
        return pending_id

    def start_upstream(self, session: Session, pending_id: str | None, idp_id: str, browser: str | None,
                       now: dt.datetime) -> UpstreamStart:
        """Send a held request to ``idp_id`` with the broker's own state, nonce and PKCE (never the client's)."""
        pending = grants.pending(session, pending_id) if pending_id else None
        if pending is None or pending.status != SignInStatus.CHOOSE or now >= pending.expires_at:
            raise AuthorizationPageError("Sign-in expired", "Start again from your application.")
        self._check_browser(pending, browser)
        if not grants.advance_pending(session, pending.id, SignInStatus.CHOOSE, SignInStatus.LOGIN):
            raise AuthorizationPageError("Sign-in already started", "Start again from your application.")
        state, nonce, verifier = secrets.new_token(), secrets.new_token(), secrets.new_token()
        sealed = self.encryptor.encrypt(verifier.encode(), upstream_verifier_aad(pending.id))
        grants.update_pending(session, pending.id, idp_id=idp_id, upstream_state_hash=secrets.digest(state),
                              upstream_nonce=nonce, upstream_verifier_encrypted=sealed)
        return UpstreamStart(pending.id, state, nonce, _s256(verifier))

    def claim_callback(self, session: Session, idp_id: str, state: str | None, browser: str | None,
                       now: dt.datetime) -> tuple[grants.Pending, str]:
        """The pending authorization this callback answers, and its upstream PKCE verifier; once only."""
        pending = grants.pending_by_upstream_state(session, secrets.digest(state)) if state else None
        if pending is None or pending.idp_id != idp_id:  # also: a response from IdP A at IdP B's callback
            raise AuthorizationPageError("Sign-in not recognised", "This sign-in response does not belong to a "
                                         "sign-in started here. Start again from your application.")
        self._check_browser(pending, browser)
        if now >= pending.expires_at:
            raise AuthorizationPageError("Sign-in expired", "The sign-in took too long. Start again from your "
                                         "application.")
        if not grants.advance_pending(session, pending.id, SignInStatus.LOGIN, SignInStatus.CALLBACK):
            raise AuthorizationPageError("Sign-in already used", "This sign-in response was already used. Start "
                                         "again from your application.")
        verifier = self.encryptor.decrypt(pending.upstream_verifier_encrypted,
                                          upstream_verifier_aad(pending.id)).decode()
        return pending, verifier

    def fail_by_id(self, session: Session, pending_id: str, error: OAuth2Error) -> Redirect:
        return self.fail(session, self._pending(session, pending_id), error)

    def complete_by_id(self, session: Session, pending_id: str, identity: Identity,
                       now: dt.datetime) -> Redirect | ConsentNeeded:
        return self.complete(session, self._pending(session, pending_id), identity, now)

    def fail(self, session: Session, pending: grants.Pending, error: OAuth2Error,
             decision: Decision | None = None) -> Redirect:
        """End the sign-in with ``error``; the one event that says it was refused (with the policy's reasons
        when the policy refused it: the audit log's denials show them)."""
        self._settle(session, pending, SignInStatus.FAILED)
        why = {} if decision is None else {"rule_ids": list(decision.rule_ids), "reason": decision.reason}
        audit.record(session, "authorization.failed", actor=pending.client_id, user_id=pending.user_id,
                     client_id=pending.client_id, server_id=pending.server_id, outcome=Outcome.DENIED,
                     data={"error": error.error, "description": error.description, "idp": pending.idp_id or None,
                           **why})
        return Redirect(redirect_location(pending.redirect_uri, self.issuer, pending.state, error=error.error,
                                          error_description=error.description or None))

    def complete(self, session: Session, pending: grants.Pending, identity: Identity,
                 now: dt.datetime) -> Redirect | ConsentNeeded:
        """A verified upstream login: provision the user, ask policy, then consent or a code."""
        if identity.idp_id not in self.keeps_refresh_tokens:
            identity = dataclasses.replace(identity, upstream_refresh_token=None)
        user = provisioning.upsert_user(session, identity, self.encryptor, now, self.linked_idps)
        pending = pending._replace(user_id=user.id)  # written once, with the outcome (_settle)
        audit.record(session, "login.success", actor=f"idp:{identity.idp_id}", user_id=user.id,
                     client_id=pending.client_id, server_id=pending.server_id,
                     data={"idp": identity.idp_id, "acr": identity.acr, "amr": list(identity.amr),
                           "groups": sorted(identity.groups), **self._upstream_check_data(identity)})
        if user.status != UserStatus.ACTIVE:
            return self.fail(session, pending, AccessDeniedError("the user may not sign in"))
        server = servers.get(session, pending.server_id, self.issuer)
        if server is None or not server.enabled:
            return self.fail(session, pending, AccessDeniedError("the MCP server is no longer available"))
        requested = frozenset(pending.requested_scope.split()) or None
        decision = self.policy.current(session).decide(
            subjects.access_request(subjects.user_subject(session, user), pending.client_id, server, requested, now))
        audit.record(session, "authorization.decision", actor=pending.client_id, user_id=user.id,
                     client_id=pending.client_id, server_id=server.id,
                     outcome=Outcome.ALLOWED if decision.allowed else Outcome.DENIED,
                     data={"rule_ids": list(decision.rule_ids), "reason": decision.reason,
                           "scopes": sorted(decision.scopes), "requested": sorted(requested or ())})
        if not decision.allowed:
            return self.fail(session, pending, AccessDeniedError(NOT_ALLOWED), decision)
        pending = pending._replace(
            granted_scope=scope_string(decision.scopes), acr=identity.acr,
            auth_time=dt.datetime.fromtimestamp(identity.auth_time, dt.UTC) if identity.auth_time else now)
        if self._consented(session, pending, decision.scopes):
            return self._issue_code(session, pending, user, now)
        self._settle(session, pending, SignInStatus.CONSENT)
        return ConsentNeeded(pending.id)

    def _upstream_check_data(self, identity: Identity) -> dict[str, bool]:
        """For an IdP with check_upstream_on_refresh: whether this sign-in brought what the check needs."""
        if identity.idp_id not in self.checks_upstream:
            return {}
        return {"upstream_refresh_token": identity.upstream_refresh_token is not None}

    # ---------------------------------------------------------------- consent

    def csrf_token(self, pending_id: str, browser: str) -> str:
        mac = hmac.new(self.csrf_key, f"consent\0{pending_id}\0{browser}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def awaiting_consent(self, session: Session, pending_id: str | None, browser: str | None,
                         now: dt.datetime) -> grants.Pending:
        pending = grants.pending(session, pending_id) if pending_id else None
        if pending is None or pending.status != SignInStatus.CONSENT:
            raise AuthorizationPageError("Nothing to approve", "There is no request waiting for your approval. "
                                         "Start again from your application.", status_code=404)
        self._check_browser(pending, browser)
        if now >= pending.expires_at:
            raise AuthorizationPageError("Request expired", "The request took too long. Start again from your "
                                         "application.")
        return pending

    def consent_view(self, session: Session, pending_id: str | None, browser: str | None,
                     now: dt.datetime) -> ConsentView:
        pending = self.awaiting_consent(session, pending_id, browser, now)
        client = clients.get(session, pending.client_id)
        server = servers.get(session, pending.server_id, self.issuer)
        if client is None or server is None:
            raise AuthorizationPageError("Request expired", "The application or MCP server no longer exists.")
        uris = client.redirect_uris or []
        return ConsentView(
            pending_id=pending.id, client_name=client.name, client_id=client.id, client_kind=client.kind,
            client_host=urlsplit(client.id).netloc if client.kind == ClientKind.CIMD else None,
            redirect_host=urlsplit(pending.redirect_uri).netloc or pending.redirect_uri,
            loopback_only=bool(uris) and all(redirects.is_loopback(u) for u in uris),
            server_name=server.name, server_resource=server.resource,
            scopes=tuple((s, server.scopes.get(s, "")) for s in sorted((pending.granted_scope or "").split())),
            sign_in=server.id == servers.USERINFO_ID)

    def decide(self, session: Session, pending_id: str | None, browser: str | None, csrf: str | None,
               approve: bool, now: dt.datetime) -> Redirect:
        pending = self.awaiting_consent(session, pending_id, browser, now)
        assert browser is not None
        if not csrf or not hmac.compare_digest(csrf, self.csrf_token(pending.id, browser)):
            raise AuthorizationPageError("Form expired", "The approval form was not valid (missing or stale "
                                         "security token). Start again from your application.", status_code=403)
        if not grants.advance_pending(session, pending.id, SignInStatus.CONSENT, SignInStatus.DECIDING):
            raise AuthorizationPageError("Already decided", "This request was already answered.")
        if not approve:
            return self.fail(session, pending, AccessDeniedError("the user denied the request"))
        self._remember_consent(session, pending, now)
        user = users.get(session, pending.user_id) if pending.user_id else None
        assert user is not None
        return self._issue_code(session, pending, user, now)

    # ---------------------------------------------------------------- helpers

    def _pending(self, session: Session, pending_id: str) -> grants.Pending:
        pending = grants.pending(session, pending_id)
        if pending is None:
            raise AuthorizationPageError("Sign-in not recognised", "Start again from your application.")
        return pending

    def _check_browser(self, pending: grants.Pending, browser: str | None) -> None:
        # RFC 9700 §4.7: the response must reach the browser that made the request (login CSRF).
        if not browser or not hmac.compare_digest(secrets.digest(browser), pending.browser_hash):
            raise AuthorizationPageError("Sign-in not recognised", "This sign-in was started in another browser "
                                         "or its cookie was lost. Start again from your application.", 403)

    def _consented(self, session: Session, pending: grants.Pending, granted: frozenset[str]) -> bool:
        if "consent" in (pending.prompt or "").split():
            return False  # OIDC Core §3.1.2.1: prompt=consent asks again, trusted client or not (docs/decisions)
        client = clients.get(session, pending.client_id)
        if client is not None and client.trusted:
            return True
        assert pending.user_id is not None
        consent = grants.consent(session, pending.user_id, pending.client_id, pending.server_id)
        return consent is not None and granted <= set(consent.scopes)

    def _remember_consent(self, session: Session, pending: grants.Pending, now: dt.datetime) -> None:
        assert pending.user_id is not None
        granted = set((pending.granted_scope or "").split())
        consent = grants.consent(session, pending.user_id, pending.client_id, pending.server_id)
        if consent is None:
            grants.add(session, Consent(user_id=pending.user_id, client_id=pending.client_id,
                                        server_id=pending.server_id, scopes=sorted(granted), granted_at=now))
        else:
            consent.scopes, consent.granted_at = sorted(granted | set(consent.scopes)), now

    def _issue_code(self, session: Session, pending: grants.Pending, user: User | users.Account,
                    now: dt.datetime) -> Redirect:
        code = codes.issue(session, client_id=pending.client_id, user_id=user.id, redirect_uri=pending.redirect_uri,
                           resource=pending.resource, scope=pending.granted_scope or "",
                           code_challenge=pending.code_challenge, nonce=pending.nonce, auth_time=pending.auth_time,
                           acr=pending.acr, oidc_scope=pending.oidc_scope, dpop_jkt=pending.dpop_jkt, now=now,
                           lifetime=self.code_lifetime)
        self._settle(session, pending, SignInStatus.DONE)
        return Redirect(redirect_location(pending.redirect_uri, self.issuer, pending.state, code=code))

    @staticmethod
    def _settle(session: Session, pending: grants.Pending, status: str) -> None:
        """Write where a sign-in ended (failed, awaiting consent, done) with what it established."""
        grants.update_pending(session, pending.id, status=status, user_id=pending.user_id,
                              granted_scope=pending.granted_scope, auth_time=pending.auth_time, acr=pending.acr)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
