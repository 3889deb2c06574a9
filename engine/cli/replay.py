"""`aios-engine replay --events FILE|DIR [--rules DIR] [--config FILE] [--since T] [--until T]
[--format text|json]`.

Backtest: which playbook each stored event would trigger, sustained and throttle applied with the
events' own times, then the live engine's guards (declared agents and `reactor` limits from the config,
found as `lint` finds it) and coalescing, with run outcomes from the history; runs no action. `--events`
takes an NDJSON file (or .gz) or a store directory (raw days and `archive/`); by default the data
directory's `events/`, or with `--url` the running engine's store (`GET /api/events`). The operators' controls
of the time apply too: the `control.*` events in the replayed store (silences, pauses, runtime disables),
the config's maintenance windows and the playbooks' `inhibited_by`. Rule files with errors are skipped
(their lint lines on stderr) and the rest replayed. A summary ends the output.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from engine.admission.backtest import Admission
from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from, parse_when
from engine.cli.events import remote_events
from engine.config import Config
from engine.controls.gate import Controls
from engine.controls.inhibit import Inhibitions
from engine.controls.maintenance import windows_from_config
from engine.playbooks.compiler import Index
from engine.playbooks.lint import lint_paths
from engine.playbooks.replay import EventClock, Summary, json_records, replay, text_lines
from engine.store.layout import Layout
from engine.store.reader import EventFilter, read_events, read_ndjson


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("replay", help="backtest playbooks over stored events (runs no action)")
    parser.add_argument("--events", metavar="FILE|DIR",
                        help="NDJSON file or events directory (default: DATA/events, or the engine at --url)")
    parser.add_argument("--rules", metavar="DIR", help="playbooks (default: the config's rules_dir, ./rules)")
    parser.add_argument("--since", help="RFC 3339 time, date, or duration ago (15m)")
    parser.add_argument("--until", help="RFC 3339 time, date, or duration ago (exclusive)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def _events(args: argparse.Namespace, config: Config) -> Iterator[dict[str, Any]]:
    if args.url and not args.events:  # the running engine's store, page by page
        query = argparse.Namespace(since=args.since, until=args.until, agent=None, type=[])
        return remote_events(Client(args.url), query, follow_=False)
    selector = EventFilter(parse_when(args.since) if args.since else None,
                           parse_when(args.until) if args.until else None)
    path = Path(args.events) if args.events else Layout.under(data_dir_from(args, config)).events_dir
    if path.is_dir():
        return read_events(path, selector.since, selector.until)
    if path.is_file():
        return filter(selector.compile(), read_ndjson(path))
    raise UserError(f"--events {path}: no such file or directory")


def _index(rules: Path, config: Config) -> Index:
    """The playbooks of the files that lint clean; each error of the others on stderr."""
    if not rules.exists():
        raise UserError(f"--rules {rules}: no such file or directory")
    result = lint_paths([rules], config if config.source else None)
    for diagnostic in result.diagnostics:
        if diagnostic.severity == "error":
            print(diagnostic, file=sys.stderr)
    skipped = len(result.files) - len(result.files_ok)
    if skipped:
        print(f"aios-engine replay: skipped {skipped} file(s) with errors", file=sys.stderr)
    return Index(result.playbooks)


async def _no_emit(type_: str, data: dict[str, Any], agent: str | None) -> dict[str, Any]:
    raise AssertionError("a replay changes no control")  # pragma: no cover - fold() never emits


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    index = _index(Path(args.rules) if args.rules else config.rules_dir, config)
    summary = Summary(sorted(index.playbooks))
    out = sys.stdout
    admission = Admission(index, config.raw["reactor"], config.agents)
    clock = EventClock()
    controls = Controls(None, windows_from_config(config.raw["maintenance"]), emit=_no_emit, new_id=str,
                        clock=clock)
    inhibitions = Inhibitions()
    inhibitions.set_playbooks(index.playbooks)
    for event, match in replay(_events(args, config), index, summary, admission, hold=controls.holds(inhibitions),
                               disabled=controls.disabled, observers=(controls.fold, inhibitions.observe),
                               clock=clock):
        if args.format == "json":
            out.writelines(orjson.dumps(record).decode() + "\n" for record in json_records(match))
        else:
            out.writelines(line + "\n" for line in text_lines(event, match))
    if args.format == "json":
        out.write(orjson.dumps({"summary": summary.as_dict()}).decode() + "\n")
    else:
        out.writelines(["\n"] + [line + "\n" for line in summary.text()])
    return 0
