"""The operators' controls on the command line (docs/controls.md), each a call on the running engine's API.

    aios-engine controls                                   what holds now: pause, silences, disables, windows
    aios-engine silence add --agent coder --for 2h --reason "disk swap"
    aios-engine silence list | silence expire ID [--reason R]
    aios-engine pause [--for 30m] --reason R | resume [--reason R]
    aios-engine playbook disable ID [--for 1h] --reason R | playbook enable ID [--reason R]
    aios-engine playbook trigger ID (--event EVENT_ID | --type T [--agent A] [key=value…]) --reason R
    aios-engine agent restart|start NAME [--reason R] | agent stop NAME --reason R
    aios-engine budget reset AGENT --reason R | breaker reset PLAYBOOK [--key K] --reason R

Controls live in the running engine (they take effect at once and are kept under its data/), so these
commands take `--url` (default `$AIOS_URL`, else http://127.0.0.1:8765). Who asked is sent along
(`X-AIOS-Actor: cli:<user>@<host>`) and recorded in the control's event.
"""
from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from typing import Any

from engine.cli import UserError
from engine.cli.client import Client
from engine.cli.emit import parse_fields

DEFAULT_URL = "http://127.0.0.1:8765"


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("AIOS_URL") or DEFAULT_URL,
                        help=f"the running engine (default: $AIOS_URL, else {DEFAULT_URL}; token from AIOS_TOKEN)")


def _reason(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--reason", required=required, help="why: kept in the control's event and shown in "
                                                             "the decisions it sets aside")


def _command(sub: argparse._SubParsersAction, name: str, help_: str, func: Any, reason: bool | None = None
             ) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_)
    _url(parser)
    if reason is not None:
        _reason(parser, reason)
    parser.set_defaults(func=func)
    return parser


def _path(*parts: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)


