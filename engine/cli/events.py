"""`aios-engine events`: read the store (raw and archived days), filtered, optionally following."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from, parse_when
from engine.store.layout import Layout
from engine.store.reader import EventFilter, follow, read_events


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("events", help="read stored events")
    parser.add_argument("--since", help="RFC 3339 time, date, or duration ago (15m)")
    parser.add_argument("--until", help="RFC 3339 time, date, or duration ago (exclusive)")
    parser.add_argument("--type", action="append", default=[], metavar="GLOB", help="type glob (repeatable)")
    parser.add_argument("--agent")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def format_text(event: dict[str, Any]) -> str:
    data = orjson.dumps(event.get("data", {})).decode()
    return (f"{event.get('ts', '')}  {event.get('severity', 'info'):<8} {event.get('type', ''):<24} "
            f"{event.get('agent') or '-':<12} {event.get('id', '')}  {data}")


def remote_events(client: Client, args: argparse.Namespace, follow_: bool,
                  poll_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """Page through `GET /api/events` (and keep polling with --follow) from a running engine."""
    params = [(name, value) for name, value in (("since", args.since), ("until", args.until),
                                                 ("agent", args.agent)) if value]
    params += [("type", glob) for glob in args.type]
    after = None
    while True:
        page = client.get("/api/events", [*params, ("limit", "1000"), *((("after", after),) if after else ())])
        yield from page["events"]
        if page["events"]:
            after = page["events"][-1]["id"]
        if page["next"] is None:
            if not follow_:
                return
            time.sleep(poll_s)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    events_dir = Layout.under(data_dir_from(args, config)).events_dir
    selector = EventFilter(parse_when(args.since) if args.since else None,
                           parse_when(args.until) if args.until else None, tuple(args.type), args.agent)
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
