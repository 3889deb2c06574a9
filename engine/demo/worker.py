"""A demo agent: `python -m engine.demo.worker --role coder|analyst|monitor|researcher`.

It posts to the engine (`AIOS_URL`, as `AIOS_AGENT`) what a real agent would: a heartbeat every few
seconds, `agent.task_started` / `agent.task_done` (`ok`, `duration_ms`) for tasks typical of its role, now
and then an `agent.error` and a failed task, a slowdown (a task taking several times its usual time), and
`agent.learning` spells (`active: true`, then `false`). `--seed` makes the behaviour repeatable; `--pace`
scales every wait but the heartbeat (tests and quick demos run at `--pace 0.05`).

Work progresses only while the worker runs: it turns every `WORK_TICK_S`, and a longer gap between two turns
(the process was stopped or starved of CPU: `aios-engine chaos latency`) pushes the rest of its day back by
the time lost, as it would for a real agent's computation. A task reports the wall time it really took
(`duration_ms`), so a slowed agent reports slow tasks; a task past its deadline
(`DEADLINE_FACTOR` times its usual duration) fails with "missed its deadline", as a real agent's would.
When `AIOS_URL_FILE` names a file, the engine URL is read from it again whenever it changes (the engine
writes it; a chaos scenario may route the agent through a delaying proxy for a while).

Standard library only (one small process per agent). Events get their id and `ts` when they happen, so
a post that is retried (the engine restarting, a lost response) is stored once and at its real time.
While the engine cannot be reached, events wait in a bounded queue (only the newest heartbeat is kept:
an old one says nothing) and posts are retried quietly with backoff, but never less often than once a
heartbeat interval while a heartbeat waits: the engine declares an agent down after `interval × misses`
of silence, and an engine restart must not cost healthy agents a restart. SIGTERM or SIGINT: exit 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from engine.durations import parse_duration

QUEUE_MAX = 1000  # events kept while the engine is unreachable; the oldest go first
WORK_TICK_S = 0.1  # the worker turns at least this often; a longer gap means it was not running (stopped, starved)
DEADLINE_FACTOR = 8.0  # a task this many times its usual duration (slow ones are 3-6x) has missed its deadline
BATCH_MAX = 100  # events per post
POST_TIMEOUT_S = 3.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class Role:
    """How one kind of agent spends its day. Durations in seconds; rates are per task."""

    tasks: tuple[str, ...]
    errors: tuple[str, ...]
    topics: tuple[str, ...]
    duration: tuple[float, float]
    idle: tuple[float, float]
    fail_rate: float = 0.06
    slow_rate: float = 0.05
    learn_rate: float = 0.04  # chance, between two tasks, that a learning spell starts
    spell: tuple[float, float] = (20.0, 60.0)


ROLES = {
    "coder": Role(
        tasks=("implement feature flag rollout", "fix flaky login test", "refactor billing module",
               "review pull request", "write unit tests for parser", "upgrade dependencies",
               "profile slow endpoint", "update API client"),
        errors=("test suite failed: 3 failures in tests/test_billing.py", "merge conflict in src/api/routes.py",
                "type check failed: 2 errors", "build failed: missing dependency 'orjson'"),
        topics=("new framework release notes", "codebase architecture", "async patterns"),
        duration=(4.0, 15.0), idle=(1.0, 4.0)),
    "analyst": Role(
        tasks=("weekly revenue report", "churn cohort analysis", "clean customer dataset",
               "A/B test readout", "refresh sales dashboard", "forecast next quarter demand"),
        errors=("query timed out after 30s", "missing column 'region' in sales_2024",
                "dashboard refresh failed: upstream table locked"),
        topics=("causal inference methods", "the new data warehouse schema"),
        duration=(5.0, 20.0), idle=(2.0, 6.0), fail_rate=0.05),
    "monitor": Role(
        tasks=("check service health", "scan error logs", "verify nightly backups", "probe API latency",
               "check certificate expiry", "audit disk usage"),
        errors=("probe to api.internal timed out", "backup checksum mismatch on db-replica-2",
                "log shipper lagging 5 minutes behind"),
        topics=("alerting runbooks",),
        duration=(1.0, 4.0), idle=(1.0, 3.0), fail_rate=0.04, slow_rate=0.04, learn_rate=0.01,
        spell=(10.0, 30.0)),
    "researcher": Role(
        tasks=("literature review: retrieval augmentation", "summarize new paper", "benchmark embedding models",
               "survey vector databases", "draft findings memo", "reproduce published baseline"),
        errors=("source unavailable (HTTP 503)", "rate limited by search API", "dataset download corrupted"),
        topics=("reinforcement learning from feedback", "evaluation methodology", "long-context models"),
        duration=(8.0, 25.0), idle=(2.0, 6.0), fail_rate=0.05, slow_rate=0.06, learn_rate=0.10),
}

# (wait_s, type, data, severity): wait that long, then post (type None: only wait)
Step = tuple[float, str | None, dict[str, Any], str]


def life(role_name: str, rng: random.Random) -> Iterator[Step]:
    """An endless working day: idle gaps, tasks (some failing or slow), learning spells."""
    role = ROLES[role_name]
    count = 0
    while True:
        yield rng.uniform(*role.idle), None, {}, "info"
        if rng.random() < role.learn_rate:
            topic = rng.choice(role.topics)
            spell = rng.uniform(*role.spell)
            yield 0.0, "agent.learning", {"active": True, "topic": topic}, "info"
            yield spell, "agent.learning", {"active": False, "topic": topic, "duration_ms": round(spell * 1000)}, "info"
            continue
        count += 1
        task = {"task": rng.choice(role.tasks), "task_id": f"{role_name}-{count}"}
        duration = rng.uniform(*role.duration)
        deadline_s = duration * DEADLINE_FACTOR
        if rng.random() < role.slow_rate:
            duration *= rng.uniform(3.0, 6.0)
        yield 0.0, "agent.task_started", {**task, "deadline_s": round(deadline_s, 3)}, "info"
        if rng.random() < role.fail_rate:
            failed_at = duration * rng.uniform(0.3, 0.9)
            error = rng.choice(role.errors)
            yield failed_at, "agent.error", {**task, "message": error}, "error"
            yield 0.0, "agent.task_done", {**task, "ok": False, "duration_ms": round(failed_at * 1000),
                                           "error": error}, "warning"
        else:
            yield duration, "agent.task_done", {**task, "ok": True, "duration_ms": round(duration * 1000)}, "info"


# one post of a batch: (HTTP status, Retry-After seconds); status None when no answer came
Send = Callable[[list[dict[str, Any]]], tuple[int | None, float | None]]


class Route:
    """The engine URL from `AIOS_URL_FILE`, read again whenever the file changes (one stat per post)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen: int | None = None

    def url(self, current: str) -> str:
        """The events URL to post to: from the file when it changed and holds an http(s) URL, else `current`."""
        try:
            changed = os.stat(self._path).st_mtime_ns
            if changed == self._seen:
                return current
            with open(self._path, encoding="utf-8") as file:
                text = file.read(2048).strip()
        except OSError:
            return current
        self._seen = changed
        if not text.startswith(("http://", "https://")):
            return current
        return text.rstrip("/") + "/api/events"


