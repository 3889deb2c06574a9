"""Options and parsing shared by the commands that read or write the engine's state."""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from engine import timespec
from engine.cli import UserError
from engine.config import Config, ConfigError, find_config

CONFIG_HELP = "aios.yaml (default: ./aios.yaml if it exists, else the embedded demo config)"


def add_state_args(parser: argparse.ArgumentParser, url: bool = True) -> None:
    """`--config`, `--data` (work on the files) and `--url` (ask a running engine) — contract §3."""
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--data", metavar="DIR", help="data directory (default: the config's data_dir, ./data)")
    if url:
        target.add_argument("--url", metavar="URL", help="a running engine, e.g. http://127.0.0.1:8765 "
                                                         "(token from AIOS_TOKEN)")


def config_from(args: argparse.Namespace) -> Config:
    """The config the user named, ./aios.yaml when present, else the embedded demo config."""
    try:
        return find_config(args.config)
    except ConfigError as exc:
        raise UserError("invalid configuration:", details=[str(d) for d in exc.diagnostics]) from None


def data_dir_from(args: argparse.Namespace, config: Config) -> Path:
    """`--data`, else the config's; a file there is refused here rather than met deep inside a command."""
    path = Path(args.data) if args.data else config.data_dir
    if path.exists() and not path.is_dir():
        raise UserError(f"the data directory {path} is not a directory")
    return path


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`engine.timespec.parse_when`, refused as a UserError (one line on stderr, exit 1)."""
    try:
        return timespec.parse_when(text, now)
    except ValueError as exc:
        raise UserError(str(exc)) from None
