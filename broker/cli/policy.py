"""``broker policy``: the access policy as code (export, import with a dry run, rollback, explain, who-can)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from broker.cli.common import CliError, actor, common_flags, json_flag, load_settings, open_database, print_json
from broker.lifecycle import offboarding
from broker.policy import PolicyError, render_document_diff
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import policies as versions


def register(commands: argparse._SubParsersAction) -> None:
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
                               description="Print the decision for USER at SERVER and every rule's verdict.")
    explain_p.add_argument("--user", required=True, help="user id, email, or IDP:SUBJECT")
    explain_p.add_argument("--server", required=True, help="server id")
    explain_p.add_argument("--client", help="as asked by this client id (default: any client)")
    json_flag(explain_p)
    explain_p.set_defaults(handler=explain)
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
            for problem in exc.problems:
                where = f"line {problem.line}" if problem.line else "file"
                rule = f" (rule {problem.rule_id})" if problem.rule_id else ""
                print(f"broker: {args.file}: {where}{rule}: {problem.message}", file=sys.stderr)
            print(f"broker: {len(exc.problems)} problem(s); nothing was applied", file=sys.stderr)
            return 2
    print(render_document_diff(result.rule_changes) or "no rule changes")
    for change in result.access_changes:
        print(change.render())
    if not result.access_changes:
        print("no user gains or loses access")
    print("dry run: nothing applied" if args.dry_run else f"policy version {result.version} is now in force")
    return 0


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
    database = open_database(settings)
    with database.sessions() as session:
        user, server = _user(session, args.user), _server(session, args.server, settings.issuer)
        compiled = policies.StoredPolicy().compiled(session)
        explanation = policies.explain(session, compiled, user, server, client_id=args.client)
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
    record = {"server": answer.server_id,
              "users": [{"id": u.id, "email": u.email, "scopes": sorted(s)} for u, s in answer.users],
              "groups": [{"group": g, "scopes": sorted(s)} for g, s in answer.groups],
              "everyone": sorted(answer.everyone)}
    if args.json:
        print_json(record)
    else:
        print(f"{answer.server_id}: {len(answer.users)} user(s)")
        for item in record["users"]:
            print(f"  {item['email'] or item['id']}: {' '.join(item['scopes'])}")
        for item in record["groups"]:
            print(f"  group {item['group']}: {' '.join(item['scopes'])}")
    return 0


def _user(session: object, reference: str) -> object:
    try:
        return offboarding.find_user(session, reference)  # type: ignore[arg-type]
    except offboarding.UnknownUser as exc:
        raise CliError(str(exc)) from None


def _server(session: object, server_id: str, issuer: str) -> registry.Server:
    server = registry.get(session, server_id, issuer)  # type: ignore[arg-type]
    if server is None:
        raise CliError(f"no MCP server {server_id!r}")
    return server