def _send(args: argparse.Namespace, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    return Client(args.url).post("/api/" + path, body if body is not None else {}, method=method)[1]


def _with(body: dict[str, Any], args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """`body` with the options in `names` that were given (`for_` goes out as `for`)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            body[name.rstrip("_")] = value
    return body


def _show(answer: Any) -> int:
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0


def _decided(answer: dict[str, Any]) -> int:
    """A manual action's decision: 0 when it was queued, 1 (with the reason) when it was set aside."""
    if answer.get("run_id"):
        print(f"{answer['outcome']}: run {answer['run_id']} of {answer['playbook']} (cause {answer['cause']})")
        return 0
    detail = f" — {answer['detail']}" if answer.get("detail") else ""
    raise UserError(f"{answer.get('outcome', 'refused')}: {answer.get('reason')}{detail}")


# -- the commands ------------------------------------------------------------------------------------
def _controls(args: argparse.Namespace) -> int:
    return _show(Client(args.url).get("/api/controls"))


def _silence(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _show(Client(args.url).get("/api/silences"))
    if args.action == "expire":
        if not args.id:
            raise UserError("silence expire needs the silence's ID (silence list shows them)")
        answer = _send(args, _path("silences", args.id), _with({}, args, "reason"), method="DELETE")
        print(f"expired silence {answer['expired']}")
        return 0
    labels = dict(_pair(text) for text in args.label or ())
    body = _with({}, args, "agent", "playbook", "type", "for_", "reason")
    body.update({k: v for k, v in (("labels", labels), ("starts_at", args.starts), ("ends_at", args.until)) if v})
    silence = _send(args, "silences", body)["silence"]
    print(f"silence {silence['id']} {silence['state']} until {silence['ends_at']}")
    return 0


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--label takes key=value, got {text!r}")
    return key, value


def _pause(args: argparse.Namespace) -> int:
    paused = _send(args, "pause", _with({}, args, "for_", "reason"))["paused"]
    print(f"automation paused until {paused['until'] or 'resumed'}: decisions are recorded, nothing runs")
    return 0


def _resume(args: argparse.Namespace) -> int:
    _send(args, "resume", _with({}, args, "reason"))
    print("automation resumed: what the pause held is decided again")
    return 0


def _playbook(args: argparse.Namespace) -> int:
    path = _path("playbooks", args.id, args.action)
    if args.action == "trigger":
        if bool(args.event) == bool(args.type):
            raise UserError("playbook trigger needs --event EVENT_ID or --type T (with key=value data)")
        body = _with({}, args, "event", "reason")
        if args.type:
            fields: dict[str, Any] = {"type": args.type, "data": parse_fields(args.fields)}
            body["fields"] = _with(fields, args, "agent")
        elif args.fields:
            raise UserError("key=value data goes with --type, not --event")
        return _decided(_send(args, path, body))
    if args.action == "disable":
        if not args.reason:
            raise UserError("playbook disable needs --reason")
        held = _send(args, path, _with({}, args, "for_", "reason"))["disabled"]
        print(f"playbook {args.id} disabled until {held['until'] or 'enabled'}")
        return 0
    _send(args, path, _with({}, args, "reason"))
    print(f"playbook {args.id} enabled")
    return 0


def _agent(args: argparse.Namespace) -> int:
    answer = _send(args, _path("agents", args.name, args.action), _with({}, args, "reason"))
    if args.action != "stop":
        return _decided(answer)
    print(f"stopped {answer['agent']} (killed {len(answer['killed'])} processes); it stays stopped until "
          f"aios-engine agent start {answer['agent']}")
    return 0


def _budget(args: argparse.Namespace) -> int:
    answer = _send(args, _path("budget", args.agent, "reset"), _with({}, args, "reason"))
    print(f"budget of {answer['agent']} reset: {answer['forgotten_runs']} counted runs forgotten")
    return 0


def _breaker(args: argparse.Namespace) -> int:
    answer = _send(args, _path("breakers", args.playbook, "reset"), _with({}, args, "key", "reason"))
    closed = ", ".join(f"{key} (was {state})" for key, state in answer["reset"].items())
    print(f"breakers of {answer['playbook']} closed: {closed}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    _command(sub, "controls", "what holds automation now: pause, silences, runtime disables, maintenance", _controls)
    silence = _command(sub, "silence", "keep the engine's hands off an agent, playbook, label or event type",
                       _silence, reason=False)
    silence.add_argument("action", choices=("add", "list", "expire"))
    silence.add_argument("id", nargs="?", metavar="ID", help="with expire: the silence")
    silence.add_argument("--agent", help="agent name glob")
    silence.add_argument("--playbook", help="playbook id glob")
    silence.add_argument("--type", help="event type glob")
    silence.add_argument("--label", action="append", metavar="KEY=VALUE", help="playbook label (repeatable)")
    silence.add_argument("--for", dest="for_", metavar="DURATION", help="how long (default: controls.default_silence)")
    silence.add_argument("--starts", metavar="TIME", help="RFC 3339 start (default: now)")
    silence.add_argument("--until", metavar="TIME", help="RFC 3339 end, instead of --for")
    pause = _command(sub, "pause", "automation off: decisions are still matched and recorded, nothing runs",
                     _pause, reason=True)
    pause.add_argument("--for", dest="for_", metavar="DURATION", help="default: until resume")
    _command(sub, "resume", "automation on again after pause", _resume, reason=False)
    playbook = _command(sub, "playbook", "disable or enable a playbook at run time, or trigger it by hand",
                        _playbook, reason=False)
    playbook.add_argument("action", choices=("disable", "enable", "trigger"))
    playbook.add_argument("id", metavar="ID")
    playbook.add_argument("--for", dest="for_", metavar="DURATION", help="disable: how long (default: until enable)")
    playbook.add_argument("--event", metavar="EVENT_ID", help="trigger: the stored event to run it for")
    playbook.add_argument("--type", help="trigger: the type of a new event to run it for")
    playbook.add_argument("--agent", help="trigger: the new event's agent")
    playbook.add_argument("fields", nargs="*", metavar="key=value", help="trigger: the new event's data")
    playbook.set_defaults(trailing="fields")
    agent = _command(sub, "agent", "restart, stop or start an agent by hand (restart and start go through the "
                                   "budget and breaker like a playbook; stop holds it until start)",
                     _agent, reason=False)
    agent.add_argument("action", choices=("restart", "stop", "start"))
    agent.add_argument("name", metavar="NAME")
    budget = _command(sub, "budget", "forget the runs counted against an agent's remediation budget", _budget,
                      reason=True)
    budget.add_argument("action", choices=("reset",))
    budget.add_argument("agent", metavar="AGENT")
    breaker = _command(sub, "breaker", "close a playbook's circuit breakers", _breaker, reason=True)
    breaker.add_argument("action", choices=("reset",))
    breaker.add_argument("playbook", metavar="PLAYBOOK")
    breaker.add_argument("--key", help="one throttle-key value (JSON text, as reactor.circuit_open shows it)")
