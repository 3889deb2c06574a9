"""`aios-engine config check [FILE]`: validate aios.yaml, one `file:line:col: error: message` per problem.

Besides what every command refuses to load, it reports what `run` would refuse to start with: a token
that is too short or blank (also from AIOS_TOKEN), a non-loopback `server.host` without one.
"""
from __future__ import annotations

import argparse
import os
import sys

from engine.config import check_file, config_path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="configuration tools")
    inner = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = inner.add_parser("check", help="validate aios.yaml")
    check.add_argument("file", nargs="?", metavar="FILE",
                       help="default: ./aios.yaml if it exists, else the embedded demo config")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = config_path(args.file)
    problems = check_file(path, os.environ.get("AIOS_TOKEN"))
    for diagnostic in problems:
        print(diagnostic, file=sys.stderr)
    if problems:
        return 1
    print(f"{path}: ok")
    return 0
