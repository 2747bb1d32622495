"""``broker keys``: signing keys and the key-encryption key."""

from __future__ import annotations

import argparse
import datetime as dt

from broker import config
from broker.admin import keys as key_admin
from broker.admin import rewrap as key_rewrap
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
from broker.keys.crypto import DecryptionError, Encryptor
from broker.keys.ring import KeyRing
from broker.storage import signing_keys
from broker.storage.db import Database
from broker.storage.models import utcnow
from broker.storage.signing_keys import KeyRow


def register(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="signing keys", description="Manage JWT signing keys.")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    rotate_p = sub.add_parser(
        "rotate", parents=[common_flags()], help="add a new signing key",
        description="Add a signing key. It is published in the JWKS at once and signs after "
                    "keys.activation_delay seconds; the current key stops signing then and leaves the JWKS "
                    "once the longest token it signed has expired.")
    rotate_p.add_argument("--now", action="store_true",
                          help="start signing with the new key immediately (after a suspected key compromise)")
    json_flag(rotate_p)
    rotate_p.set_defaults(handler=rotate)
    list_p = sub.add_parser("list", parents=[common_flags()], help="list signing keys and their state",
                            description="List signing keys: pending, signing, retired (still published), expired.")
    json_flag(list_p)
    list_p.set_defaults(handler=list_keys)
    new_p = sub.add_parser("new-kek", help="print a fresh key-encryption key",
                           description="Print 32 random bytes, base64url-encoded, for keys.key_encryption_key. "
                                       "Store it in your secret manager; losing it makes stored keys unusable.")
    new_p.set_defaults(handler=lambda args: print(config.new_kek()))
    rewrap_p = sub.add_parser(
        "rewrap", parents=[common_flags()], help="re-encrypt everything under the current key-encryption key",
        description="Re-encrypt under keys.key_encryption_key every value stored under one of "
                    "keys.previous_key_encryption_keys: signing keys, upstream refresh tokens, sign-ins in "
                    "progress, the audit chain's key. All or nothing; running it again changes nothing. Then "
                    "the previous keys can be removed from the configuration (docs/operations.md).")
    json_flag(rewrap_p)
    rewrap_p.set_defaults(handler=rewrap)


def _encryptor(settings: config.Settings) -> Encryptor:
    keks = settings.key_encryption_keys()
    if not keks:
        raise CliError("keys.key_encryption_key: required (set BROKER_KEYS__KEY_ENCRYPTION_KEY)")
    return Encryptor.of(keks)


def _ring(args: argparse.Namespace) -> tuple[KeyRing, config.Settings, Database]:
    settings = load_settings(args)
    ring = KeyRing.of_broker(_encryptor(settings), settings)
    return ring, settings, open_database(settings)


def rotate(args: argparse.Namespace) -> int:
    ring, settings, database = _ring(args)
    with database.transaction() as session:
        try:
            ring.verify_kek(session)
        except DecryptionError as exc:
            raise CliError(f"keys.key_encryption_key: {exc} (wrong key-encryption key?)") from None
        row = key_admin.rotate(session, ring, 0 if args.now else settings.keys.activation_delay, actor())
        grace = key_admin.grace(session, settings)
    if args.json:
        print_json(_describe(row, utcnow(), grace))
    else:
        print(f"added key {row.kid} ({row.algorithm}); published now, signs from {row.activates_at.isoformat()}")
    return 0


def list_keys(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    now = utcnow()
    with database.sessions() as session:
        grace = key_admin.grace(session, settings)
        rows = [_describe(k, now, grace) for k in signing_keys.all_keys(session)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["kid", "purpose", "algorithm", "state", "activates_at", "retired_at"])
    return 0


def _describe(key: KeyRow, now: dt.datetime, grace: dt.timedelta) -> dict[str, object]:
    return {"kid": key.kid, "purpose": key.purpose, "algorithm": key.algorithm,
            "state": key_admin.state(key, now, grace),
            "created_at": key.created_at.isoformat(timespec="seconds"),
            "activates_at": key.activates_at.isoformat(timespec="seconds"),
            "retired_at": key.retired_at.isoformat(timespec="seconds") if key.retired_at else ""}


def rewrap(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    encryptor, database = _encryptor(settings), open_database(settings)
    try:
        with database.transaction() as session:
            done = key_rewrap.rewrap(session, encryptor, actor())
    except key_rewrap.Unreadable as exc:
        raise CliError(f"keys rewrap: {exc}; nothing was changed") from None
    if args.json:
        print_json({"rewrapped": done.rewrapped, "current": done.current})
        return 0
    counts = ", ".join(f"{n} {kind}" for kind, n in done.rewrapped.items())
    print(f"re-encrypted under the current key-encryption key: {counts}; {done.current} already were")
    return 0
