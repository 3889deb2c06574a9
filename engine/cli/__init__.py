"""`aios-engine`: one module per command, each exposing `register(subparsers)` that sets `func`.

A command returns its exit code. Bad input raises `UserError`: one clear line on stderr, never a
traceback (set AIOS_DEBUG=1 to see one for an internal error).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# Command modules, in the order `--help` lists them.
COMMANDS = (
    "run",
    "lint",
    "replay",
    "emit",
    "events",
    "compact",
    "runs",
    "rollback",
    "config_check",
)


class UserError(Exception):
    """A mistake in what the user asked for; the message is printed as is, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aios-engine", description="Self-healing rule engine for AI agents.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"engine.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"engine.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Positional items after options (`emit T --agent a n=3`) land in `extra`; commands that take
    # a free list of items declare it with `set_defaults(trailing="<attribute>")`.
    trailing = getattr(args, "trailing", None)
    if extra and trailing and not any(item.startswith("-") for item in extra):
        getattr(args, trailing).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"aios-engine {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line, with the trace only on request
        if os.environ.get("AIOS_DEBUG"):
            traceback.print_exc()
        print(f"aios-engine {args.command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
