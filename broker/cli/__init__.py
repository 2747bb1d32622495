"""The ``broker`` command line: composition root for operators and scripts.

Every command takes ``--config FILE`` (or ``BROKER_CONFIG``) and ``--data-dir DIR``; commands that
print records take ``--json``. Errors are one clear line each on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broker import __version__
from broker.cli import audit, clients, db, keys, policy, run, servers, users
from broker.cli.common import CliError
from broker.config import ConfigError

GROUPS = (run, db, keys, clients, servers, policy, users, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="mcp-auth-broker: the authorization broker for MCP.")
    parser.add_argument("--version", action="version", version=f"mcp-auth-broker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"broker: configuration: {problem}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
