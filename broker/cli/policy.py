"""``broker policy``: the access policy as code (export, import with a dry run, rollback, explain, who-can)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from broker.cli.common import (
    CliError,
    Commands,
    actor,
    common_flags,
    json_flag,
    load_settings,
    open_database,
    print_json,
)
from broker.lifecycle import offboarding
from broker.policy import Matrix, PolicyError, UserFacts, hypothetical, parse_claims, render_document_diff
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import policies as versions
from broker.storage.users import UserRow


def register(commands: Commands) -> None:
    group = commands.add_parser("policy", help="access policy", description="Manage the access policy (policy as "
                                "code; format: docs/policy.md).")
    sub = group.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    export_p = sub.add_parser("export", parents=[common_flags()], help="print the policy in force (TOML)",
                              description="Print the policy in force as a TOML policy file.")
    export_p.set_defaults(handler=export)
    import_p = sub.add_parser("import", parents=[common_flags()], help="load a policy file as the next version",
                              description="Validate FILE as a whole (every problem is listed with its line; nothing is "
                                          "applied unless all is valid) and store it as the next version.")
    import_p.add_argument("file", type=Path, metavar="FILE")
    import_p.add_argument("--dry-run", action="store_true", help="show the rule diff and who gains or loses access")
    import_p.add_argument("--comment", default="", help="why (kept with the version and in the audit log)")
    json_flag(import_p)
    import_p.set_defaults(handler=import_file)
    rollback_p = sub.add_parser("rollback", parents=[common_flags()], help="make an earlier version current again",
                                description="Store version V's document as a new version (history is never "
                                            "rewritten).")
    rollback_p.add_argument("version", type=int, metavar="V")
    rollback_p.set_defaults(handler=rollback)
    history_p = sub.add_parser("history", parents=[common_flags()], help="list policy versions",
                               description="List policy versions, newest first.")
    json_flag(history_p)
    history_p.set_defaults(handler=history)
    explain_p = sub.add_parser("explain", parents=[common_flags()], help="why a user can or cannot reach a server",
                               description="Print the decision for a user at SERVER and every rule's verdict. Name a "
                                           "known user with --user, or describe a person the broker does not know "
                                           "yet (a new hire) with --groups, --claims and --idp.")
    explain_p.add_argument("--user", help="user id, email, or IDP:SUBJECT")
    explain_p.add_argument("--groups", default="", metavar="A,B", help="a person in these groups (comma-separated)")
    explain_p.add_argument("--claims", action="append", default=[], metavar="NAME=VALUE",
                           help="an upstream claim of that person (repeat for several; 3, true and \"text\" keep "
                                "their JSON type, anything else is text)")
    explain_p.add_argument("--idp", help="who signs in through this IdP id")
    explain_p.add_argument("--email", help="with this email (for rules naming users)")
    explain_p.add_argument("--server", required=True, help="server id")
    explain_p.add_argument("--client", help="as asked by this client id (default: any client)")
    json_flag(explain_p)
    explain_p.set_defaults(handler=explain)
    matrix_p = sub.add_parser("matrix", parents=[common_flags()], help="who can reach what: subjects x servers",
                              description="Print the access matrix: everyone, each group, claim and IdP the rules "
                                          "name (and, with --user, matching users) against each enabled MCP server, "
                                          "with the scopes granted and the rules that decide each cell.")
    matrix_p.add_argument("--server", default="", help="only this server id")
    matrix_p.add_argument("--tag", default="", help="only servers with this tag")
    matrix_p.add_argument("--group", default="", help="only groups whose name contains this")
    matrix_p.add_argument("--user", default="", help="add the users whose email, name or id matches this")
    shape = matrix_p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print machine-readable JSON")
    shape.add_argument("--csv", action="store_true", help="print CSV, one line per subject and server")
    matrix_p.set_defaults(handler=matrix)
    who_p = sub.add_parser("who-can", parents=[common_flags()], help="who can reach a server",
                           description="List the users and groups that can reach SERVER, with their scopes.")
    who_p.add_argument("--server", required=True, help="server id")
    json_flag(who_p)
    who_p.set_defaults(handler=who_can)


def export(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        sys.stdout.write(policies.export(session))
    return 0


def import_file(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{args.file}: cannot be read ({getattr(exc, 'strerror', exc)})") from None
    database = open_database(settings)
    with database.transaction() as session:
        try:
            result = policies.import_policy(session, text, issuer=settings.issuer, author=actor(),
                                            comment=args.comment, dry_run=args.dry_run)
        except PolicyError as exc:
            return _refused(args, exc)
    if args.json:
        print_json(import_record(result, args.dry_run))
        return 0
    print(render_document_diff(result.rule_changes) or "no rule changes")
    for line in access_report(result):
        print(line)
    print("dry run: nothing applied" if args.dry_run else f"policy version {result.version} is now in force")
    return 0


def _refused(args: argparse.Namespace, exc: PolicyError) -> int:
    """Every problem with its line (as JSON on stdout with --json), a summary on stderr; exit 2."""
    if args.json:
        print_json({"applied": False, "problems": [{"line": p.line, "rule_id": p.rule_id, "message": p.message}
                                                   for p in exc.problems]})
    else:
        for problem in exc.problems:
            where = f"line {problem.line}" if problem.line else "file"
            rule = f" (rule {problem.rule_id})" if problem.rule_id else ""
            print(f"broker: {args.file}: {where}{rule}: {problem.message}", file=sys.stderr)
    print(f"broker: {len(exc.problems)} problem(s); nothing was applied", file=sys.stderr)
    return 2


def import_record(result: policies.ImportResult, dry_run: bool) -> dict[str, Any]:
    """``policy import --json``: the fields of the admin API's answer to the same import."""
    return {
        "applied": not dry_run, "dry_run": dry_run, "version": result.version, "base_version": result.base_version,
        "review_digest": result.review,
        "rule_changes": [{"kind": c.kind, "rule_id": c.rule_id} for c in result.rule_changes],
        "diff": render_document_diff(result.rule_changes),
        "subject_changes": [{"subject_kind": c.row.kind, "subject": c.row.key, "server_id": c.server_id,
                             "kind": c.kind, "before_scopes": sorted(c.before_scopes),
                             "after_scopes": sorted(c.after_scopes)} for c in result.subject_changes],
        "access_changes": [{"user_id": c.user.id, "email": c.user.email, "server_id": c.server_id, "kind": c.kind,
                            "before_scopes": sorted(c.before_scopes), "after_scopes": sorted(c.after_scopes)}
                           for c in result.access_changes],
        "known_users": result.known_users,
    }


