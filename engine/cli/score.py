"""`aios-engine score [--agent A]`: each agent's health score, its four components and weights.

From a running engine (`--url`), or computed from the files (`--data`: the store's last
`score.rebuild_hours` folded as the engine does at start, with the tuned weights; read only, no lock).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.score.components import COMPONENTS
from engine.score.keeper import ScoreKeeper
from engine.store.layout import Layout

SHORT = {"success_rate": "success", "latency": "latency", "stability": "stability", "resource": "resource"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("score", help="each agent's health score, components and weights")
    parser.add_argument("--agent", help="only this agent")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_state_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.url:
        rows = Client(args.url).get("/api/score", [("agent", args.agent)] if args.agent else None)["agents"]
    else:
        config = config_from(args)
        data_dir = data_dir_from(args, config)
        keeper = ScoreKeeper.from_config(config.raw, data_dir, time.time)
        keeper.rebuild(Layout.under(data_dir).events_dir)
        rows = keeper.scorer.view(args.agent)
    if args.format == "json":
        for row in rows:
            print(orjson.dumps(row).decode())
        return 0
    if not rows:
        print(f"no score for {args.agent}" if args.agent else "no agent scored yet")
        return 0
    print(f"{'AGENT':<16}  {'SCORE':>5}  {'STATE':<8}  " + "  ".join(f"{SHORT[c]:>9}" for c in COMPONENTS)
          + "  WEIGHTS")
    for row in rows:
        print(f"{row['agent']:<16}  {row['score']:>5.2f}  {'degraded' if row['degraded'] else 'ok':<8}  "
              + "  ".join(f"{row['components'][c]:>9.2f}" for c in COMPONENTS) + "  " + weights_text(row["weights"]))
    return 0


def weights_text(weights: dict[str, Any]) -> str:
    return " ".join(f"{SHORT[c]}={weights[c]:.2f}" for c in COMPONENTS if c in weights)

