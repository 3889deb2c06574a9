"""The notifier with real Apprise deliveries to sinks on 127.0.0.1: an aiohttp server receiving `json://`
posts and an aiosmtpd server receiving `mailto://` mail. The clock is injected: windows and backoff are
advanced by hand, never slept through."""
from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.smtp import SMTP
from apprise.plugins.email.base import NotifyEmail

from engine.actions.base import RunInfo, Services
from engine.actions.notify import Notify
from engine.config import load_config
from engine.events import EventValidator
from engine.notify import notifier as notifier_module
from engine.notify.notifier import Notifier, Pending
from engine.notify.outbox import Outbox
from engine.playbooks.lint import lint_file
from engine.schemas import apply_defaults, load_schema


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class HttpSink:
    """Takes Apprise's json:// posts; answers 503 while `down`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.down = False
        self.delay_s = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        await asyncio.sleep(self.delay_s)
        self.posts.append({"path": request.rel_url.raw_path, "auth": request.headers.get("Authorization"),
                           **await request.json()})
        return web.Response(text="ok")

    async def __aenter__(self) -> HttpSink:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


class SmtpSink:
    """Takes mail over plain SMTP (no TLS) and keeps each message parsed."""

    def __init__(self) -> None:
        self.mails: list[email.message.EmailMessage] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        self.mails.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 OK"

    async def __aenter__(self) -> SmtpSink:
        self._server = await asyncio.get_running_loop().create_server(lambda: SMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://aios@127.0.0.1:{self.port}?smtp=127.0.0.1&mode=insecure&from=aios@example.com&to={to}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def section(targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A `notifications` section with the schema's defaults, as load_config would hand it over."""
    full = apply_defaults(load_schema("config"), {"notifications": {"targets": targets, **extra}})
    return full["notifications"]


