"""`aios-engine emit TYPE [key=value…]`: store one event (with `--data`, under the data-dir lock)."""
from __future__ import annotations

import argparse
from typing import Any

import orjson

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.durations import parse_duration
from engine.events import SEVERITIES, EventError, EventValidator
from engine.store.lock import DataDirLocked
from engine.store.writer import EventWriter, StoreWriteError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("emit", help="store an event")
    parser.add_argument("type", help="event type, e.g. agent.error")
    parser.add_argument("fields", nargs="*", metavar="key=value",
                        help="data fields; a value that parses as JSON is stored as JSON (n=3 → 3)")
    parser.add_argument("--agent")
    parser.add_argument("--severity", choices=SEVERITIES)
    parser.add_argument("--source", default="cli")
    add_state_args(parser)
    parser.set_defaults(func=run, trailing="fields")


def parse_fields(fields: list[str]) -> dict[str, Any]:
    """`key=value` pairs into a data object: JSON when the value parses as JSON, else the string."""
    data: dict[str, Any] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {field!r}")
        try:
            data[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            data[key] = value
    return data


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    raw: dict[str, Any] = {"type": args.type, "data": parse_fields(args.fields)}
    if args.agent:
        raw["agent"] = args.agent
    if args.severity:
        raw["severity"] = args.severity
    if args.url:
        raw["source"] = args.source
        _, answer = Client(args.url).post("/api/events", raw)
        print(answer["ids"][0])
        return 0
    validator = EventValidator(host=config.host, max_future_s=parse_duration(config.store["max_future"]),
                               delete_days=config.store["delete_days"])
    try:
        event = validator.normalize(raw, source=args.source, external=True)
    except EventError as exc:
        raise UserError(f"refused: {exc}") from None
    try:
        with EventWriter(data_dir_from(args, config), dedup_window_s=parse_duration(config.store["dedup_window"]),
                         reserve_mb=config.store["reserve_mb"]) as writer:
            writer.append([event])
    except DataDirLocked as exc:
        raise UserError(str(exc)) from None
    except StoreWriteError as exc:
        raise UserError(f"not stored: {exc.strerror or exc}") from None
    print(event["id"])
    return 0
