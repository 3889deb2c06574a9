"""`aios-engine chaos kill|latency|disk-full|cpu-spike|random`: inject a fault for real into what a running
engine looks after, follow the problem it opens, exit 0 only when the engine healed it before the deadline.

Prints the JSON report on stdout (for `random`, every run's and a table) and a one-line summary per run on
stderr. Run it on the engine's machine: it signals the agents' processes (docs/chaos.md).
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

import orjson

from engine.chaos.engine_api import EngineApi
from engine.chaos.runner import run_random, run_scenario, table
from engine.chaos.scenarios import SCENARIOS
from engine.chaos.scenarios.base import Options
from engine.cli import UserError
from engine.durations import parse_duration


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chaos", help="inject a real fault and check that the engine heals it")
    parser.add_argument("scenario", choices=[*SCENARIOS, "random"],
                        help="; ".join(f"{name}: {cls.summary}" for name, cls in SCENARIOS.items()).replace("%", "%%")
                        + "; random: a seeded mix for --duration")
    parser.add_argument("--target", metavar="AGENT", help="the agent to aim at (default: a running one, seeded)")
    parser.add_argument("--duration", default="60s", metavar="D",
                        help="how long a lasting fault is kept up at most; for random, how long to go on (60s)")
    parser.add_argument("--deadline", metavar="D", help="how long the engine gets to heal (default: per scenario)")
    parser.add_argument("--seed", type=int, help="repeatable choices (default: a new one, in the report)")
    parser.add_argument("--url", default="http://127.0.0.1:8765", help="the engine (token from AIOS_TOKEN)")
    parser.add_argument("--data", metavar="DIR", help="the engine's data directory: needed by disk-full; with it "
                                                      "the store's files are checked too")
    parser.add_argument("--scenarios", default="kill,latency,cpu-spike", metavar="LIST",
                        help="what random draws from (comma-separated; disk-full needs --data)")
    parser.set_defaults(func=run)


def _seconds(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    options = Options(target=args.target, duration_s=_seconds(args.duration, "--duration"),
                      data_dir=Path(args.data) if args.data else None,
                      deadline_s=_seconds(args.deadline, "--deadline") if args.deadline else None)
    names = tuple(name.strip() for name in args.scenarios.split(",") if name.strip())
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise UserError(f"--scenarios: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(SCENARIOS)}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    return asyncio.run(_main(args, options, names, seed))


async def _main(args: argparse.Namespace, options: Options, names: tuple[str, ...], seed: int) -> int:
    async with EngineApi(args.url) as api:
        if args.scenario == "random":
            reports = await run_random(api, seed, options.duration_s, options, names)
            out = {"seed": seed, "runs": [r.as_dict() for r in reports], "ok": all(r.ok for r in reports)}
            print(table(reports), file=sys.stderr)
        else:
            reports = [await run_scenario(api, args.scenario, seed, options)]
            out = reports[0].as_dict()
    for report in reports:
        print(report.line(), file=sys.stderr)
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if all(r.ok for r in reports) else 1
