"""`aios-engine config check [FILE]`: validate aios.yaml, one `file:line:col: error: message` per problem."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="configuration tools")
    inner = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = inner.add_parser("check", help="validate aios.yaml")
    check.add_argument("file", nargs="?", default="aios.yaml")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        load_config(Path(args.file))
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0
