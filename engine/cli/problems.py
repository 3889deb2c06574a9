"""`aios-engine problems [--open] [ID]`: the open and recent problems, or one problem with its timeline.

From the files (`--data`, read only: no lock, a running engine may keep writing) or from a running engine
(`--url`); both print the same lines. Files the engine could not restore either (damaged, cut short) are
skipped with one warning each, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.events import parse_ts
from engine.problems.book import Problem
from engine.problems.files import ProblemFiles, problems_dir

# The keys of `Problem.summary()`: what `GET /api/problems` answers, taken from a file's whole problem.
SUMMARY_KEYS = tuple(Problem("", "", "", {}, 0.0, {}).summary())
_WORDS = ("what", "playbook", "outcome", "reason", "why")  # timeline fields printed as they are, in this order
_LABELLED = (("detail", "detail"), ("redecision", "redecision"), ("retry_at", "retry at"), ("run_id", "run"),
             ("reasons", "reasons"))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("problems", help="open and recent problems, or one problem with its timeline")
    parser.add_argument("problem_id", nargs="?", metavar="ID", help="show this problem with its timeline")
    parser.add_argument("--open", action="store_true", help="only problems still open")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.problem_id and args.open:
        raise UserError("--open filters the list; leave it out to show one problem")
    if args.url:
        client = Client(args.url)
        if args.problem_id:  # unknown: the engine's 404 becomes the one-line error
            return _show(client.get(f"/api/problems/{urllib.parse.quote(args.problem_id, safe='')}"), args.format)
        params = [("open", "1")] if args.open else None
        return _list(client.get("/api/problems", params)["problems"], args, args.url)
    data_dir = data_dir_from(args, config_from(args))
    problems = load_problems(data_dir)
    if args.problem_id:
        found = next((p for p in problems if p["id"] == args.problem_id), None)
        if found is None:
            raise UserError(f"no problem {args.problem_id} in {problems_dir(data_dir)}")
        return _show(found, args.format)
    listed = [summary(p) for p in problems if not args.open or p["status"] == "open"]
    return _list(listed, args, str(problems_dir(data_dir)))


def load_problems(data_dir: Path) -> list[dict[str, Any]]:
    """The whole problems of `data_dir`, newest first; those the engine would not restore are skipped."""
    files = ProblemFiles(data_dir)
    with _warnings_from("aios.problems"):
        raws, _ = files.load()
    problems = []
    for raw in raws:
        try:
            Problem.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            _warn(f"problem file skipped: {files.dir / (raw['id'] + '.json')}: {exc!r}")
            continue
        problems.append(raw)
    return sorted(problems, key=lambda p: (p["opened_at"], p["id"]), reverse=True)


def summary(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: problem.get(key) for key in SUMMARY_KEYS}


def _list(problems: list[dict[str, Any]], args: argparse.Namespace, where: str) -> int:
    if args.format == "json":
        for problem in problems:
            print(_json(problem))
    elif problems:
        print(f"{'PROBLEM':<29}  {'KIND':<14}  {'STATUS':<15}  {'SUBJECT':<16}  {'OPENED':<20}  "
              f"{'HEALED/AGE':<12}  REASONS")
        now = time.time()
        for p in problems:
            print(f"{p['id']:<29}  {p['kind']:<14}  {status_text(p):<15}  {subject_text(p):<16}  "
                  f"{p['opened_at'][:19] + 'Z':<20}  {_healed_or_age(p, now):<12}  {len(p.get('reasons') or {})}")
    else:
        print(f"no {'open ' if args.open else ''}problems in {where}")
    return 0


def _show(problem: dict[str, Any], output: str) -> int:
    print(_json(problem) if output == "json" else "\n".join(detail_lines(problem)))
    return 0


def detail_lines(p: dict[str, Any]) -> list[str]:
    """One problem, readable: what it is about, where it stands, why nothing healed it yet, its timeline."""
    heal = p.get("heal_s")
    lines = [f"problem    {p['id']}",
             f"kind       {p['kind']}",
             f"subject    {subject_text(p)}",
             f"status     {status_text(p)}",
             f"opened     {p['opened_at']}    events {p.get('events', '-')}",
             f"escalated  {p.get('escalated_at') or '-'}",
             f"resolved   {p.get('resolved_at') or '-'}" + (f" (healed in {heal}s)" if heal is not None else ""),
             f"run        {p.get('run_id') or '-'}"]
    if p.get("running"):
        lines.append(f"running    {', '.join(p['running'])}")
    if p.get("next_decision_at"):
        why = f" ({p['why']})" if p.get("why") else ""
        lines.append(f"next       decided again at {p['next_decision_at']}{why}")
    reasons = p.get("reasons") or {}
    lines.append(f"reasons    {len(reasons) or '-'}")
    lines.extend(f"  {where}: {detail}" for where, detail in reasons.items())
    timeline = p.get("timeline") or []
    lines.append(f"timeline   {len(timeline)} entries" + (f", {p['elided']} elided" if p.get("elided") else ""))
    lines.extend(timeline_line(entry) for entry in timeline)
    return lines


def timeline_line(entry: dict[str, Any]) -> str:
    """`ts  type  what/playbook outcome reason …`: the fields an entry has, in one order for every kind."""
    words = [_text(entry[name]) for name in _WORDS if entry.get(name) is not None]
    words += [f"{label} {_text(entry[name])}" for name, label in _LABELLED if entry.get(name) is not None]
    return f"  {entry.get('ts') or '-':<27}  {entry.get('type', '-'):<20}  {' '.join(words)}".rstrip()


def status_text(problem: dict[str, Any]) -> str:
    if problem["status"] == "open" and problem.get("escalated_at"):
        return "open, escalated"
    return str(problem["status"])


def subject_text(problem: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in (problem.get("subject") or {}).items()) or "-"


def _healed_or_age(problem: dict[str, Any], now: float) -> str:
    if problem.get("heal_s") is not None:
        return f"healed {problem['heal_s']}s"
    try:
        return f"age {_span(now - parse_ts(problem['opened_at']).timestamp())}"
    except ValueError:
        return "-"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


@contextlib.contextmanager
def _warnings_from(logger_name: str) -> Iterator[None]:
    """The loader logs each file it skips; here that is one warning line on stderr (no JSON log setup)."""
    logger = logging.getLogger(logger_name)
    handler = _WarningLine()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _WarningLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        where = getattr(record, "file", None)
        error = getattr(record, "error", None)
        _warn(record.getMessage() + (f": {where}" if where else "") + (f": {error}" if error else ""))


def _warn(message: str) -> None:
    print(f"aios-engine problems: warning: {message}", file=sys.stderr)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
