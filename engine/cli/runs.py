"""`aios-engine runs [RUN_ID]`: the table of recent runs, or one run with its steps and their output."""
from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

import orjson

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.events import parse_ts
from engine.reactor.records import RUN_STATUSES, RecordError, RunRecord, RunStore, StepRecord


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("runs", help="show run records (steps, rendered argv, exit codes, output tails)")
    parser.add_argument("run_id", nargs="?", metavar="RUN_ID", help="show this run in detail")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="most runs listed (default 50)")
    parser.add_argument("--playbook", metavar="P", help="only runs of this playbook")
    parser.add_argument("--status", choices=RUN_STATUSES, help="only runs that ended so (or are running)")
    add_state_args(parser)
    parser.set_defaults(func=run)


def load_run(store: RunStore, run_id: str) -> RunRecord:
    """The record, or the one-line error the user sees (shared with `rollback`)."""
    try:
        return store.get(run_id)
    except KeyError:
        raise UserError(f"no run {run_id} in {store.runs_dir}") from None
    except RecordError as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.url:
        return _remote(args)
    store = RunStore(data_dir_from(args, config_from(args)))
    if args.run_id:
        record = load_run(store, args.run_id)
        print(_json(record.to_dict()) if args.format == "json" else "\n".join(detail_lines(record)))
        return 0
    if args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    records = store.list(args.limit, args.playbook, args.status,
                         on_error=lambda exc: print(f"aios-engine runs: warning: {exc}", file=sys.stderr))
    _print_list(records, args, str(store.runs_dir))
    return 0


def _remote(args: argparse.Namespace) -> int:
    client = Client(args.url)
    if args.run_id:
        record = RunRecord.from_dict(client.get(f"/api/runs/{urllib.parse.quote(args.run_id, safe='')}"))
        print(_json(record.to_dict()) if args.format == "json" else "\n".join(detail_lines(record)))
        return 0
    params = [("limit", str(args.limit))] + [(k, v) for k, v in (("playbook", args.playbook),
                                                                   ("status", args.status)) if v]
    records = [RunRecord.from_dict(r) for r in client.get("/api/runs", params)["runs"]]
    _print_list(records, args, args.url)
    return 0


def _print_list(records: list[RunRecord], args: argparse.Namespace, where: str) -> None:
    if args.format == "json":
        for record in records:
            print(_json(record.to_dict()))
    elif records:
        print(f"{'RUN':<26}  {'STARTED':<20}  {'TOOK':>8}  {'STATUS':<11}  {'PRIO':<4}  {'PLAYBOOK':<24}  "
              f"{'AGENT':<12}  CAUSE")
        for record in records:
            print(f"{record.run_id:<26}  {record.started[:19] + 'Z':<20}  {_took(record):>8}  "
                  f"{record.status:<11}  {record.priority or '-':<4}  {record.playbook:<24}  "
                  f"{record.agent or '-':<12}  {record.cause_type}{_rolled_back(record)}")
    else:
        print(f"no runs in {where}" + (" match" if args.playbook or args.status else ""))


def detail_lines(record: RunRecord) -> list[str]:
    """One run, readable: its outcome, snapshot, every step's tries with their detail and output tails."""
    lines = [f"run       {record.run_id}",
             f"playbook  {record.playbook}",
             f"status    {record.status}" + (f": {record.error}" if record.error else ""),
             f"cause     {record.cause_type} {record.cause}",
             f"agent     {record.agent or '-'}    priority {record.priority or '-'}",
             f"started   {record.started}",
             f"finished  {record.finished or '-'}" + (f" (took {_took(record)})" if record.finished else "")]
    if record.rerun_of:
        lines.append(f"rerun of  {record.rerun_of}")
    if record.cancelled:
        gone = record.cancelled
        lines.append(f"cancelled {gone.get('at', '-')} by {gone.get('by', '-')}: {gone.get('reason') or '-'}")
    if record.approval:
        asked = record.approval
        answer = f"{asked.get('status', 'waiting')}" + (f" by {asked['by']}" if asked.get("by") else "") \
            + (f": {asked['reason']}" if asked.get("reason") else "")
        lines.append(f"approval  step {asked.get('step')} asked {asked.get('message')!r}, expires "
                     f"{asked.get('expires_at')}: {answer}")
    snap = record.snapshot
    if snap:
        state = f"deleted {snap['deleted']}" if snap.get("deleted") else \
            f"sealed {snap['sealed']}" if snap.get("sealed") else "not sealed"
        lines.append(f"snapshot  {snap.get('files', 0)} file(s), {snap.get('bytes', 0)} bytes, {state}: "
                     + ", ".join(snap.get("paths", [])))
    for title, steps in (("steps", record.steps), ("rollback steps", record.rollback_steps)):
        if steps:
            lines.append(title)
            for step in steps:
                lines.extend(_step_lines(step))
    if record.rollbacks:
        lines.append("rollbacks")
        for entry in record.rollbacks:
            lines.append(f"  {entry.at} by {entry.by}{' (forced)' if entry.forced else ''}: "
                         f"{len(entry.paths)} path(s) restored")
            lines.extend(f"    {path}" for path in entry.paths)
    return lines


def _step_lines(step: StepRecord) -> list[str]:
    lines = [f"  {step.id}  {step.action}  {step.status}"]
    for number, attempt in enumerate(step.attempts, 1):
        took = f"{attempt.duration_ms} ms" if attempt.duration_ms is not None else "-"
        exit_code = f"  exit {attempt.exit_code}" if attempt.exit_code is not None else ""
        lines.append(f"    try {number}  {attempt.started}  {took}  {'ok' if attempt.ok else 'failed'}{exit_code}")
        lines.extend(f"      {key}: {_plain(value)}" for key, value in attempt.detail.items())
        for name, text in (("stdout", attempt.stdout), ("stderr", attempt.stderr)):
            if text:
                lines.append(f"      {name}:")
                lines.extend(f"        | {line}" for line in text.rstrip("\n").split("\n"))
        if attempt.error:
            lines.append(f"      error: {attempt.error}")
    return lines


def _took(record: RunRecord) -> str:
    if not record.finished:
        return "-"
    try:
        seconds = (parse_ts(record.finished) - parse_ts(record.started)).total_seconds()
    except ValueError:
        return "?"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _rolled_back(record: RunRecord) -> str:
    return f"  (rolled back {len(record.rollbacks)}x)" if record.rollbacks else ""


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()

