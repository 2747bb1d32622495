"""The access policy as stored and changed: versions, import with a dry run, rollback, explain, who-can.

The policy engine (``broker.policy``) is pure; this module feeds it what the database knows
(servers, users and their groups) and keeps every version. The CLI, the admin API and the console
call these functions, never copies of them.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import audit
from broker.policy import (
    Change,
    CompiledPolicy,
    Explanation,
    PolicyDocument,
    RuleChange,
    ServerInfo,
    UserFacts,
    WhoCan,
    compile,
    diff_access,
    diff_documents,
    dump_policy,
    parse_policy,
    read_policy,
    who_can,
)
from broker.policy.layered import AdminApiByRegistration
from broker.policy.model import AccessRequest, Policy, Subject, Target
from broker.registry.servers import ADMIN_API_ID, Server, admin_api, from_row
from broker.storage import changes, mcp_servers, policies, users
from broker.storage.models import PolicyVersion, UpstreamIdentity, User, utcnow


class UnknownVersion(LookupError):
    pass


def known_servers(session: Session, issuer: str) -> dict[str, ServerInfo]:
    known = {row.id: ServerInfo(frozenset(row.scopes), frozenset(row.tags)) for row in mcp_servers.list_all(session)}
    known[ADMIN_API_ID] = ServerInfo(frozenset(admin_api(issuer).scopes), builtin=True)
    return known


def target_of(server: Server) -> Target:
    return Target(id=server.id, scopes=frozenset(server.scopes), default_scopes=frozenset(server.default_scopes),
                  tags=frozenset(server.tags), builtin=server.builtin)


def current_document(session: Session) -> tuple[int, PolicyDocument]:
    """The version in force and its document (version 0, no rules: everything is denied)."""
    version = policies.current_version(session)
    if version == 0:
        return 0, PolicyDocument()
    row = policies.get(session, version)
    assert row is not None
    return version, _parse_stored(row.document)


def _parse_stored(text: str) -> PolicyDocument:
    return read_policy(text)


@dataclass(frozen=True)
class ImportResult:
    version: int | None  # None for a dry run
    rule_changes: list[RuleChange]
    access_changes: list[Change]


def import_policy(session: Session, text: str, *, issuer: str, author: str, comment: str = "",
                  dry_run: bool = False, now: dt.datetime | None = None) -> ImportResult:
    """Validate ``text`` as a whole (``PolicyError`` lists every problem); store it as the next version."""
    document = parse_policy(text, known_servers(session, issuer))
    before_version, before = current_document(session)
    rule_changes = diff_documents(before, document)
    access = diff_access(compile(before), compile(document), _targets(session), user_facts(session),
                         now=now or utcnow())
    if dry_run:
        return ImportResult(None, rule_changes, access)
    version = _store(session, dump_policy(document), author, comment or "imported")
    audit.record(session, "policy.changed", actor=author, data={
        "before_version": before_version, "after_version": version, "comment": comment,
        "rules": [{"kind": c.kind, "rule_id": c.rule_id} for c in rule_changes],
        "access_changes": len(access)})
    return ImportResult(version, rule_changes, access)


def rollback(session: Session, version: int, *, author: str) -> int:
    """Make an earlier version current again, as a new version (history is never rewritten)."""
    row = policies.get(session, version)
    if row is None:
        raise UnknownVersion(f"no policy version {version}")
    before = policies.current_version(session)
    new = _store(session, row.document, author, f"rollback to version {version}")
    audit.record(session, "policy.rolled_back", actor=author,
                 data={"before_version": before, "after_version": new, "restored_version": version})
    return new


def ensure_initial(session: Session, text: str, author: str) -> int | None:
    """Store ``text`` as version 1 when no policy exists yet (dev mode's starter policy)."""
    if policies.current_version(session) != 0:
        return None
    return _store(session, text, author, "initial policy")


def export(session: Session) -> str:
    version, document = current_document(session)
    text = dump_policy(document)
    header = "# mcp-auth-broker access policy (format: docs/policy.md)"
    versioned = f"# mcp-auth-broker access policy, version {version} (format: docs/policy.md)"
    return text.replace(header, versioned, 1) if text.startswith(header) else f"{versioned}\n\n{text}"


def _store(session: Session, text: str, author: str, comment: str) -> int:
    version = policies.current_version(session) + 1
    policies.add(session, PolicyVersion(version=version, document=text, author=author, comment=comment,
                                        created_at=utcnow()))
    return version


def _targets(session: Session) -> list[Target]:
    return [target_of(from_row(row)) for row in mcp_servers.list_all(session)]


def user_facts(session: Session) -> list[UserFacts]:
    """Every active user as the policy sees them (groups, IdP, latest claims)."""
    return [facts_for(session, user)
            for user in session.scalars(select(User).where(User.status == "active").order_by(User.id))]


def facts_for(session: Session, user: User) -> UserFacts:
    latest = session.scalar(select(UpstreamIdentity).where(UpstreamIdentity.user_id == user.id)
                            .order_by(UpstreamIdentity.last_login_at.desc().nulls_last()).limit(1))
    return UserFacts(id=user.id, email=user.email, idp_id=latest.idp_id if latest else None,
                     groups=frozenset(users.group_names(session, user.id)),
                     claims=dict(latest.claims) if latest else {})


class StoredPolicy:
    """The policy in force, as the protocol core asks for it: ``current(session).decide(request)``.

    Recompiled when the version number in the database changes. The number is read at most once per
    ``RECHECK_SECONDS`` (at once after this process stores a version, ``storage.changes``), so another
    instance's import applies here within a second. The admin API is governed by client registration
    (``AdminApiByRegistration``), everything else by the stored rules.
    """

    RECHECK_SECONDS = 1.0  # how long a policy version loaded by another instance takes to apply here

    def __init__(self) -> None:
        self._version = -1
        self._compiled: CompiledPolicy = compile(PolicyDocument())
        self._lock = threading.Lock()
        self._recheck = changes.Recheck("policy_versions", self.RECHECK_SECONDS)
        self._engine: Any = None

    def compiled(self, session: Session) -> CompiledPolicy:
        token = self._recheck.start()
        engine = session.get_bind()
        if token is None and engine is self._engine:
            return self._compiled
        token = changes.generation("policy_versions") if token is None else token
        version = policies.current_version(session)
        if version != self._version or engine is not self._engine:
            _, document = current_document(session)
            with self._lock:
                self._compiled, self._version, self._engine = compile(document), version, engine
        self._recheck.done(token)
        return self._compiled

    def current(self, session: Session) -> Policy:
        return AdminApiByRegistration(self.compiled(session))


def explain(session: Session, policy: CompiledPolicy, user: User, server: Server, *,
            client_id: str | None = None) -> Explanation:
    facts = facts_for(session, user)
    subject = Subject(kind="user", id=facts.id, email=facts.email, idp_id=facts.idp_id, groups=facts.groups,
                      claims=facts.claims)
    request = AccessRequest(subject=subject, client_id=client_id or "", target=target_of(server),
                            requested_scopes=None, now=utcnow())
    return policy.explain(request, any_client=client_id is None, any_login=True)


def who_can_reach(session: Session, policy: CompiledPolicy, server: Server) -> WhoCan:
    return who_can(policy, target_of(server), user_facts(session), now=utcnow())



