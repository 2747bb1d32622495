"""``broker clients``: pre-registered OAuth clients, and approval of dynamically registered ones."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from broker.admin import clients as client_admin
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
from broker.oauth import client_auth, clients
from broker.storage import clients as repo
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientKind, ClientStatus


def register(commands: Commands) -> None:
    group = commands.add_parser("clients", help="OAuth clients", description="Register and manage OAuth clients.")
    sub = group.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", parents=[common_flags()], help="register a client",
                         description="Register a client. A confidential client's secret is printed once; only its "
                                     "SHA-256 digest is stored.")
    add.add_argument("--name", required=True, help="shown to users on the consent page")
    add.add_argument("--redirect-uri", action="append", default=[], metavar="URI",
                     help="an exact redirect URI (repeat for several); loopback URIs may vary their port")
    kind = add.add_mutually_exclusive_group()
    kind.add_argument("--public", dest="confidential", action="store_false",
                      help="no secret; PKCE only (default: native and browser MCP clients)")
    kind.add_argument("--confidential", dest="confidential", action="store_true",
                      help="authenticates at the token endpoint (default method: client_secret_basic)")
    add.set_defaults(confidential=None)
    add.add_argument("--auth-method", action="append", default=[], choices=clients.AUTH_METHODS, metavar="METHOD",
                     help="how it authenticates: none, client_secret_basic, client_secret_post or private_key_jwt; "
                          "repeat to allow several (e.g. both secret methods); implies --confidential unless none")
    keys = add.add_mutually_exclusive_group()
    keys.add_argument("--jwks", metavar="FILE", help="private_key_jwt: a JSON file with the client's public JWK Set")
    keys.add_argument("--jwks-uri", metavar="URL",
                      help="private_key_jwt: an https URL where the broker fetches the client's public JWK Set")
    add.add_argument("--trusted", action="store_true", help="skip the consent page (first-party clients)")
    add.add_argument("--client-credentials", action="store_true",
                     help="may use the client_credentials grant (machine-to-machine; confidential only)")
    add.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                     help="a scope the client may hold for itself via client_credentials (repeat), "
                          "e.g. admin:read for the admin API")
    add.add_argument("--id-jag", action="store_true",
                     help="may redeem ID-JAGs from trusted IdPs (jwt-bearer grant; confidential only)")
    add.add_argument("--token-exchange", action="store_true",
                     help="may exchange its users' ID tokens for ID-JAGs for other authorization servers "
                          "(confidential only)")
    add.add_argument("--introspect", action="store_true",
                     help="may call the introspection endpoint (an MCP server's own client; confidential only)")
    add.add_argument("--resource-server", action="append", default=[], metavar="SERVER",
                     help="with --introspect: an MCP server id whose tokens it may introspect (repeat); a token "
                          "for any other audience introspects inactive (RFC 7662 §4)")
    add.add_argument("--dpop-bound-access-tokens", action="store_true",
                     help="its access tokens are DPoP-bound only: a token request without a DPoP proof is refused "
                          "(RFC 9449 §5.2)")
    add.add_argument("--id", dest="client_id", help="the client id (default: generated)")
    json_flag(add)
    add.set_defaults(handler=add_client)
    for name, handler, text in (("list", list_clients, "list clients"), ("show", show_client, "show one client")):
        p = sub.add_parser(name, parents=[common_flags()], help=text, description=text.capitalize() + ".")
        if name == "show":
            p.add_argument("client_id", metavar="ID")
        json_flag(p)
        p.set_defaults(handler=handler)
    bind = sub.add_parser("resource-servers", parents=[common_flags()],
                          help="set the MCP servers whose tokens an introspecting client may introspect",
                          description="Set the MCP servers (ids) whose tokens this resource server's client may "
                                      "introspect; none: it learns nothing from introspection (RFC 7662 §4).")
    bind.add_argument("client_id", metavar="ID")
    bind.add_argument("servers", metavar="SERVER", nargs="*", help="MCP server ids (none: clear)")
    bind.set_defaults(handler=set_resource_servers)
    dpop = sub.add_parser("dpop", parents=[common_flags()], help="require DPoP-bound access tokens for a client, "
                          "or stop requiring them", description="Turn the client's dpop_bound_access_tokens on "
                          "(a token request without a DPoP proof is refused, RFC 9449 §5.2) or off. A metadata-"
                          "document client's comes from its document.")
    dpop.add_argument("client_id", metavar="ID")
    dpop.add_argument("setting", choices=("on", "off"), metavar="on|off",
                      help="on: DPoP-bound tokens only; off: bearer tokens too")
    dpop.set_defaults(handler=set_dpop_bound)
    for name, status, text in (
            ("disable", ClientStatus.DISABLED, "stop a client: no new tokens, its tokens introspect inactive"),
            ("approve", ClientStatus.ACTIVE, "approve a dynamically registered client held for approval")):
        p = sub.add_parser(name, parents=[common_flags()], help=text, description=text.capitalize() + ".")
        p.add_argument("client_id", metavar="ID")
        p.set_defaults(handler=lambda args, status=status: set_status(args, status))


def add_client(args: argparse.Namespace) -> int:
    if not args.name.strip():
        raise CliError("--name: must not be empty (users see it on the consent page)")
    try:
        auth = clients.operator_auth(args.auth_method, confidential=args.confidential, jwks=_jwks_file(args.jwks),
                                     jwks_uri=args.jwks_uri)
    except ValueError as exc:
        raise CliError(f"{exc} (see --help: --auth-method, --public, --confidential, --jwks, --jwks-uri)") from None
    try:
        grants = clients.preregistered_grants(
            redirect_uris=args.redirect_uri, client_credentials=args.client_credentials, id_jag=args.id_jag,
            token_exchange=args.token_exchange, introspect=args.introspect,
            confidential=auth.methods != (client_auth.NONE,))
    except ValueError as exc:
        raise CliError(f"{exc} (see --help: --redirect-uri, --client-credentials, --id-jag, --token-exchange, "
                       "--introspect, --confidential)") from None
    database = open_database(load_settings(args))
    with database.transaction() as session:
        try:
            new = clients.register(session, client_id=args.client_id, name=args.name, kind=ClientKind.PREREGISTERED,
                                   redirect_uris=args.redirect_uri, grant_types=grants, trusted=args.trusted,
                                   auth=auth, scopes=args.scope, may_introspect=args.introspect, actor=actor(),
                                   dpop_bound_access_tokens=args.dpop_bound_access_tokens,
                                   resource_servers=client_admin.check_resource_servers(session,
                                                                                        args.resource_server))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    record = {**describe(new.row), "client_secret": new.secret}
    if args.json:
        print_json(record)
    else:
        print(f"client_id:     {new.row.id}")
        if new.secret:
            print(f"client_secret: {new.secret}\n(shown once: store it now)")
    return 0


def _jwks_file(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"--jwks {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError):
        raise CliError(f"--jwks {path}: not a JSON file") from None


def list_clients(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        rows = [describe(c) for c in repo.list_all(session)]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "auth_methods": " ".join(r["auth_methods"])} for r in rows],
                    ["client_id", "name", "kind", "status", "auth_methods", "trusted"])
    return 0


def show_client(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        row = _existing(session, args.client_id)
        record = describe(row)
    if args.json:
        print_json(record)
    else:
        width = max(map(len, record))
        for key, value in record.items():
            print(f"{key.ljust(width)}  {', '.join(value) if isinstance(value, list) else value}")
    return 0


def _existing(session: Session, client_id: str) -> ClientRow:
    row = repo.get(session, client_id)
    if row is None:
        raise CliError(f"no client {client_id!r}")
    return row


def set_status(args: argparse.Namespace, status: str) -> int:
    change = client_admin.approve if status == ClientStatus.ACTIVE else client_admin.disable
    _change(args, lambda session, row: change(session, row, actor()))
    print(f"client {args.client_id} is now {status}")
    return 0


def set_resource_servers(args: argparse.Namespace) -> int:
    row = _change(args, lambda session, row: client_admin.set_resource_servers(session, row, args.servers, actor()))
    print(f"client {args.client_id} introspects tokens for: {', '.join(row.resource_servers) or 'no MCP server'}")
    return 0


def set_dpop_bound(args: argparse.Namespace) -> int:
    _change(args, lambda session, row: client_admin.set_dpop_bound(session, row, args.setting == "on", actor()))
    shown = "DPoP-bound access tokens only" if args.setting == "on" else "bearer or DPoP-bound access tokens"
    print(f"client {args.client_id} gets {shown}")
    return 0


def _change(args: argparse.Namespace, change: Callable[[Session, ClientRow], ClientRow]) -> ClientRow:
    """Apply ``change`` to the client ``args.client_id`` in one transaction; a refused change is one line, exit 2."""
    database = open_database(load_settings(args))
    with database.transaction() as session:
        try:
            return change(session, _existing(session, args.client_id))
        except client_admin.InvalidChange as exc:
            raise CliError(str(exc)) from None


def describe(row: ClientRow) -> dict[str, Any]:
    return {"client_id": row.id, "name": row.name, "kind": row.kind, "status": row.status,
            "auth_method": row.token_endpoint_auth_method, "auth_methods": list(clients.registered_methods(row)),
            "jwks_uri": row.jwks_uri, "redirect_uris": list(row.redirect_uris),
            "grant_types": list(row.grant_types), "trusted": row.trusted, "scopes": list(row.scopes),
            "may_introspect": row.may_introspect, "resource_servers": list(row.resource_servers or ()),
            "dpop_bound_access_tokens": row.dpop_bound_access_tokens,
            "created_at": row.created_at.isoformat(timespec="seconds")}
