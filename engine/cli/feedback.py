"""`aios-engine feedback EVENT_ID --label true|false` and `feedback --agent A --at T --label true`.

Labels a `score.degraded` event (was the degradation real?) or a degradation the score missed; weight
tuning learns from these (docs/score.md). With `--url` the running engine stores it (`POST
/api/feedback`); with `--data` it is appended to the files under the data-dir lock.
"""
from __future__ import annotations

import argparse
import time

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.common import add_state_args, config_from, data_dir_from
from engine.score.feedback import FeedbackError, feedback_label
from engine.score.labels import LabelFile
from engine.store.layout import Layout
from engine.store.lock import DataDirLocked, DataLock


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("feedback", help="label a score degradation: real or a false alarm")
    parser.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="a score.degraded event")
    parser.add_argument("--agent", help="with --at: a degradation of this agent the score missed")
    parser.add_argument("--at", help="with --agent: when (RFC 3339)")
    parser.add_argument("--label", required=True, choices=("true", "false"), help="was it a real degradation?")
    add_state_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.event_id) == bool(args.agent or args.at):
        raise UserError("give either EVENT_ID, or --agent and --at")
    body = {"event": args.event_id} if args.event_id else {"agent": args.agent, "at": args.at}
    body["label"] = args.label == "true"
    if args.url:
        _, answer = Client(args.url).post("/api/feedback", body)
        record = answer["label"]
    else:
        data_dir = data_dir_from(args, config_from(args))
        try:
            with DataLock(data_dir):
                record = feedback_label(Layout.under(data_dir).events_dir, body, time.time())
                LabelFile(data_dir).append([record])
        except DataDirLocked as exc:
            raise UserError(f"{exc} (use --url to ask the running engine)") from None
        except FeedbackError as exc:
            raise UserError(f"feedback: {exc}" + (f" ({exc.pointer[1:]})" if exc.pointer else "")) from None
    what = f"event {record['event']}" if record.get("event") else f"{record['agent']} at {record['at']}"
    print(f"labelled {what}: {'real' if record['label'] else 'false alarm'} ({record['agent']})")
    return 0
