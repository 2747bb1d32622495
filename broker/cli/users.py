"""``broker users``: who is known, and offboarding."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session

from broker.admin import queries
from broker.cli.common import (
    CliError,
    Commands,
    actor,
    common_flags,
    json_flag,
    load_settings,
    open_database,
    print_json,
    print_table,
)
from broker.config import Settings
from broker.lifecycle import offboarding, sessions
from broker.lifecycle.upstream_revocation import Attempt, AttemptResult
from broker.storage import users as user_repo
from broker.storage.db import Database
from broker.storage.enums import UserStatus
from broker.storage.models import utcnow
from broker.storage.users import UserRow


def register(commands: Commands) -> None:
    group = commands.add_parser("users", help="users and offboarding",
                                description="List users, look one up, offboard or restore.")
    sub = group.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    list_p = sub.add_parser("list", parents=[common_flags()], help="list users", description="List users.")
    list_p.add_argument("--status", choices=list(UserStatus), help="only users in this state")
    json_flag(list_p)
    list_p.set_defaults(handler=list_users)
    show_p = sub.add_parser("show", parents=[common_flags()], help="show one user",
                            description="Show a user: groups, identities, live refresh-token families.")
    show_p.add_argument("user", metavar="USER", help="user id, email, or IDP:SUBJECT")
    _idp_flag(show_p)
    json_flag(show_p)
    show_p.set_defaults(handler=show_user)
    revoke_p = sub.add_parser(
        "revoke", parents=[common_flags()], help="offboard a user everywhere",
        description="Offboard a user: revoke every refresh token, make every earlier access token inactive, "
                    "refuse every grant from now on, and record who did it and why. Idempotent.")
    revoke_p.add_argument("user", metavar="USER", help="user id, email, or IDP:SUBJECT")
    revoke_p.add_argument("--reason", required=True, help="why (kept in the audit log)")
    _idp_flag(revoke_p)
    revoke_p.add_argument("--all-matches", action="store_true",
                          help="when USER is an email several users have, offboard every one of them (without it, "
                               "an ambiguous email is refused and its candidates listed)")
    json_flag(revoke_p)
    revoke_p.set_defaults(handler=revoke_user)
    restore_p = sub.add_parser("restore", parents=[common_flags()], help="let an offboarded user sign in again",
                               description="Lift an offboarding. Tokens from before it stay dead.")
    restore_p.add_argument("user", metavar="USER", help="user id, email, or IDP:SUBJECT")
    restore_p.add_argument("--reason", default="restored from the command line", help="why (audit log)")
    _idp_flag(restore_p)
    restore_p.set_defaults(handler=restore_user)
    session_p = sub.add_parser(
        "revoke-session", parents=[common_flags()], help="revoke one session of a user",
        description="Revoke one session (a refresh-token family: one client, one MCP server) of a user; their "
                    "other sessions and their sign-in stay. `broker users show USER` lists the sessions.")
    session_p.add_argument("user", metavar="USER", help="user id, email, or IDP:SUBJECT")
    session_p.add_argument("session", metavar="SESSION", help="the session id")
    session_p.add_argument("--reason", default="revoked from the command line", help="why (audit log)")
    _idp_flag(session_p)
    json_flag(session_p)
    session_p.set_defaults(handler=revoke_session)


def _idp_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idp", metavar="IDP", help="only users with an identity at this IdP (an email several "
                                                     "IdPs' users have: name the one you mean)")


def _find(session: Session, args: argparse.Namespace) -> UserRow:
    try:
        return offboarding.find_user(session, args.user, args.idp)
    except offboarding.UnknownUser as exc:
        raise CliError(_with_flags(str(exc))) from None


def _with_flags(message: str) -> str:
    return message.replace("narrow with the IdP, or act on every match", "narrow with --idp, or use --all-matches")


def list_users(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        rows = [summary(u) for u in user_repo.list_all(session, UserStatus(args.status) if args.status else None)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "email", "display_name", "status", "last_login_at"])
    return 0


def show_user(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        user = _find(session, args)
        record = {**summary(user), "groups": user_repo.group_names(session, user.id),
                  "identities": [{"idp": i.idp_id, "subject": i.subject, "email": i.email}
                                 for i in user_repo.identities_of(session, user.id)],
                  "live_refresh_families": user_repo.live_family_count(session, user.id),
                  "sessions": [f"{f.id} ({f.client_id} at {f.resource}, last used {_iso(f.last_used_at)})"
                               for f in queries.live_families(session, user.id)],
                  "offboarded_at": _iso(user.offboarded_at), "offboard_reason": user.offboard_reason}
    if args.json:
        print_json(record)
    else:
        for key, value in record.items():
            print(f"{key.ljust(22)}  {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0


def revoke_user(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    with database.transaction() as session:
        try:
            targets = offboarding.to_offboard(session, args.user, idp=args.idp, every_match=args.all_matches)
        except offboarding.UnknownUser as exc:
            raise CliError(_with_flags(str(exc))) from None
        results = [offboarding.revoke_user(session, user.id, reason=args.reason, actor=actor(), now=utcnow())
                   for user in targets]
    upstream = _revoke_upstream(settings, database)  # committed: now the IdPs, with no transaction open
    records = [{"user_id": r.user_id, "families_revoked": r.families_revoked,
                "already_offboarded": r.already_offboarded, "not_before": _iso(r.not_before),
                "upstream_revocations": [{"idp": o.idp_id, "result": o.result, "detail": o.detail}
                                         for o in upstream]} for r in results]
    if args.json:
        print_json(records if args.all_matches else records[0])
        return 0
    for result in results:
        print(f"user {result.user_id} offboarded at {_iso(result.not_before)}: {result.families_revoked} "
              "refresh-token families revoked" + (" (was already offboarded)" if result.already_offboarded else ""))
    for attempt in upstream:
        print(f"IdP {attempt.idp_id}: refresh token {UPSTREAM_RESULTS[attempt.result]}"
              + (f" ({attempt.detail})" if attempt.detail else ""))
    return 0


def _revoke_upstream(settings: Settings, database: Database) -> list[Attempt]:
    """``app.revoke_upstream_tokens`` on an event loop of its own thread (the caller may run one already)."""
    from broker.app import revoke_upstream_tokens  # the web stack only in the commands that call out

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(revoke_upstream_tokens(settings, database))).result()


UPSTREAM_RESULTS = {AttemptResult.REVOKED: "revoked at the IdP",
                    AttemptResult.NOT_OFFERED: "deleted (the IdP offers no revocation)",
                    AttemptResult.FAILED: "deleted, but not revoked at the IdP"}


def restore_user(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.transaction() as session:
        user = _find(session, args)
        if not offboarding.restore_user(session, user.id, reason=args.reason, actor=actor(), now=utcnow()):
            raise CliError(f"user {user.id} is not offboarded")
    print(f"user {user.id} restored; tokens issued before the offboarding stay revoked")
    return 0


def revoke_session(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.transaction() as session:
        user = _find(session, args)
        try:
            family = sessions.revoke_session(session, user.id, args.session, reason=args.reason, actor=actor(),
                                             now=utcnow(), source="cli")
        except sessions.UnknownSession as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json({"user_id": user.id, "session_id": family.id, "revoked_at": _iso(family.revoked_at)})
    else:
        print(f"session {family.id} of user {user.id} revoked ({family.client_id} at {family.resource})")
    return 0


def summary(user: UserRow) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "display_name": user.display_name, "status": user.status,
            "last_login_at": _iso(user.last_login_at)}


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
