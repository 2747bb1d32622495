"""``broker audit``: prove the log is intact, and hand it to a SIEM."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import asdict

from broker import audit
from broker.audit.export import json_line
from broker.cli.common import CliError, Commands, common_flags, json_flag, load_settings, open_database, print_json
from broker.cli.progress import Progress
from broker.config import Settings
from broker.keys.crypto import DecryptionError, Encryptor
from broker.storage import audit_events
from broker.storage.db import Database


def register(commands: Commands) -> None:
    group = commands.add_parser("audit", help="the audit log", description="Verify and export the audit log.")
    sub = group.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify_p = sub.add_parser(
        "verify", parents=[common_flags()], help="check the hash chain",
        description="Seal pending events, then walk the whole chain. Exit 0 when intact; exit 1 naming the "
                    "first event that was altered, removed, inserted or reordered.")
    verify_p.add_argument("--no-seal", action="store_true", help="verify only what is sealed; change nothing")
    json_flag(verify_p)
    verify_p.set_defaults(handler=verify)
    export_p = sub.add_parser("export", parents=[common_flags()], help="stream events as JSON lines",
                              description="Write events (oldest first) to stdout, one JSON object per line.")
    export_p.add_argument("--since", type=_timestamp, metavar="TIME",
                          help="only events at or after TIME (ISO 8601, e.g. 2026-11-26T14:02:00Z)")
    export_p.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format (jsonl)")
    export_p.set_defaults(handler=export)


def _timestamp(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _key(settings: Settings, database: Database) -> audit.AuditKey:
    keks = settings.key_encryption_keys()
    if not keks:
        raise CliError("keys.key_encryption_key: required to verify the audit chain")
    try:
        with database.transaction() as session:
            return audit.AuditKeys(Encryptor.of(keks), keks).get(session)
    except (audit.UnknownAuditKey, DecryptionError) as exc:
        raise CliError(f"the audit chain's key: {exc}") from None


def verify(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    database = open_database(settings)
    key = _key(settings, database)
    if not args.no_seal:
        with database.transaction() as session:
            while audit.seal(session, key):
                pass
    with database.sessions() as session:
        progress = Progress("audit verify: events checked", audit.sealed_count(session))
        result = audit.verify(session, key, progress=progress.advance)
        progress.done()
    if args.json:
        print_json(asdict(result))
        return 0 if result.ok else 1
    if result.ok:
        print(f"audit chain intact: {result.checked} events, head {result.head_seq}:{result.head_hash[:16]}"
              + (f", {result.unsealed} not yet sealed" if result.unsealed else ""))
        return 0
    where = f"event {result.broken_id} (chain position {result.broken_seq})" if result.broken_id else \
        f"chain position {result.broken_seq}" if result.broken_seq else "the chain head"
    print(f"audit chain BROKEN at {where}: {result.reason}", file=sys.stderr)
    return 1


def export(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args))
    with database.sessions() as session:
        progress = Progress("audit export: events written", audit_events.count(session, args.since))
        for event in audit_events.in_order(session, args.since):
            sys.stdout.write(json_line(event))
            progress.advance()
        progress.done()
    return 0
