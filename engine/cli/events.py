"""`aios-engine events`: read the store (raw and archived days), filtered, optionally following."""
from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

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


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    events_dir = Layout.under(data_dir_from(args, config)).events_dir
    selector = EventFilter(parse_when(args.since) if args.since else None,
                           parse_when(args.until) if args.until else None, tuple(args.type), args.agent)
    if args.follow:
        stream = follow(events_dir, selector)
    else:
        stream = read_events(events_dir, selector.since, selector.until, selector.types, selector.agent)
    out = sys.stdout
    for event in stream:
        out.write((orjson.dumps(event).decode() if args.format == "json" else format_text(event)) + "\n")
        if args.follow:
            out.flush()
    return 0