def access_report(result: policies.ImportResult) -> list[str]:
    """Who gains or loses what: subjects (groups...) first, then known users, and what the users cover."""
    lines = [change.render() for change in result.subject_changes]
    if not result.subject_changes:
        lines.append("no group or other subject gains or loses access")
    lines += [change.render() for change in result.access_changes]
    lines.append(policies.known_users_note(result))
    return lines


def rollback(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.transaction() as session:
        try:
            version = policies.rollback(session, args.version, author=actor())
        except policies.UnknownVersion as exc:
            raise CliError(str(exc)) from None
    print(f"policy version {version} (a copy of version {args.version}) is now in force")
    return 0


def history(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        rows = [{"version": v.version, "author": v.author, "created_at": v.created_at.isoformat(timespec="seconds"),
                 "comment": v.comment} for v in versions.history(session)]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['version']:>5}  {row['created_at']}  {row['author']}  {row['comment']}")
    return 0


def explain(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    person = _hypothetical(args)
    database = open_database(settings)
    with database.sessions() as session:
        server = _server(session, args.server, settings.issuer)
        compiled = policies.StoredPolicy().compiled(session)
        if person is None:
            explanation = policies.explain(session, compiled, _user(session, args.user), server, client_id=args.client)
        else:
            explanation = policies.explain_facts(compiled, person, server, client_id=args.client)
    if args.json:
        print_json(explanation.to_dict())
    else:
        print(explanation.render())
    return 0


def who_can(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    with database.sessions() as session:
        server = _server(session, args.server, settings.issuer)
        answer = policies.who_can_reach(session, policies.StoredPolicy().compiled(session), server)
    if args.json:
        print_json({"server": answer.server_id,
                    "users": [{"id": u.id, "email": u.email, "scopes": sorted(s)} for u, s in answer.users],
                    "groups": [{"group": g, "scopes": sorted(s)} for g, s in answer.groups],
                    "everyone": sorted(answer.everyone)})
    else:
        print(f"{answer.server_id}: {len(answer.users)} user(s)")
        for user, scopes in answer.users:
            print(f"  {user.email or user.id}: {' '.join(sorted(scopes))}")
        for group, scopes in answer.groups:
            print(f"  group {group}: {' '.join(sorted(scopes))}")
    return 0


def _hypothetical(args: argparse.Namespace) -> UserFacts | None:
    """The person --groups/--claims/--idp/--email describe, or None for --user; exactly one of the two."""
    described = bool(args.groups.strip() or args.claims or args.idp or args.email)
    if bool(args.user) == described:
        raise CliError("name a known user with --user, or describe a person with --groups, --claims, --idp "
                       "(not both)")
    if not described:
        return None
    try:
        claims = parse_claims(args.claims)
    except ValueError as exc:
        raise CliError(f"--claims: {exc}") from None
    return hypothetical(args.groups.split(","), claims, args.idp, args.email)


def matrix(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    where = policies.MatrixFilter(server=args.server, tag=args.tag, group=args.group, user=args.user)
    with database.sessions() as session:
        if args.server and registry.get(session, args.server, settings.issuer) is None:
            raise CliError(f"no MCP server {args.server!r}")
        result, _ = policies.matrix(session, policies.StoredPolicy().compiled(session), where)
    if args.json:
        print_json(result.to_dict())
    elif args.csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(result.csv_rows())
    else:
        _print_matrix(result)
    return 0


def _print_matrix(result: Matrix) -> None:
    if not result.servers:
        print("no enabled MCP server matches")
    for row, cells in zip(result.rows, result.cells, strict=True):
        print(f"{row.kind} {row.label}:" if row.kind != "everyone" else "everyone:")
        for server, cell in zip(result.servers, cells, strict=True):
            rules = f"  [{', '.join(cell.rule_ids)}]" if cell.rule_ids else ""
            print(f"  {server.id}: {cell.summary()}{rules}")


def _user(session: Session, reference: str) -> UserRow:
    try:
        return offboarding.find_user(session, reference)
    except offboarding.UnknownUser as exc:
        raise CliError(str(exc)) from None


def _server(session: Session, server_id: str, issuer: str) -> registry.Server:
    server = registry.get(session, server_id, issuer)
    if server is None:
        raise CliError(f"no MCP server {server_id!r}")
    return server
