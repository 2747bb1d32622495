"""The access policy as stored and changed: versions, import with a dry run, rollback, explain, who-can.

The policy engine (``broker.policy``) is pure; this module feeds it what the database knows
(servers, users and their groups) and keeps every version. The CLI, the admin API and the console
call these functions, never copies of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker import audit
from broker.policy import (
    Change,
    CompiledPolicy,
    Explanation,
    Matrix,
    PolicyDocument,
    Row,
    RuleChange,
    ServerInfo,
    SubjectChange,
    UserFacts,
    WhoCan,
    access_matrix,
    compile,
    diff_access,
    diff_documents,
    diff_subjects,
    dump_policy,
    parse_policy,
    read_policy,
    subject_rows,
    user_row,
    who_can,
)
from broker.policy.layered import AdminApiByRegistration
from broker.policy.model import AccessRequest, Policy, Target
from broker.registry.servers import ADMIN_API_ID, Server, admin_api, from_row
from broker.storage import changes, directory, mcp_servers, policies, users
from broker.storage.enums import UserStatus
from broker.storage.hot import Tx
from broker.storage.models import PolicyVersion, utcnow
from broker.storage.users import UserRow


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
    """What a policy import changes (or would change: ``version`` is None for a dry run).

    ``access_changes``: each known user (signed in or provisioned through SCIM) who gains or loses a
    server or scope; ``subject_changes``: the same for everyone, each group and the other subjects the
    rules name, so a dry run says something before anyone has signed in; ``known_users``: how many active
    users the broker knew to check. ``base_version`` is the version the change was computed against and
    ``review`` binds a dry run to its document (``review_digest``).
    """

    version: int | None
    rule_changes: list[RuleChange]
    access_changes: list[Change]
    subject_changes: list[SubjectChange]
    known_users: int
    base_version: int
    review: str


def known_users_note(result: ImportResult) -> str:
    """One sentence on the users a change was checked against, plain when there were none."""
    if result.known_users == 0:
        return ("the broker knows no users yet (users appear at their first sign-in, or when an IdP provisions "
                "them through SCIM), so no user is listed: the changes are shown by group and other subjects")
    if not result.access_changes:
        return f"none of the {result.known_users} known users gains or loses access"
    return f"{len(result.access_changes)} change(s) for the {result.known_users} known users"


class StaleReview(ValueError):
    """An apply whose document or base version is not the one the reviewed dry run showed."""


def review_digest(base_version: int, text: str) -> str:
    """Binds a dry run to what it showed: the version it was computed against and the exact document.

    Applying with a digest is refused unless both still hold, so what is applied is what was reviewed.
    Line ends do not count: a browser sends every form field back with CR LF.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(f"policy-review\0{base_version}\0{lines}".encode()).hexdigest()


def import_policy(session: Session, text: str, *, issuer: str, author: str, comment: str = "",
                  dry_run: bool = False, now: dt.datetime | None = None, reviewed: str | None = None) -> ImportResult:
    """Validate ``text`` as a whole (``PolicyError`` lists every problem); store it as the next version.

    ``reviewed``: the digest of the dry run this apply follows; ``StaleReview`` unless it still matches.
    """
    document = parse_policy(text, known_servers(session, issuer))
    result = _changes(session, text, document, now, reviewed)
    if dry_run:
        return result
    version = _store(session, dump_policy(document), author, comment or "imported")
    audit.record(session, "policy.changed", actor=author, data={
        "before_version": result.base_version, "after_version": version, "comment": comment,
        "rules": [{"kind": c.kind, "rule_id": c.rule_id} for c in result.rule_changes],
        "access_changes": len(result.access_changes), "reviewed": reviewed is not None})
    return dataclasses.replace(result, version=version)


def _changes(session: Session, text: str, document: PolicyDocument, now: dt.datetime | None,
             reviewed: str | None) -> ImportResult:
    """What making ``document`` (written as ``text``) the policy would change; checks ``reviewed`` first."""
    before_version, before = current_document(session)
    digest = review_digest(before_version, text)
    if reviewed is not None and not hmac.compare_digest(reviewed, digest):
        raise StaleReview(f"the policy is now version {before_version}, or the document differs from the one "
                          "reviewed: review the changes again")
    old, new, when, targets = compile(before), compile(document), now or utcnow(), _targets(session)
    facts = user_facts(session)
    rows = subject_rows(PolicyDocument(before.rules + document.rules))
    return ImportResult(None, diff_documents(before, document), diff_access(old, new, targets, facts, now=when),
                        diff_subjects(old, new, targets, rows, now=when), len(facts), before_version, digest)


def review_rollback(session: Session, version: int, *, now: dt.datetime | None = None) -> tuple[str, ImportResult]:
    """What rolling back to ``version`` would change (its document is restored as stored, unchecked), and the
    document: ``rollback(..., reviewed=result.review)`` applies exactly this."""
    row = policies.get(session, version)
    if row is None:
        raise UnknownVersion(f"no policy version {version}")
    return row.document, _changes(session, row.document, _parse_stored(row.document), now, None)