class Poster:
    """Sends events to `POST /api/events` in batches, keeping them while the engine cannot take them.

    The newest heartbeat waits apart from the other events and rides in every post, so a backlog never
    holds it back; while it waits, a failed post is retried within `heartbeat_s`, whatever the backoff
    or a `Retry-After` say (other events alone back off up to 30 s)."""

    def __init__(self, url: str, token: str | None, heartbeat_s: float, send: Send | None = None,
                 jitter: random.Random | None = None, route: Route | None = None) -> None:
        self._url = url.rstrip("/") + "/api/events"
        self._route = route
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._send = send or self._post
        self._heartbeat_s = heartbeat_s
        self._queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_MAX)
        self._beat: dict[str, Any] | None = None  # the newest heartbeat not posted yet
        self._jitter = jitter or random.Random()  # apart from the seeded day, so retries do not shift it
        self._backoff = 0.0
        self._failed_at = float("-inf")  # monotonic time of the last failed post
        self._wait = 0.0  # how long after it the other events wait
        self._outage: str | None = None

    @property
    def next_try(self) -> float:
        """Monotonic time of the next attempt: within a heartbeat interval of the failure while one waits."""
        wait = min(self._wait, self._heartbeat_s) if self._beat is not None else self._wait
        return self._failed_at + wait

    def add(self, event: dict[str, Any]) -> None:
        if event["type"] == "agent.heartbeat":
            self._beat = event
        else:
            self._queue.append(event)

    def pending(self) -> bool:
        return self._beat is not None or bool(self._queue)

    def flush(self, now: float) -> None:
        """Post what is queued, a batch at a time, unless waiting out a failure."""
        while self.pending() and now >= self.next_try:
            beat = [self._beat] if self._beat is not None else []
            batch = [self._queue[i] for i in range(min(BATCH_MAX - len(beat), len(self._queue)))] + beat
            status, retry_after = self._send(batch)
            if status is not None and (200 <= status < 300 or status == 400):
                if status == 400:  # the engine will never take this batch: do not retry it forever
                    say(f"engine refused {len(batch)} events (400); dropped")
                for _ in range(len(batch) - len(beat)):
                    self._queue.popleft()
                self._beat = None
                if self._outage:
                    say("engine reachable again")
                self._backoff, self._failed_at, self._wait, self._outage = 0.0, float("-inf"), 0.0, None
                continue
            problem = f"HTTP {status}" if status is not None else "unreachable"
            if self._outage is None:
                say(f"engine {problem} at {self._url}; retrying quietly")
            self._outage = problem
            self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self._backoff * 2))
            self._failed_at = now
            self._wait = retry_after or self._backoff * self._jitter.uniform(0.5, 1.0)

    def _post(self, batch: list[dict[str, Any]]) -> tuple[int | None, float | None]:
        """(status, Retry-After seconds) of one post; status None when no answer came."""
        if self._route is not None:
            self._url = self._route.url(self._url)
        request = urllib.request.Request(self._url, json.dumps(batch).encode(), self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
                return response.status, None
        except urllib.error.HTTPError as exc:
            retry = exc.headers.get("Retry-After", "") if exc.headers else ""
            return exc.code, float(retry) if retry.isdigit() else None
        except (OSError, ValueError):  # refused, reset, timed out, a bad URL
            return None, None


def say(line: str) -> None:
    """One line to the agent's log (stdout, which the engine captures)."""
    print(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {line}", flush=True)


class Worker:
    """Interleaves heartbeats with the role's day and hands every event to the Poster."""

    def __init__(self, agent: str, role: str, heartbeat_s: float, pace: float, seed: int | None,
                 poster: Poster) -> None:
        self.agent = agent
        self.role = role
        self.heartbeat_s = heartbeat_s
        self.pace = pace
        self.poster = poster
        self._day = life(role, random.Random(seed))
        self._ids = f"{agent}-{os.getpid()}-{time.time_ns() // 1_000_000:x}"
        self._count = 0
        self._status = "idle"
        self._born = 0.0  # monotonic times: the first turn, the next heartbeat (None before), the next step
        self._next_beat: float | None = None
        self._next_step = 0.0
        self._step: Step = (0.0, None, {}, "info")  # the day's next step, due at `_next_step`
        self._task: tuple[float, float | None] | None = None  # the current task: monotonic start, deadline_s
        self._last_turn: float | None = None

    def event(self, type_: str, data: dict[str, Any], severity: str = "info") -> None:
        self._count += 1
        self.poster.add({"id": f"{self._ids}-{self._count}", "type": type_, "source": f"agent.{self.agent}",
                         "agent": self.agent, "severity": severity, "data": data,
                         "ts": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")})
        if type_ == "agent.task_started":
            self._status = "working"
        elif type_ == "agent.task_done" or (type_ == "agent.learning" and not data["active"]):
            self._status = "idle"
        elif type_ == "agent.learning":
            self._status = "learning"

    def tick(self, now: float) -> float:
        """One turn at monotonic `now` (the first heartbeat at the first turn): the heartbeat when due, the
        day's steps that are due, a flush; returns when the next turn is due."""
        if self._next_beat is None:
            self._step = next(self._day)
            self._born = self._next_beat = now
            self._next_step = now + self._step[0] * self.pace
        elif self._last_turn is not None and now - self._last_turn > 2 * WORK_TICK_S:
            self._next_step += now - self._last_turn - WORK_TICK_S  # not running meanwhile: no work was done
        self._last_turn = now
        if now >= self._next_beat:
            self.event("agent.heartbeat", {"pid": os.getpid(), "role": self.role, "status": self._status,
                                           "uptime_s": round(now - self._born, 1)})
            self._next_beat = max(self._next_beat + self.heartbeat_s, now)
        while now >= self._next_step:
            _, type_, data, severity = self._step
            if type_ is not None:
                for event in self._timed(type_, data, severity, now):
                    self.event(*event)
            self._step = next(self._day)
            self._next_step += self._step[0] * self.pace
        self.poster.flush(now)
        return min(self._next_beat, self._next_step, self.poster.next_try if self.poster.pending() else self._next_beat)

    def _timed(self, type_: str, data: dict[str, Any], severity: str,
               now: float) -> list[tuple[str, dict[str, Any], str]]:
        """A finished task with the time it really took (in the day's time: wall time over `pace`), failed
        when that is past its deadline: an agent slowed from outside misses deadlines."""
        if type_ == "agent.task_started":
            self._task = (now, data.get("deadline_s"))
        if type_ != "agent.task_done" or self._task is None:
            return [(type_, data, severity)]
        (started, deadline), self._task = self._task, None
        took = (now - started) / self.pace
        data = {**data, "duration_ms": round(took * 1000)}
        if not data.get("ok") or deadline is None or took <= deadline:
            return [(type_, data, severity)]
        error = f"missed its deadline: {took:.1f} s for {deadline:.1f} s"
        task = {k: data[k] for k in ("task", "task_id") if k in data}
        return [("agent.error", {**task, "message": error}, "error"),
                ("agent.task_done", {**data, "ok": False, "error": error}, "warning")]

    def run(self, stop: threading.Event) -> None:
        """Turn until `stop` is set."""
        while not stop.is_set():
            wake = self.tick(time.monotonic())
            stop.wait(min(WORK_TICK_S, max(0.0, wake - time.monotonic())))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.demo.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--role", required=True, choices=sorted(ROLES))
    parser.add_argument("--heartbeat", type=parse_duration, default=3.0, metavar="DURATION",
                        help="time between heartbeats (default 3s)")
    parser.add_argument("--seed", type=int, default=None, help="repeatable behaviour")
    parser.add_argument("--pace", type=float, default=1.0, help="multiplies every wait but the heartbeat")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    agent = os.environ.get("AIOS_AGENT") or args.role
    url = os.environ.get("AIOS_URL") or "http://127.0.0.1:8765"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    say(f"{agent} ({args.role}) reporting to {url}, pid {os.getpid()}")
    route = Route(os.environ["AIOS_URL_FILE"]) if os.environ.get("AIOS_URL_FILE") else None
    poster = Poster(url, os.environ.get("AIOS_TOKEN"), args.heartbeat, route=route)
    Worker(agent, args.role, args.heartbeat, args.pace, args.seed, poster).run(stop)
    say(f"{agent} stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
