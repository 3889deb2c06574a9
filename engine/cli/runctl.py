"""`aios-engine cancel|rerun|approve|deny RUN_ID`, `aios-engine approvals`: run controls of a running engine.

They act on the engine's live state (its queue, its running steps, the runs waiting for a person), so
they always talk to the engine: `--url`, else the address the config's `server` section names. Who asked
goes with every request (`X-AIOS-Actor`) into the events the engine records.
"""
from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson

from engine.cli.client import Client
from engine.cli.common import CONFIG_HELP, config_from

# command -> (help, the API action, takes --reason)
_RUN_COMMANDS = {
    "cancel": ("cancel a queued or running run: kill its steps, restore its files, run its rollback", "cancel", True),
    "rerun": ("run a finished run's playbook again for the same event (through the guards)", "rerun", False),
    "approve": ("approve the run waiting at an approve step", "approve", True),
    "deny": ("deny the run waiting at an approve step (it fails and is rolled back)", "deny", True),
}


def register(sub: argparse._SubParsersAction) -> None:
    """All five commands at once (`build_parser` may call this once per command name)."""
    if "approvals" in sub.choices:
        return
    for name, (help_, _, reason) in _RUN_COMMANDS.items():
        parser = sub.add_parser(name, help=help_)
        parser.add_argument("run_id", metavar="RUN_ID")
        if reason:
            parser.add_argument("--reason", metavar="R", help="why (recorded in the events)")
        _add_target(parser)
        parser.set_defaults(func=_run_command)
    parser = sub.add_parser("approvals", help="the runs waiting for an approval, with their question and expiry")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    _add_target(parser)
    parser.set_defaults(func=_approvals)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", metavar="URL", help="the running engine (default: the config's server address; "
                                                     "token from AIOS_TOKEN)")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _client(args: argparse.Namespace) -> Client:
    if args.url:
        return Client(args.url)
    server = config_from(args).raw["server"]
    host = "127.0.0.1" if server["host"] in ("0.0.0.0", "::") else server["host"]
    host = f"[{host}]" if ":" in host else host
    return Client(f"http://{host}:{server['port']}")


def _run_command(args: argparse.Namespace) -> int:
    action = _RUN_COMMANDS[args.command][1]
    reason = getattr(args, "reason", None)
    body = {"reason": reason} if reason is not None else None
    status, answer = _client(args).post(f"/api/runs/{urllib.parse.quote(args.run_id, safe='')}/{action}", body)
    print(_SAY[args.command](answer, status))
    return 0


def _said(answer: dict[str, Any]) -> str:
    return f" by {answer['by']}" + (f": {answer['reason']}" if answer.get("reason") else "")


_SAY: dict[str, Callable[[dict[str, Any], int], str]] = {
    "cancel": lambda a, status: (f"run {a['run_id']} is being cancelled{_said(a)} (still rolling back)"
                                 if status == 202 else f"run {a['run_id']} cancelled{_said(a)}"
                                 + (" (it was still queued)" if a.get("was") == "queued" else f": {a['status']}")),
    "rerun": lambda a, status: f"run {a['run_id']} {a['outcome']}: a re-run of {a['rerun_of']}",
    "approve": lambda a, status: f"run {a['run_id']} approved{_said(a)}",
    "deny": lambda a, status: f"run {a['run_id']} denied{_said(a)}",
}


def _approvals(args: argparse.Namespace) -> int:
    waiting = _client(args).get("/api/approvals")["approvals"]
    if args.format == "json":
        for item in waiting:
            print(orjson.dumps(item).decode())
        return 0
    if not waiting:
        print("no run waits for an approval")
        return 0
    for item in waiting:
        print(f"{item['run_id']}  {item['playbook']}  agent={item['agent'] or '-'}  step={item['step']}  "
              f"expires {item['expires_at']}")
        print(f"  {item['message']}")
    return 0

