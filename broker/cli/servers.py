"""``broker servers``: the MCP server registry."""

from __future__ import annotations

import argparse
from collections.abc import Callable
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
    print_table,
)
from broker.registry import admin
from broker.storage import mcp_servers
from broker.storage.mcp_servers import ServerRow


def register(commands: Commands) -> None:
    group = commands.add_parser("servers", help="MCP servers", description="Register and manage MCP servers.")
    sub = group.add_subparsers(dest="servers_command", metavar="ACTION", required=True)
    add_p = sub.add_parser("add", parents=[common_flags()], help="register an MCP server",
                           description="Register an MCP server: tokens for it carry its resource URI as `aud`.")
    add_p.add_argument("--id", required=True, help="short identifier used in policy, e.g. github")
    _definition_flags(add_p, required=True)
    json_flag(add_p)
    add_p.set_defaults(handler=add_server)
    update_p = sub.add_parser("update", parents=[common_flags()], help="change an MCP server",
                              description="Change an MCP server; flags not given keep their value.")
    update_p.add_argument("server_id", metavar="ID")
    _definition_flags(update_p, required=False)
    json_flag(update_p)
    update_p.set_defaults(handler=update_server)
    for name, handler, text in (("list", list_servers, "list MCP servers"),
                                ("show", show_server, "show one MCP server")):
        p = sub.add_parser(name, parents=[common_flags()], help=text, description=text.capitalize() + ".")
        if name == "show":
            p.add_argument("server_id", metavar="ID")
        json_flag(p)
        p.set_defaults(handler=handler)
    for name, enabled, text in (("disable", False, "stop issuing tokens for a server; its refresh tokens stop "
                                                    "working and its tokens introspect inactive"),
                                ("enable", True, "issue tokens for a disabled server again")):
        p = sub.add_parser(name, parents=[common_flags()], help=text, description=text.capitalize() + ".")
        p.add_argument("server_id", metavar="ID")
        p.set_defaults(handler=lambda args, enabled=enabled: set_enabled(args, enabled))


def _definition_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--name", required=required, help="shown on the consent page")
    parser.add_argument("--resource", required=required, metavar="URI",
                        help="the URL clients connect to (its canonical form becomes the tokens' aud)")
    parser.add_argument("--scopes", required=required, metavar='"A B"', help="every scope the server understands")
    parser.add_argument("--default-scopes", metavar='"A"', help="granted when a client asks for none (default: all)")
    parser.add_argument("--description", help="what the server does")
    parser.add_argument("--tag", action="append", metavar="TAG", help="a tag for policy targets (repeat)")
    parser.add_argument("--access-token-lifetime", type=int, metavar="SECONDS",
                        help="override tokens.access_token_lifetime for this server")
    parser.add_argument("--require-dpop", action=argparse.BooleanOptionalAction, default=None,
                        help="issue tokens for this server DPoP-bound only (RFC 9449): a token request without a "
                             "DPoP proof is refused (default: off)")


def add_server(args: argparse.Namespace) -> int:
    spec = _spec(args, None)
    settings = load_settings(args)
    database = open_database(settings)
    with database.transaction() as session:
        row = _apply(lambda: admin.add(session, spec, actor=actor(), issuer=settings.issuer))
        record = describe(row)
    _print(args, record, f"registered {record['id']}: {record['resource']}")
    return 0


def update_server(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    with database.transaction() as session:
        row = _get(session, args.server_id)
        spec = _spec(args, row)
        record = describe(_apply(lambda: admin.update(session, row, spec, actor=actor(), issuer=settings.issuer)))
    _print(args, record, f"updated {record['id']}")
    return 0


def list_servers(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        rows = [describe(r) for r in mcp_servers.list_all(session)]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "scopes": " ".join(r["scopes"])} for r in rows],
                    ["id", "name", "resource", "enabled", "require_dpop", "scopes"])
    return 0


def show_server(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        record = describe(_get(session, args.server_id))
    if args.json:
        print_json(record)
    else:
        for key, value in record.items():
            shown = ", ".join(f"{k} ({v})" if v else k for k, v in value.items()) if isinstance(value, dict) else \
                " ".join(value) if isinstance(value, list) else value
            print(f"{key.ljust(22)}  {shown}")
    return 0


def set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    database = open_database(load_settings(args))
    with database.transaction() as session:
        admin.set_enabled(session, _get(session, args.server_id), enabled, actor=actor())
    print(f"server {args.server_id} {'enabled' if enabled else 'disabled'}")
    return 0


def _spec(args: argparse.Namespace, row: ServerRow | None) -> admin.ServerSpec:
    scopes = dict(row.scopes) if row else {}
    if args.scopes is not None:
        scopes = {s: scopes.get(s, "") for s in args.scopes.split()}
    defaults = args.default_scopes.split() if args.default_scopes is not None else (
        [s for s in row.default_scopes if s in scopes] if row else list(scopes))
    return admin.ServerSpec(
        id=row.id if row else args.id, name=pick(args.name, row.name if row else ""),
        resource=pick(args.resource, row.resource if row else ""), scopes=scopes, default_scopes=defaults,
        description=pick(args.description, row.description if row else ""),
        tags=args.tag if args.tag is not None else (list(row.tags) if row else []),
        access_token_lifetime=pick(args.access_token_lifetime, row.access_token_lifetime if row else None),
        require_dpop=pick(args.require_dpop, row.require_dpop if row else False))


def _apply(operation: Callable[[], ServerRow]) -> ServerRow:
    try:
        return operation()
    except admin.InvalidServer as exc:
        raise CliError("; ".join(exc.problems)) from None


def _get(session: Session, server_id: str) -> ServerRow:
    row = mcp_servers.get(session, server_id)
    if row is None:
        raise CliError(f"no MCP server {server_id!r}")
    return row


def _print(args: argparse.Namespace, record: dict[str, Any], line: str) -> None:
    if args.json:
        print_json(record)
    else:
        print(line)


def describe(row: ServerRow) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "resource": row.resource, "enabled": row.enabled,
            "scopes": dict(row.scopes), "default_scopes": list(row.default_scopes), "tags": list(row.tags),
            "description": row.description, "access_token_lifetime": row.access_token_lifetime,
            "require_dpop": row.require_dpop}


def pick(new: Any, old: Any) -> Any:
    return old if new is None else new
