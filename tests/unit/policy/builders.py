"""Small builders for policy tests: servers, subjects, rules, and one-call decisions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from broker.policy import (
    ALL,
    AccessRequest,
    ClaimMatch,
    Conditions,
    Decision,
    PolicyDocument,
    Rule,
    ServerInfo,
    Subject,
    Subjects,
    Target,
    Targets,
    compile,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

DEMO = Target(id="demo", scopes=frozenset({"tools:read", "tools:call", "tools:admin"}),
              default_scopes=frozenset({"tools:read"}), tags=frozenset({"internal"}))
GITHUB = Target(id="github", scopes=frozenset({"repo:read", "repo:write"}), default_scopes=frozenset({"repo:read"}),
                tags=frozenset({"internal", "code"}))
WIKI = Target(id="wiki", scopes=frozenset({"pages:read", "pages:write"}), default_scopes=frozenset(),
              tags=frozenset({"docs"}))
ADMIN_API = Target(id="broker-admin-api", scopes=frozenset({"admin:read", "admin:write"}),
                   default_scopes=frozenset(), builtin=True)
TARGETS = (DEMO, GITHUB, WIKI, ADMIN_API)
KNOWN = {t.id: ServerInfo(t.scopes, t.tags, t.builtin) for t in TARGETS}


def user(user_id: str = "u-alice", *, email: str | None = "alice@example.com", groups: Iterable[str] = (),
         claims: Mapping[str, object] | None = None, idp: str | None = "okta", acr: str | None = None,
         amr: Iterable[str] = ()) -> Subject:
    return Subject(kind="user", id=user_id, email=email, idp_id=idp, groups=frozenset(groups),
                   claims=dict(claims or {}), acr=acr, amr=tuple(amr))


def robot(client_id: str = "ci-bot", scopes: Iterable[str] = ()) -> Subject:
    return Subject(kind="client", id=client_id, client_scopes=frozenset(scopes))


def rule(rule_id: str, effect: str = "allow", *, scopes: object = ALL, users: Iterable[str] = (),
         groups: Iterable[str] = (), claims: Mapping[str, object] | None = None, idps: Iterable[str] = (),
         clients: Iterable[str] = (), everyone: bool = False, servers: Iterable[str] = (), tags: Iterable[str] = (),
         all_servers: bool = False, via: Iterable[str] = (), acr: Iterable[str] = (), amr: Iterable[str] = (),
         not_before: dt.datetime | None = None, not_after: dt.datetime | None = None, description: str = "") -> Rule:
    """A rule; ``via`` is the client allow-list condition. Claims: name -> value or list of values."""
    matches = [ClaimMatch(name, v) for name, value in (claims or {}).items()
               for v in (value if isinstance(value, list) else [value])]
    return Rule(id=rule_id, effect=effect,  # type: ignore[arg-type]
                subjects=Subjects(users=tuple(users), groups=tuple(groups), claims=tuple(matches), idps=tuple(idps),
                                  clients=tuple(clients), everyone=everyone),
                targets=Targets(servers=tuple(servers), tags=tuple(tags), all=all_servers),
                scopes=scopes if scopes == ALL else tuple(scopes),  # type: ignore[arg-type]
                description=description,
                conditions=Conditions(clients=tuple(via), acr=tuple(acr), amr=tuple(amr), not_before=not_before,
                                      not_after=not_after))


def request(subject: Subject, target: Target = DEMO, requested: Iterable[str] | None = None, *,
            client_id: str = "claude", now: dt.datetime = NOW) -> AccessRequest:
    return AccessRequest(subject=subject, client_id=client_id, target=target,
                         requested_scopes=None if requested is None else frozenset(requested), now=now)


def decide(rules: Iterable[Rule], subject: Subject, target: Target = DEMO, requested: Iterable[str] | None = None,
           **kwargs: object) -> Decision:
    return compile(PolicyDocument(tuple(rules))).decide(request(subject, target, requested, **kwargs))  # type: ignore[arg-type]