class Recorder:
    """The engine's emit: the notification.* events the notifier stores."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, type_: str, data: dict[str, Any], cause: dict[str, Any], severity: str) -> None:
        self.events.append({"type": type_, "data": data, "cause": cause, "severity": severity})

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == type_]


def problem_event(what: str, problem: str, event_id: str, agent: str = "coder", kind: str = "agent-down",
                  **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": f"problem.{what}", "ts": "2027-01-15T08:00:00.000Z", "agent": agent,
            "severity": {"opened": "warning", "escalated": "error", "resolved": "info"}[what],
            "data": {"problem": problem, "kind": kind, "key": f'["{agent}"]', "subject": {"agent": agent}, **data}}


def scenario(body: Callable[..., Awaitable[None]], tmp_path: Path, targets: Callable[..., dict[str, Any]],
             **extra: Any) -> None:
    """Run `body(notifier, clock, recorder, http, smtp)` with both sinks up and targets built from them."""
    async def main() -> None:
        async with HttpSink() as http, SmtpSink() as smtp:
            clock, recorder = Clock(), Recorder()
            notifier = Notifier.from_config(section(targets(http, smtp), **extra), emit=recorder, clock=clock,
                                            data_dir=tmp_path)
            try:
                await body(notifier, clock, recorder, http, smtp)
            finally:
                await notifier.close()

    asyncio.run(main())


def test_a_problem_reaches_the_http_sink_and_the_smtp_sink(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        await notifier.pump()
        assert http.posts == [] and smtp.mails == []  # gathering for the window
        clock.now += 60
        await notifier.pump()
        assert len(http.posts) == 1 and len(smtp.mails) == 1
        post, mail = http.posts[0], smtp.mails[0]
        assert post["title"] == '[opened] agent-down {"agent":"coder"}' and post["type"] == "warning"
        assert "opened: agent-down" in post["message"] and "(problem pr-1)" in post["message"]
        assert mail["Subject"] == post["title"] and mail["To"] == "ops@example.com"
        assert "problem pr-1" in mail.get_body(("plain",)).get_content()
        assert rec.of("notification.sent") == [{"target": "oncall", "problem": "pr-1", "attempt": 1,
                                                "title": post["title"], "entries": 1}]
        assert rec.events[0]["cause"]["id"] == "e1"  # its chain follows the problem event

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url(), smtp.url()]}})


def test_events_about_one_problem_within_the_window_are_one_message(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-a", "e1", agent="coder"))
        clock.now += 5
        notifier.observe(problem_event("opened", "pr-b", "e2", agent="monitor"))
        clock.now += 20
        notifier.observe(problem_event("escalated", "pr-a", "e3", agent="coder", reasons=["no_playbook"]))
        await notifier.pump()
        assert http.posts == []
        clock.now += 35  # 60 s after pr-a's first event, 55 s after pr-b's
        await notifier.pump()
        assert [p["title"] for p in http.posts] == ['[escalated] agent-down {"agent":"coder"}']
        lines = http.posts[0]["message"].splitlines()
        assert len(lines) == 2 and "opened:" in lines[0] and "escalated:" in lines[1]
        assert "reasons: no_playbook" in lines[1] and http.posts[0]["type"] == "failure"
        clock.now += 5
        await notifier.pump()
        assert [p["title"] for p in http.posts][1:] == ['[opened] agent-down {"agent":"monitor"}']
        assert [d["entries"] for d in rec.of("notification.sent")] == [2, 1]

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}})


def test_exactly_one_resolved_message_per_problem(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(NotifyEmail, "request_rate_per_sec", 0)  # Apprise spaces mails to one server 5.5 s apart
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        clock.now += 60
        await notifier.pump()  # the opening went out on its own
        clock.now += 30
        notifier.observe(problem_event("resolved", "pr-1", "e2", heal_s=90.0, by="run", run_id="run-7"))
        notifier.observe(problem_event("resolved", "pr-1", "e3", heal_s=90.5, by="run", run_id="run-7"))
        notifier.observe(problem_event("resolved", "pr-1", "e2", heal_s=90.0, by="run", run_id="run-7"))
        await notifier.pump()  # a resolution is sent at once, not after a window
        clock.now += 600
        await notifier.pump()
        titles = [p["title"] for p in http.posts]
        assert titles == ['[opened] agent-down {"agent":"coder"}', '[resolved] agent-down {"agent":"coder"}']
        assert http.posts[1]["type"] == "success" and "healed in 90.0s by run run-7" in http.posts[1]["message"]
        assert len(smtp.mails) == 2 and smtp.mails[1]["Subject"] == titles[1]

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url(), smtp.url()]}})


def test_a_problem_that_heals_inside_the_window_is_one_resolved_message(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        clock.now += 7
        notifier.observe(problem_event("resolved", "pr-1", "e2", heal_s=7.0, by="itself"))
        await notifier.pump()
        clock.now += 120
        await notifier.pump()
        assert [p["title"] for p in http.posts] == ['[resolved] agent-down {"agent":"coder"}']
        assert len(http.posts[0]["message"].splitlines()) == 2
        assert "healed in 7.0s by itself" in http.posts[0]["message"]

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}})


def test_an_escalation_after_the_window_is_its_own_message(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        clock.now += 60
        await notifier.pump()
        clock.now += 240
        notifier.observe(problem_event("escalated", "pr-1", "e2", reasons=["restart-down-agent: budget"]))
        clock.now += 60
        await notifier.pump()
        assert [p["title"] for p in http.posts] == ['[opened] agent-down {"agent":"coder"}',
                                                    '[escalated] agent-down {"agent":"coder"}']
        assert "reasons: restart-down-agent: budget" in http.posts[1]["message"]

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}})


def test_a_target_that_is_down_is_retried_with_backoff_and_recorded(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        http.down = True
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        clock.now += 60
        await notifier.pump()
        first = rec.of("notification.failed")
        assert len(first) == 1 and first[0]["attempt"] == 1 and first[0]["final"] is False
        assert first[0]["target"] == "oncall" and first[0]["problem"] == "pr-1" and "503" in first[0]["error"]
        clock.now += 9
        await notifier.pump()
        assert len(rec.of("notification.failed")) == 1  # backoff 10 s not over
        clock.now += 1
        await notifier.pump()
        clock.now += 19
        await notifier.pump()
        assert [d["attempt"] for d in rec.of("notification.failed")] == [1, 2]  # then 20 s
        http.down = False
        clock.now += 1
        await notifier.pump()
        assert rec.of("notification.sent")[0]["attempt"] == 3 and len(http.posts) == 1
        assert notifier.pending == {}

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}})


def test_a_target_that_stays_down_is_given_up_after_the_attempts(tmp_path: Path) -> None:
    outcomes: list[tuple[str, str]] = []

    async def main() -> None:
        clock, rec = Clock(), Recorder()
        targets = {"dead": {"urls": [f"json://127.0.0.1:{closed_port()}/x"]}}
        notifier = Notifier.from_config(section(targets, retry={"attempts": 2, "backoff": "1s"}, group_window="0s"),
                                        emit=rec, clock=clock, data_dir=tmp_path,
                                        on_outcome=lambda t, o: outcomes.append((t, o)))
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        for _ in range(5):
            await notifier.pump()
            clock.now += 10
        failed = rec.of("notification.failed")
        assert [(d["attempt"], d["final"]) for d in failed] == [(1, False), (2, False), (3, True)]
        assert "Connection error" in failed[0]["error"] and "retry_at" not in failed[-1]
        assert outcomes == [("dead", "failed"), ("dead", "failed"), ("dead", "gave_up")]
        assert notifier.pending == {}
        await notifier.close()

    asyncio.run(main())


def test_undelivered_messages_survive_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        async with HttpSink() as http:
            clock, rec = Clock(), Recorder()
            conf = section({"oncall": {"urls": [http.url()]}})
            first = Notifier.from_config(conf, emit=rec, clock=clock, data_dir=tmp_path)
            first.observe(problem_event("opened", "pr-1", "e1"))
            clock.now += 10
            first.observe(problem_event("escalated", "pr-1", "e2", reasons=["no_playbook"]))
            await first.pump()
            await first.close()  # the engine stops inside the window
            assert (tmp_path / "notify" / "outbox.json").exists()
            second = Notifier.from_config(conf, emit=rec, clock=clock, data_dir=tmp_path)
            await second.load()
            second.observe(problem_event("opened", "pr-1", "e1"))  # seen again while catching up: not twice
            clock.now += 50
            await second.pump()
            assert len(http.posts) == 1 and len(http.posts[0]["message"].splitlines()) == 2
            await second.close()
            third = Notifier.from_config(conf, emit=rec, clock=clock, data_dir=tmp_path)
            await third.load()
            assert third.pending == {}
            await third.close()

    asyncio.run(main())


def test_a_damaged_outbox_is_set_aside_and_neither_stops_loading_nor_the_delivery_loop(tmp_path: Path) -> None:
    good = {"id": "e1:oncall", "target": "oncall", "group": "pr-1", "problem": "pr-1", "cause": {"id": "e1"},
            "due": 1_800_000_000.0, "gathering": False, "more": 0, "attempt": 0,
            "entries": [{"what": "opened", "title": "t", "line": "l", "level": "warning", "event": "e1"}]}
    outbox = tmp_path / "notify" / "outbox.json"
    outbox.parent.mkdir()
    outbox.write_bytes(orjson.dumps({"version": 1, "pending": [
        {**good, "id": "x1", "entries": ["oops"]}, {**good, "id": "x2", "due": "soon"}, {**good, "id": "x3"}, "junk",
        {**good, "id": "x4", "attempt": None}, good]}))

    async def main() -> None:
        async with HttpSink() as http:
            notifier = Notifier.from_config(section({"oncall": {"urls": [http.url()]}}), emit=Recorder(),
                                            clock=Clock(), data_dir=tmp_path)
            await notifier.load()
            assert sorted(notifier.pending) == ["e1:oncall", "x3"]
            assert b"oops" in (tmp_path / "notify" / "outbox.json.bad").read_bytes()
            notifier.pending["x5"] = Pending.from_saved({**good, "id": "x5"})
            notifier.pending["x5"].due = "soon"  # type: ignore[assignment] - a bug's value: the loop goes on
            task = asyncio.get_running_loop().create_task(notifier.run())
            await wait_until(lambda: len(http.posts) == 2)
            assert not task.done()
            task.cancel()
            await notifier.close()

    asyncio.run(main())


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_entries_are_cut_and_the_outbox_is_rewritten_at_most_every_second(tmp_path: Path, monkeypatch: Any) -> None:
    writes: list[int] = []
    save = Outbox.save
    monkeypatch.setattr(Outbox, "save", lambda self, items: (writes.append(len(items)), save(self, items)))

    async def main() -> None:
        clock = Clock()
        conf = section({"oncall": {"urls": ["json://127.0.0.1:9/x"], "body": "{event.data.blob}"}})
        notifier = Notifier.from_config(conf, emit=Recorder(), clock=clock, data_dir=tmp_path)
        for n in range(50):  # a burst: one write, not fifty
            notifier.observe(problem_event("opened", f"pr-{n}", f"e{n}", blob="x" * 40_000))
            await notifier.pump()
        assert writes == [1]
        clock.now += 1
        await notifier.pump()
        assert writes == [1, 50]
        outbox = tmp_path / "notify" / "outbox.json"
        assert outbox.stat().st_size < 50 * 3 * 1024
        line = orjson.loads(outbox.read_bytes())["pending"][0]["entries"][0]["line"]
        assert len(line.encode()) <= 2048 and line.endswith("(cut, 40000 bytes)")
        notifier.observe(problem_event("opened", "pr-last", "e-last"))
        await notifier.close()  # the last change is written at close, whenever it came
        assert writes == [1, 50, 51]

    asyncio.run(main())


def test_targets_select_problems_by_event_kind_agent_and_severity(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        notifier.observe(problem_event("opened", "pr-1", "e1", agent="coder"))
        notifier.observe(problem_event("opened", "pr-2", "e2", agent="monitor", kind="cpu-spike"))
        notifier.observe(problem_event("escalated", "pr-2", "e3", agent="monitor", kind="cpu-spike"))
        notifier.observe(problem_event("resolved", "pr-1", "e4"))
        await notifier.pump()
        by_path = sorted((p["path"], p["title"]) for p in http.posts)
        assert by_path == [("/coder-only", '[opened] agent-down {"agent":"coder"}'),
                           ("/coder-only", '[resolved] agent-down {"agent":"coder"}'),
                           ("/escalations", '[escalated] cpu-spike {"agent":"monitor"}')]
        assert not any(p["path"] == "/severe" for p in http.posts)  # problems.cause unknown: warning < error

    scenario(body, tmp_path, lambda http, smtp: {
        "coder-only": {"urls": [http.url("coder-only")], "agents": ["coder"]},
        "escalations": {"urls": [http.url("escalations")], "events": ["escalated"], "kinds": ["cpu-spike"]},
        "severe": {"urls": [http.url("severe")], "min_severity": "error", "events": ["opened"]},
        "nothing": {"urls": [http.url("nothing")], "events": []}}, group_window="0s")


def test_templates_look_up_the_problem_and_its_cause(tmp_path: Path) -> None:
    async def main() -> None:
        async with HttpSink() as http:
            rec = Recorder()
            cause = {"id": "c1", "type": "agent.down", "severity": "error", "data": {"exit_code": 3}}
            conf = section({"oncall": {"urls": [http.url()], "title": "{agent} down ({problem.cause.data.exit_code})",
                                       "body": "{target}: {problem.status} {problem.nothing}|"}}, group_window="0s")
            notifier = Notifier.from_config(conf, emit=rec, clock=Clock(), data_dir=None,
                                            problem=lambda pid: {"id": pid, "status": "open", "cause": cause})
            notifier.observe(problem_event("opened", "pr-1", "e1"))
            await notifier.pump()
            assert http.posts[0]["title"] == "coder down (3)" and http.posts[0]["message"] == "oncall: open |"
            await notifier.close()

    asyncio.run(main())


def test_the_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        for n in range(5):
            notifier.observe(problem_event("opened", f"pr-{n}", f"e{n}"))
        assert len(notifier.pending) == 2 and notifier.dropped == 3
        for n in range(30):  # one message lists at most 20 entries and counts the rest
            notifier.observe(problem_event("escalated", "pr-0", f"x{n}"))
        notifier.observe(problem_event("resolved", "pr-4", "r4"))  # a resolution passes the cap: never lost
        notifier.observe(problem_event("resolved", "pr-4", "r4b"))  # and is still sent once
        assert len(notifier.pending) == 3 and notifier.dropped == 3
        clock.now += 60
        await notifier.pump()
        first = next(p for p in http.posts if "pr-0" in p["message"])
        assert len(first["message"].splitlines()) == 21 and first["message"].endswith("(and 11 more)")
        assert [p["title"] for p in http.posts if "pr-4" in p["message"]] == ['[resolved] agent-down {"agent":"coder"}']

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}}, queue_max=2)


def test_a_burst_is_timed_from_each_delivery_start_not_from_when_it_was_queued(tmp_path: Path,
                                                                              monkeypatch: Any) -> None:
    monkeypatch.setattr(notifier_module, "GRACE_S", 0.0)

    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        http.delay_s = 0.3  # 20 messages, 4 at a time: the last start 1.2 s after the burst, 1 s timeout each
        for n in range(20):
            notifier.observe(problem_event("opened", f"pr-{n}", f"e{n}"))
        await notifier.pump()
        assert rec.of("notification.failed") == [] and len(rec.of("notification.sent")) == 20 == len(http.posts)

    scenario(body, tmp_path, lambda http, smtp: {"oncall": {"urls": [http.url()]}}, group_window="0s",
             timeout="1s")


def test_secrets_in_urls_come_from_the_environment_and_are_never_shown(tmp_path: Path, monkeypatch: Any,
                                                                       caplog: Any) -> None:
    monkeypatch.setenv("AIOS_TEST_SMTP_PW", "hunter2-secret")
    caplog.set_level(logging.INFO, logger="aios.notify")

    async def main() -> None:
        rec = Recorder()
        url = f"mailto://aios:${{AIOS_TEST_SMTP_PW}}@127.0.0.1:{closed_port()}?smtp=127.0.0.1&mode=insecure" \
              "&from=aios@example.com&to=ops@example.com"
        notifier = Notifier.from_config(section({"mail": {"urls": [url]}}, group_window="0s",
                                                retry={"attempts": 0}), emit=rec, clock=Clock(), data_dir=tmp_path)
        announced = [r.targets for r in caplog.records if r.getMessage() == "notification targets"]
        assert announced and "hunter2" not in str(announced) and "aios:****@127.0.0.1" in str(announced[0]["mail"])
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        await notifier.pump()
        failed = rec.of("notification.failed")
        assert failed and failed[0]["final"] is True and "hunter2" not in str(rec.events)
        await notifier.close()

    asyncio.run(main())


def test_secrets_with_url_characters_are_quoted_and_masked_in_apprise_logs(tmp_path: Path, monkeypatch: Any,
                                                                           caplog: Any) -> None:
    monkeypatch.setenv("AIOS_TEST_PW", "pa/ss@wo:rd-s3cret")
    monkeypatch.setenv("AIOS_TEST_TOKEN", "tok-s3cret/x")
    caplog.set_level(logging.DEBUG, logger="apprise")

    async def body(notifier: Notifier, clock: Clock, rec: Recorder, http: HttpSink, smtp: SmtpSink) -> None:
        assert "s3cret" not in str(notifier.targets["hook"].describe())
        notifier.observe(problem_event("opened", "pr-1", "e1"))
        await notifier.pump()
        assert len(http.posts) == 1 and http.posts[0]["path"] == "/hook/tok-s3cret%2Fx"
        assert base64.b64decode(http.posts[0]["auth"].split()[1]).decode() == "aios:pa/ss@wo:rd-s3cret"
        assert "s3cret" not in caplog.text and "****" in caplog.text

    scenario(body, tmp_path, lambda http, smtp: {"hook": {
        "urls": [f"json://aios:${{AIOS_TEST_PW}}@127.0.0.1:{http.port}/hook/${{AIOS_TEST_TOKEN}}"]}},
        group_window="0s")


def test_a_notify_step_is_stored_and_delivered_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with HttpSink() as http:
            stored: list[dict[str, Any]] = []

            async def emit(type_: str, data: dict[str, Any], severity: str, agent: str | None) -> dict[str, Any]:
                event = {"id": f"n{len(stored)}", "type": type_, "severity": severity, "data": data}
                stored.append(event)
                return event

            services = Services(tmp_path, emit, None, None, None, lambda pid: None, Clock())  # type: ignore[arg-type]
            trigger = problem_event("escalated", "pr-9", "e1")
            run = RunInfo("run-1", "page-oncall", "page", 1, trigger)
            result = await Notify()(run, services, {"target": "oncall", "title": "coder is down", "level": "failure"})
            assert result.ok and result.detail["target"] == "oncall"
            assert stored[0]["type"] == "notification.requested" and stored[0]["data"]["problem"] == "pr-9"
            rec = Recorder()
            notifier = Notifier.from_config(section({"oncall": {"urls": [http.url()], "events": []}}), emit=rec,
                                            clock=Clock(), data_dir=tmp_path)
            notifier.observe(trigger)  # this target hears of no problem event
            notifier.observe(stored[0])
            await notifier.pump()  # no window for a step's message
            assert [(p["title"], p["type"]) for p in http.posts] == [("coder is down", "failure")]
            assert "run run-1 of playbook page-oncall" in http.posts[0]["message"]
            notifier.observe({**stored[0], "id": "n9", "data": {**stored[0]["data"], "target": "nobody"}})
            await notifier.pump()
            assert rec.of("notification.failed")[0]["final"] is True
            assert "no target named 'nobody'" in rec.of("notification.failed")[0]["error"]
            await notifier.close()

    asyncio.run(main())


def test_a_notify_step_rendered_from_big_event_data_is_cut_and_never_fails(tmp_path: Path) -> None:
    validator = EventValidator(clock=Clock())
    stored: list[dict[str, Any]] = []

    async def emit(type_: str, data: dict[str, Any], severity: str, agent: str | None) -> dict[str, Any]:
        event = validator.normalize({"type": type_, "data": data, "severity": severity}, external=False)
        stored.append(event)
        return event

    services = Services(tmp_path, emit, None, None, None, lambda pid: None, Clock())  # type: ignore[arg-type]
    run = RunInfo("run-1", "page-oncall", "page", 1, problem_event("opened", "pr-1", "e1"))
    big = '"\x01' * 14_000  # 40 KB of the event's data, the worst for JSON escaping
    result = asyncio.run(Notify()(run, services, {"target": "oncall", "title": big, "body": big}))
    assert result.ok
    data = stored[0]["data"]
    assert len(data["title"].encode()) <= 1024 and len(data["body"].encode()) <= 8192
    assert data["title"].endswith("(cut, 28000 bytes)") and data["body"].startswith('"\x01"')


def config_errors(path: Path) -> list[str]:
    try:
        load_config(path)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        return str(exc).splitlines()
    return []


def test_config_check_refuses_what_the_engine_would_refuse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notifications:\n  targets:\n    a:\n      urls:\n        - nope://host/x\n        - 'json://'\n"
                   "        - 'nope://${AIOS_TEST_UNSET}/x'\n        - 'slack://${AIOS_TEST_UNSET}/#ops'\n"
                   "  timeout: 0s\n  queue_max: 100000000000000000000000\n")
    found = config_errors(bad)
    assert len(found) == 1 and found[0].startswith(f"{bad}:10:") and "maximum" in found[0]
    bad.write_text(bad.read_text().replace("100000000000000000000000", "5"))
    found = config_errors(bad)  # each URL built as `run` would, without the environment; the timeout
    assert [line.split(": error: ")[0] for line in found] == [f"{bad}:5:11", f"{bad}:6:11", f"{bad}:7:11",
                                                              f"{bad}:9:12"]
    assert "Apprise cannot use this URL" in found[0] and "at least 1s" in found[3]


def test_config_check_and_lint_know_the_targets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notifications:\n  targets:\n    oncall:\n      urls: [json://127.0.0.1:9/x]\n"
                   "      title: '{problem.kind'\n")
    try:
        load_config(bad)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        assert "bad.yaml:5:14: error:" in str(exc) and "not closed" in str(exc)
    else:
        raise AssertionError("a malformed template was accepted")
    good = tmp_path / "aios.yaml"
    good.write_text("notifications:\n  targets:\n    oncall: {urls: ['json://127.0.0.1:9/x']}\n")
    playbook = tmp_path / "page.yaml"
    playbook.write_text("id: page\non: problem.escalated\nsteps:\n"
                        "  - {id: a, action: notify, with: {target: oncal, title: '{data.kind}'}}\n"
                        "  - {id: b, action: notify, with: {target: oncall}}\n"
                        "  - {id: c, action: notify, with: {target: '{data.kind}'}}\n")
    result = lint_file(playbook, load_config(good))
    found = [(d.loc.line, d.code, d.message) for d in result.diagnostics]
    assert found == [(4, "unknown-target", "unknown notification target 'oncal' (did you mean 'oncall'?) "
                      f"(targets in {good}: oncall)")]
    assert lint_file(playbook).diagnostics == []
