"""`aios-engine compact [--now ISO] [--dry-run]`: run retention now (events, then run records and snapshots),
under the data-dir lock; with `--url`, ask the running engine (`POST /api/compact`) to run it."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from, parse_when
from engine.reactor.records import RunStore
from engine.store.layout import Layout
from engine.store.lock import DataDirLocked, DataLock
from engine.store.retention import compact


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compact", help="apply event retention now")
    parser.add_argument("--now", help="pretend it is this time (RFC 3339), for tests and backfills (not with --url)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be archived and deleted; change nothing")
    add_state_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.url:
        if args.now:
            raise UserError("--now works on the files (--data); a running engine compacts as of its own clock")
        _, report = Client(args.url).post("/api/compact", params=[("dry_run", "1")] if args.dry_run else None)
        _print_report(report, args.dry_run)
        return 0
    config = config_from(args)
    now = parse_when(args.now) if args.now else datetime.now(timezone.utc)
    data_dir = data_dir_from(args, config)
    layout = Layout.under(data_dir)
    store = config.store
    if args.dry_run:  # reads only: no lock, so it also works beside a running engine
        _print_report(compact(layout, now, store["raw_days"], store["delete_days"], dry_run=True).as_dict(), True)
        print("run records and snapshots: not looked at in a dry run")
        return 0
    keep_runs = config.raw["reactor"]["keep_runs_days"]
    try:
        with DataLock(data_dir):
            report = compact(layout, now, store["raw_days"], store["delete_days"])
            pruned = RunStore(data_dir).prune(now, keep_runs)
    except DataDirLocked as exc:
        raise UserError(f"{exc} (use --url to ask the running engine)") from None
    _print_report(report.as_dict(), False)
    if pruned:
        print(f"deleted {len(pruned)} run record(s) and their snapshots older than {keep_runs} days")
    return 0


def _print_report(report: Any, dry_run: bool) -> None:
    """The same lines whether the report comes from the files or from a running engine."""
    if not isinstance(report, dict):
        raise UserError(f"the engine answered an unexpected compaction report: {report!r}")
    archived, deleted = report.get("archived", []), report.get("deleted", [])
    summarized = report.get("summarized", [])
    counts = (len(archived), len(deleted), len(summarized))
    if dry_run:
        print("dry run, nothing changed: would archive {} day(s), delete {} day(s), summarize {} day(s)".format(*counts))
    else:
        print("archived {} day(s), deleted {} day(s), summarized {} day(s)".format(*counts))
    archive, delete = ("would archive", "would delete ") if dry_run else ("archived", "deleted ")
    for day in archived:
        print(f"  {archive} {day}")
    for day in deleted:
        print(f"  {delete} {day} (summary kept)")
