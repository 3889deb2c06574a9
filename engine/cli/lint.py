"""`aios-engine lint [PATH…] [--format text|json] [--config FILE]`: check playbooks before deploy.

Exit 0 when there is no error (warnings allowed), 1 otherwise. Text: one `file:line:col: severity:
message` line each on stdout, then a summary on stderr. JSON: one object per line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.cli import printable
from engine.cli.common import config_from
from engine.playbooks.lint import lint_paths
from engine.playbooks.schema import LintDiagnostic


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lint", help="validate playbooks (schema and semantics)")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="files or directories (default: the config's rules_dir)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="processes checking files in parallel (default: one per CPU)")
    parser.add_argument("--config", metavar="FILE",
                        help="aios.yaml whose agents restart_agent and signal may name "
                             "(default: ./aios.yaml if it exists, else the embedded demo config)")
    parser.set_defaults(func=run)


def _json_line(diagnostic: LintDiagnostic) -> str:
    return json.dumps({"file": diagnostic.loc.file, "line": diagnostic.loc.line, "col": diagnostic.loc.col,
                       "severity": diagnostic.severity, "message": diagnostic.message,
                       "code": diagnostic.code})


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _shown(path: Path) -> str:
    """`path` relative to the current directory when it is below it: the names a user typed (`rules/x.yaml`)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    result = lint_paths(args.paths or [_shown(config.rules_dir)], config if config.source else None, args.jobs)
    for diagnostic in result.diagnostics:
        print(_json_line(diagnostic) if args.format == "json" else printable(str(diagnostic)))
    print(f"{_plural(result.errors, 'error')}, {_plural(result.warnings, 'warning')} in "
          f"{_plural(len(result.files), 'file')}", file=sys.stderr)
    return 1 if result.errors else 0
