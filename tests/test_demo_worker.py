"""The demo worker: its day is repeatable and plausible, its posts have the contract's shapes, it rides
out an engine that is restarting (its heartbeats reaching the engine again within an interval of its return),
and it stops cleanly on SIGTERM."""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.demo.worker import BATCH_MAX, ROLES, Poster, Route, Worker, life
from engine.events import EventValidator

ROOT = Path(__file__).resolve().parent.parent


class Recorder(ThreadingHTTPServer):
    """A stand-in engine: records every post to /api/events; the first `refuse` posts get 503."""

    def __init__(self, refuse: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.refuse = refuse
        self.posts: list[tuple[dict[str, str], list[dict[str, Any]]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for _, batch in self.posts for event in batch]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            if self.server.refuse > 0:
                self.server.refuse -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            assert self.path == "/api/events"
            self.server.posts.append((dict(self.headers), json.loads(body)))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"accepted": 1}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    server = Recorder(getattr(request, "param", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def start_worker(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AIOS_URL": url, "AIOS_AGENT": "coder", "AIOS_TOKEN": "t" * 20,
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "engine.demo.worker", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def worker(recorder: Recorder) -> Iterator[subprocess.Popen[str]]:
    proc = start_worker(recorder.url, "--role", "coder", "--heartbeat", "200ms", "--pace", "0.03", "--seed", "3")
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def wait_for(recorder: Recorder, wanted: Counter[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = recorder.events()
        if not wanted - Counter(e["type"] for e in events):
            return events
        assert time.monotonic() < deadline, f"missing {wanted - Counter(e['type'] for e in events)}"
        time.sleep(0.05)


def test_the_worker_posts_heartbeats_and_tasks_with_the_contract_shapes(recorder, worker):
    events = wait_for(recorder, Counter({"agent.heartbeat": 3, "agent.task_started": 2, "agent.task_done": 2}))
    headers, _ = recorder.posts[0]
    assert headers["Content-Type"] == "application/json" and headers["Authorization"] == "Bearer " + "t" * 20
    validator = EventValidator()
    for event in events:
        validator.normalize(event)  # raises on anything the engine would refuse
        assert event["agent"] == "coder" and event["source"] == "agent.coder"
    assert len({e["id"] for e in events}) == len(events)
    beat = next(e for e in events if e["type"] == "agent.heartbeat")
    assert beat["data"]["pid"] == worker.pid and beat["data"]["role"] == "coder"
    done = next(e for e in events if e["type"] == "agent.task_done")
    started = next(e for e in events
                   if e["type"] == "agent.task_started" and e["data"]["task_id"] == done["data"]["task_id"])
    assert started["data"]["task"] in ROLES["coder"].tasks and started["data"]["task"] == done["data"]["task"]
    assert isinstance(done["data"]["ok"], bool) and isinstance(done["data"]["duration_ms"], int)

    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=5)
    assert worker.returncode == 0, output
    assert "coder stopping" in output


@pytest.mark.parametrize("recorder", [2], indirect=True)
def test_the_worker_retries_quietly_while_the_engine_refuses(recorder, worker):
    wait_for(recorder, Counter({"agent.heartbeat": 2, "agent.task_done": 1}))
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=5)
    assert worker.returncode == 0
    assert output.count("retrying quietly") == 1 and "engine reachable again" in output
    assert "Traceback" not in output


def test_a_day_is_repeatable_and_mostly_healthy() -> None:
    for role in ROLES:
        first = list(itertools.islice(life(role, random.Random(11)), 3000))
        assert first == list(itertools.islice(life(role, random.Random(11)), 3000))
        kinds = Counter(step[1] for step in first)
        done = [step[2] for step in first if step[1] == "agent.task_done"]
        failed = sum(not d["ok"] for d in done)
        assert kinds["agent.task_started"] - kinds["agent.task_done"] in (0, 1)  # the last may be running
        assert kinds["agent.error"] == failed and 0 < failed < 0.15 * len(done)
        durations = sorted(d["duration_ms"] for d in done if d["ok"])
        low, high = ROLES[role].duration
        assert durations[len(durations) // 2] < high * 1000 < durations[-1]  # slow tasks stand out
        spells = [step[2]["active"] for step in first if step[1] == "agent.learning"]
        assert spells and spells[::2] == [True] * len(spells[::2]) and not any(spells[1::2])


class Engine:
    """A stand-in for the engine on a simulated clock: `outage` is (start, end, answer while down)."""

    def __init__(self, outage: tuple[float, float, tuple[int | None, float | None]]) -> None:
        self.now = 0.0
        self.outage = outage
        self.posts: list[tuple[float, bool, list[dict[str, Any]]]] = []  # (when, taken, batch)

    def send(self, batch: list[dict[str, Any]]) -> tuple[int | None, float | None]:
        start, end, answer = self.outage
        down = start <= self.now < end
        self.posts.append((self.now, not down, batch))
        return answer if down else (202, None)

    def beats(self, taken: bool) -> list[float]:
        """When posts carrying a heartbeat were made (and taken, or refused)."""
        return [when for when, ok, batch in self.posts if ok == taken and any(e["type"] == "agent.heartbeat"
                                                                              for e in batch)]


def live(engine: Engine, worker: Worker, until: float) -> None:
    """Run the worker's turns on the simulated clock, each when the worker asks for it."""
    while engine.now < until:
        wake = worker.tick(engine.now)
        assert wake > engine.now, "a turn that asks to run again at once would spin"
        engine.now = wake


@pytest.mark.parametrize("answer", [(None, None), (503, 60.0)], ids=["refused", "retry-after-60s"])
def test_after_a_15s_outage_the_first_heartbeat_reaches_the_engine_within_an_interval(answer):
    engine = Engine((10.0, 25.0, answer))
    worker = Worker("coder", "coder", 3.0, 0.2, 5, Poster("http://engine", None, 3.0, engine.send, random.Random(1)))
    live(engine, worker, 60.0)

    refused = engine.beats(taken=False)
    assert refused[0] >= 10.0 and refused[-1] < 25.0
    assert max(b - a for a, b in zip([10.0, *refused], [*refused, 25.0])) == pytest.approx(3.0)  # each interval
    taken = [t for t in engine.beats(taken=True) if t >= 25.0]
    assert taken[0] - 25.0 <= 3.0 + 1e-9  # before the engine's 3 s × 4 misses ran out, with time to spare
    gaps = [b - a for a, b in zip(taken, taken[1:])]
    assert gaps and all(gap == pytest.approx(3.0, abs=0.01) for gap in gaps[1:])  # the normal cadence again
    kept = [e for _, ok, batch in engine.posts if ok for e in batch if e["type"] != "agent.heartbeat"]
    made = [e for _, _, batch in engine.posts for e in batch if e["type"] != "agent.heartbeat"]
    assert kept and {e["id"] for e in kept} == {e["id"] for e in made}  # the tasks of the outage arrive too


def test_task_events_back_off_alone_but_never_hold_back_a_heartbeat():
    engine = Engine((0.0, 100.0, (None, None)))
    poster = Poster("http://engine", None, 3.0, engine.send, random.Random(1))
    poster.add({"id": "t-1", "type": "agent.task_started", "data": {}})
    while engine.now < 60.0:
        poster.flush(engine.now)
        engine.now = poster.next_try
    assert engine.now - engine.posts[-1][0] > 3.0  # task events alone: the backoff grew past an interval

    failed_at = engine.posts[-1][0]
    poster.add({"id": "b-1", "type": "agent.heartbeat", "data": {}})
    assert poster.next_try == pytest.approx(failed_at + 3.0)
    for n in range(2, 2 + 2 * BATCH_MAX):  # a backlog of more than two batches
        poster.add({"id": f"t-{n}", "type": "agent.task_started", "data": {}})
    engine.outage = (0.0, 0.0, (None, None))  # the engine is back
    poster.flush(poster.next_try)
    first = engine.posts[-3][2]
    assert len(first) == BATCH_MAX and first[-1]["id"] == "b-1"  # the heartbeat rides the first post
    assert not poster.pending() and len({e["id"] for _, ok, batch in engine.posts if ok for e in batch}) == 202


class Collect:
    """A Poster stand-in: keeps what the worker hands it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.next_try = 0.0

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def pending(self) -> bool:
        return False

    def flush(self, now: float) -> None:
        pass


def test_a_task_reports_the_wall_time_it_took_and_fails_past_its_deadline():
    """An agent slowed from outside (stopped and continued) reports what the task really took, and a task
    past its deadline fails, as a real agent's would: that is what chaos latency degrades the score with."""
    poster = Collect()
    worker = Worker("coder", "coder", 3600.0, 1.0, 7, poster)
    now = 0.0
    worker.tick(now)
    while not any(e["type"] == "agent.task_started" for e in poster.events):
        now = min(worker.tick(now), now + 0.1)  # turning as often as the worker does
    started = next(e for e in poster.events if e["type"] == "agent.task_started")
    deadline = started["data"]["deadline_s"]
    now += deadline * 2  # the process was stopped for twice the deadline: no work was done meanwhile
    worker.tick(now)
    assert not any(e["type"] == "agent.task_done" for e in poster.events)
    while not any(e["type"] == "agent.task_done" for e in poster.events):
        now += 0.05  # running again: the task's work goes on from where it stopped
        worker.tick(now)
    done = next(e for e in poster.events if e["type"] == "agent.task_done")
    assert done["data"]["ok"] is False and "missed its deadline" in done["data"]["error"]
    assert done["data"]["duration_ms"] >= deadline * 2000 - 1
    assert any(e["type"] == "agent.error" and "deadline" in e["data"]["message"] for e in poster.events)

    poster.events.clear()  # an unhindered task reports its own time and succeeds (or fails on its own)
    while not any(e["type"] == "agent.task_done" for e in poster.events):
        now = min(worker.tick(now), now + 0.1)
    done = next(e for e in poster.events if e["type"] == "agent.task_done")
    assert "missed its deadline" not in done["data"].get("error", "")


def test_the_route_file_moves_the_posts_and_a_bad_one_is_ignored(tmp_path, recorder):
    other = Recorder()
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        route = tmp_path / "coder.url"
        route.write_text(recorder.url + "\n")
        poster = Poster("http://127.0.0.1:9", None, 1.0, route=Route(str(route)))
        poster.add({"id": "a", "type": "demo.one"})
        poster.flush(0.0)
        assert [e["id"] for e in recorder.events()] == ["a"]  # the file wins over the URL it started with
        route.write_text(other.url + "\n")
        os.utime(route, ns=(time.time_ns() + 10**9,) * 2)
        poster.add({"id": "b", "type": "demo.two"})
        poster.flush(1.0)
        assert [e["id"] for e in other.events()] == ["b"]  # routed elsewhere while it runs
        route.write_text("not a url\n")
        os.utime(route, ns=(time.time_ns() + 2 * 10**9,) * 2)
        poster.add({"id": "c", "type": "demo.three"})
        poster.flush(2.0)
        assert [e["id"] for e in other.events()] == ["b", "c"]  # nonsense in the file changes nothing
    finally:
        other.shutdown()
        other.server_close()
