"""`aios-engine events`: read the store (raw and archived days), filtered, optionally following.

`--follow` without `--since` starts from now: what is already stored is history, not news. With `--url` it
rides out engine restarts: one line on stderr when the engine goes away, quiet retries with backoff, and
paging resumes after the last event printed, so nothing is printed twice.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import orjson

from engine.cli.client import Client, Unreachable
from engine.cli.common import add_state_args, config_from, data_dir_from, parse_when
from engine.events import format_ts
from engine.store.layout import Layout
from engine.store.reader import EventFilter, follow, read_events

RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("events", help="read stored events")
    parser.add_argument("--since", help="RFC 3339 time, date, or duration ago (15m)")
    parser.add_argument("--until", help="RFC 3339 time, date, or duration ago (exclusive)")
    parser.add_argument("--type", action="append", default=[], metavar="GLOB", help="type glob (repeatable)")
    parser.add_argument("--agent")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new events (from now, unless --since)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def format_text(event: dict[str, Any]) -> str:
    data = orjson.dumps(event.get("data", {})).decode()
    return (f"{event.get('ts', '')}  {event.get('severity', 'info'):<8} {event.get('type', ''):<24} "
            f"{event.get('agent') or '-':<12} {event.get('id', '')}  {data}")


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def remote_events(client: Client, args: argparse.Namespace, follow_: bool, poll_s: float = 1.0,
                  sleep: Callable[[float], None] = time.sleep,
                  warn: Callable[[str], None] = _warn) -> Iterator[dict[str, Any]]:
    """Page through `GET /api/events` (and keep polling with --follow) from a running engine."""
    filters = [("agent", args.agent)] if args.agent else []
    filters += [("type", glob) for glob in args.type]
    after, since = None, args.since
    if follow_ and not since:  # from now, by the engine's store: after its newest matching event
        newest = client.get("/api/events", [*filters, ("last", "1")])["events"]
        after, since = (newest[-1]["id"], newest[-1]["ts"]) if newest else (None, format_ts(time.time()))
    params = [*filters, *((name, value) for name, value in (("since", since), ("until", args.until)) if value)]
    retry_s = None  # while the engine is away: the wait before the next try
    while True:
        try:
            page = client.get("/api/events", [*params, ("limit", "1000"), *((("after", after),) if after else ())])
        except Unreachable as exc:
            if not follow_:
                raise
            if retry_s is None:
                warn(f"aios-engine events: {exc}; reconnecting")
            retry_s = min(retry_s * 2, RETRY_MAX_S) if retry_s else RETRY_FIRST_S
            sleep(retry_s)
            continue
        retry_s = None
        for event in page["events"]:
            after = event["id"]
            yield event
        if page["next"] is None:
            if not follow_:
                return
            sleep(poll_s)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    events_dir = Layout.under(data_dir_from(args, config)).events_dir
    since = parse_when(args.since) if args.since else datetime.now(timezone.utc) if args.follow else None
    selector = EventFilter(since, parse_when(args.until) if args.until else None, tuple(args.type), args.agent)
    if args.url:
        stream = remote_events(Client(args.url), args, follow_=args.follow)
    elif args.follow:
        stream = follow(events_dir, selector)
    else:
        stream = read_events(events_dir, selector.since, selector.until, selector.types, selector.agent)
    out = sys.stdout
    for event in stream:
        out.write((orjson.dumps(event).decode() if args.format == "json" else format_text(event)) + "\n")
        if args.follow:
            out.flush()
    return 0
