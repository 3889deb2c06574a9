"""The demo worker: its day is repeatable and plausible, its posts have the contract's shapes, it rides
out an engine that is restarting, and it stops cleanly on SIGTERM."""
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

from engine.demo.worker import ROLES, life
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
