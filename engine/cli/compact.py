"""`aios-engine compact [--now ISO]`: run retention now (events, then run records and snapshots), under the
data-dir lock."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone

from engine.cli import UserError
from engine.cli.common import add_state_args, config_from, data_dir_from, parse_when
from engine.reactor.records import RunStore
from engine.store.layout import Layout
from engine.store.lock import DataDirLocked, DataLock
from engine.store.retention import compact


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compact", help="apply event retention now")
    parser.add_argument("--now", help="pretend it is this time (RFC 3339), for tests and backfills")
    add_state_args(parser, url=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    now = parse_when(args.now) if args.now else datetime.now(timezone.utc)
    data_dir = data_dir_from(args, config)
    try:
        with DataLock(data_dir):
            report = compact(Layout.under(data_dir), now, config.store["raw_days"], config.store["delete_days"])
            pruned = RunStore(data_dir).prune(now, config.raw["reactor"]["keep_runs_days"])
    except DataDirLocked as exc:
        raise UserError(str(exc)) from None
    print(f"archived {len(report.archived)} day(s), deleted {len(report.deleted)} day(s), "
          f"summarized {len(report.summarized)} day(s)")
    for day in report.archived:
        print(f"  archived {day}")
    for day in report.deleted:
        print(f"  deleted  {day} (summary kept)")
    if pruned:
        print(f"deleted {len(pruned)} run record(s) and their snapshots older than "
              f"{config.raw['reactor']['keep_runs_days']} days")
    return 0
