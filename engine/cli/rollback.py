"""`aios-engine rollback RUN_ID [--force]`: put back the files a finished run changed, under the data-dir lock."""
from __future__ import annotations

import argparse
import getpass
import os
import urllib.parse

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.cli.runs import load_run
from engine.reactor.records import RecordError, RunStore
from engine.reactor.rollback import RollbackRefused, rollback_run
from engine.reactor.snapshot import SnapshotError
from engine.store.lock import DataDirLocked, DataLock


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rollback", help="restore the files of a finished run from its snapshot")
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("--force", action="store_true", help="restore even if the files changed since the run")
    add_state_args(parser)
    parser.set_defaults(func=run)


def who() -> str:
    """Who asked, for the run's rollback history."""
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"cli (uid {os.getuid()})"


def run(args: argparse.Namespace) -> int:
    if args.url:
        _, answer = Client(args.url).post(f"/api/runs/{urllib.parse.quote(args.run_id, safe='')}/rollback",
                                          params=[("force", "1")] if args.force else None)
        report(args, answer["restored"])
        return 0
    data_dir = data_dir_from(args, config_from(args))
    load_run(RunStore(data_dir), args.run_id)  # "no run X" before any lock or directory is made
    try:
        with DataLock(data_dir):
            paths = rollback_run(data_dir, args.run_id, args.force, by=who())
    except (DataDirLocked, RollbackRefused, SnapshotError, RecordError) as exc:
        raise UserError(str(exc)) from None
    report(args, paths)
    return 0


def report(args: argparse.Namespace, paths: list[str]) -> None:
    forced = " (forced)" if args.force else ""
    if not paths:
        print(f"run {args.run_id}: files already match its snapshot, nothing to restore{forced}")
    else:
        print(f"run {args.run_id} rolled back{forced}: {len(paths)} path(s) restored")
        for path in paths:
            print(f"  {path}")
