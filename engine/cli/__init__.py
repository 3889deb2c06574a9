"""`aios-engine`: one module per command, each exposing `register(subparsers)` that sets `func`.

A command returns its exit code. Bad input raises `UserError`: one clear line on stderr, never a
traceback (set AIOS_DEBUG=1 to see one for an internal error).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback

# Command name -> its module, in the order `--help` lists them.
COMMANDS = {
    "run": "run",
    "lint": "lint",
    "replay": "replay",
    "emit": "emit",
    "events": "events",
    "compact": "compact",
    "runs": "runs",
    "rollback": "rollback",
    "cancel": "runctl",  # runctl registers cancel, rerun, approve, deny and approvals together
    "rerun": "runctl",
    "approve": "runctl",
    "deny": "runctl",
    "approvals": "runctl",
    "problems": "problems",
    "score": "score",
    "feedback": "feedback",
    "tune": "tune",
    "config": "config_check",
    "chaos": "chaos",
    "controls": "controls",
    "silence": "controls",
    "pause": "controls",
    "resume": "controls",
    "playbook": "controls",
    "agent": "controls",
    "budget": "controls",
    "breaker": "controls",
}


# Control characters and line separators (from what the user typed, or YAML escapes in keys) would break the
# one-line-per-problem output, lone surrogates (from non-UTF-8 file names) its encoding: printed escaped.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` on one line, control characters escaped as Python would write them."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class UserError(Exception):
    """A mistake in what the user asked for, exit code `code`: `message` is one line, each of `details` one
    more (a configuration's list of problems); all are printed escaped, so user text cannot split them."""

    def __init__(self, message: str, code: int = 1, details: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.details = tuple(details)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; when `argv` names a command, only that command's module is imported (start-up time:
    `lint` in CI should not pay for the service's imports)."""
    parser = argparse.ArgumentParser(prog="aios-engine", description="Self-healing rule engine for AI agents.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    wanted = [COMMANDS[first]] if first in COMMANDS else COMMANDS.values()
    for module_name in dict.fromkeys(wanted):  # a module may hold a group of commands: registered once
        importlib.import_module(f"engine.cli.{module_name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
        print(printable(f"aios-engine {args.command}: {exc}"), file=sys.stderr)
        for line in exc.details:
            print(printable(line), file=sys.stderr)
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
