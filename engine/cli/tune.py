"""`aios-engine tune [--dry-run] [--revert]`: fit each agent's score weights to its labels, bounded.

Prints every agent's weights before and after, with the reason (unchanged when its labels are too few).
With `--url` the running engine tunes (`POST /api/tune`); with `--data` the files are tuned under the
data-dir lock. `--revert` undoes the last version (docs/score.md).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.cli.score import weights_text
from engine.score.keeper import ScoreKeeper
from engine.store.lock import DataDirLocked, DataLock


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tune", help="fit the score weights to the labels (bounded, versioned)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    mode.add_argument("--revert", action="store_true", help="undo the last tuning")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.url:
        params = [("dry_run", "1")] if args.dry_run else [("revert", "1")] if args.revert else None
        _, report = Client(args.url).post("/api/tune", params=params)
    else:
        config = config_from(args)
        data_dir = data_dir_from(args, config)
        keeper = ScoreKeeper.from_config(config.raw, data_dir, time.time)
        try:
            with DataLock(data_dir):
                keeper.weights.load()
                report = keeper.tune([], dry_run=args.dry_run, revert=args.revert)
        except DataDirLocked as exc:
            raise UserError(f"{exc} (use --url to ask the running engine)") from None
    if args.format == "json":
        print(orjson.dumps(report).decode())
    else:
        print("\n".join(report_lines(report)))
    return 0


def report_lines(report: dict[str, Any]) -> list[str]:
    if "reverted" in report:
        undone = report["reverted"]
        if undone is None:
            return ["nothing to revert: no tuning was made"]
        return [f"reverted version {undone['version']}; weights are at version {report['version']}"] + [
            f"  {who}: {weights_text(change['after'])} -> {weights_text(change['before'] or {}) or 'defaults'}"
            for who, change in undone["changes"].items()]
    head = "dry run, nothing changed" if report["dry_run"] else f"weights version {report['version']}"
    lines = [f"{head}: {report['labels']} labels"]
    for one in [*report["agents"], {"agent": "fleet", **report["fleet"]}]:
        f1 = f"F1 {one['metrics_before']['f1']:.2f} -> {one['metrics_after']['f1']:.2f}" if one["labels"] else ""
        lines.append(f"  {one['agent']:<16} before {weights_text(one['before'])}")
        lines.append(f"  {'':<16} after  {weights_text(one['after'])}  {f1}  ({one['reason']})".rstrip())
    return lines