def rollback(session: Session, version: int, *, author: str, reviewed: str | None = None) -> int:
    """Make an earlier version current again, as a new version (history is never rewritten).

    ``reviewed``: the digest of ``review_rollback``'s answer; ``StaleReview`` unless it still matches."""
    row = policies.get(session, version)
    if row is None:
        raise UnknownVersion(f"no policy version {version}")
    before = policies.current_version(session)
    if reviewed is not None and not hmac.compare_digest(reviewed, review_digest(before, row.document)):
        raise StaleReview(f"the policy is now version {before}: review the rollback again")
    new = _store(session, row.document, author, f"rollback to version {version}")
    audit.record(session, "policy.rolled_back", actor=author,
                 data={"before_version": before, "after_version": new, "restored_version": version,
                       "reviewed": reviewed is not None})
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
    """Every active user as the policy sees them (groups, IdP, latest claims): signed in or SCIM-provisioned."""
    return [_facts(entry) for entry in directory.users(session, active_only=True)]


def _facts(entry: directory.DirectoryUser) -> UserFacts:
    return UserFacts(id=entry.id, email=entry.email, idp_id=entry.idp_id, groups=frozenset(entry.groups),
                     claims=entry.claims)


def facts_for(session: Session, user: UserRow) -> UserFacts:
    latest = users.latest_login(session, user.id)
    return UserFacts(id=user.id, email=user.email, idp_id=latest.idp_id if latest else None,
                     groups=frozenset(users.group_names(session, user.id)),
                     claims=dict(latest.claims or {}) if latest else {})


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
        token = changes.generation("policy_versions") if token is None else token  # before the read
        version = policies.current_version(session)
        if version != self._version or engine is not self._engine:
            _, document = current_document(session)
            self._keep(document, version, engine)
        self._recheck.done(token)
        return self._compiled

    async def compiled_hot(self, tx: Tx) -> CompiledPolicy:
        """``compiled`` in a transaction of the hot lane."""
        token = self._recheck.start()
        if token is None and tx.cache_key is self._engine:
            return self._compiled
        token = changes.generation("policy_versions") if token is None else token  # before the read
        version = await policies.current_version_hot(tx)
        if version != self._version or tx.cache_key is not self._engine:
            text = await policies.document_hot(tx, version) if version else None
            self._keep(_parse_stored(text) if text is not None else PolicyDocument(), version, tx.cache_key)
        self._recheck.done(token)
        return self._compiled

    def _keep(self, document: PolicyDocument, version: int, engine: Any) -> None:
        with self._lock:
            self._compiled, self._version, self._engine = compile(document), version, engine

    def current(self, session: Session) -> Policy:
        return AdminApiByRegistration(self.compiled(session))

    async def current_hot(self, tx: Tx) -> Policy:
        return AdminApiByRegistration(await self.compiled_hot(tx))


def explain(session: Session, policy: CompiledPolicy, user: UserRow, server: Server, *,
            client_id: str | None = None) -> Explanation:
    return explain_facts(policy, facts_for(session, user), server, client_id=client_id)


def explain_facts(policy: CompiledPolicy, facts: UserFacts, server: Server, *,
                  client_id: str | None = None) -> Explanation:
    """The decision for these facts (a known user's, or a person not known yet: ``policy.hypothetical``)."""
    request = AccessRequest(subject=facts.subject(), client_id=client_id or "", target=target_of(server),
                            requested_scopes=None, now=utcnow())
    return policy.explain(request, any_client=client_id is None, any_login=True)


def who_can_reach(session: Session, policy: CompiledPolicy, server: Server) -> WhoCan:
    return who_can(policy, target_of(server), user_facts(session), now=utcnow())


# -------------------------------------------------------------------- the access matrix


@dataclass(frozen=True)
class MatrixFilter:
    """Which part of the matrix to show. ``server`` / ``tag`` pick columns (enabled servers only);
    ``group`` keeps the group rows whose name contains it; ``user`` adds rows for the users whose email,
    name or id matches (at most ``MAX_USERS``). With ``group`` or ``user`` given, the other subject rows
    (everyone, claims, IdPs) are left out."""

    server: str = ""
    tag: str = ""
    group: str = ""
    user: str = ""

    MAX_USERS = 200


def matrix(session: Session, policy: CompiledPolicy, where: MatrixFilter, *, now: dt.datetime | None = None,
           rows: slice | None = None) -> tuple[Matrix, int]:
    """Subjects x MCP servers under the policy in force: what each could get, and which rules decide it; and how
    many subjects the filter finds. ``rows``: compute only these (a page) of them."""
    servers = [target_of(from_row(row)) for row in mcp_servers.list_all(session) if row.enabled
               and (not where.server or row.id == where.server) and (not where.tag or where.tag in row.tags)]
    found = matrix_rows(session, policy.document, where)
    shown = found[rows] if rows is not None else found
    return access_matrix(policy, servers, shown, now=now or utcnow()), len(found)


def matrix_rows(session: Session, document: PolicyDocument, where: MatrixFilter) -> list[Row]:
    rows = subject_rows(document, directory.group_names(session))
    if where.group or where.user:
        needle = where.group.casefold()
        rows = [row for row in rows if where.group and row.kind == "group" and needle in row.key.casefold()]
    if where.user:
        rows += [user_row(_facts(entry), entry.display_name, offboarded=entry.status != UserStatus.ACTIVE)
                 for entry in directory.search(session, where.user, MatrixFilter.MAX_USERS)]
    return rows



