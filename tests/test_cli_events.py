"""`aios-engine events --follow` as users run it: starts from now, rides out an engine restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import CLI, ROOT, make_event
from process_harness import EngineProcess

from engine.events import format_ts
from engine.store.writer import EventWriter


class Follower:
    """`aios-engine events ARGS --follow --format json` in a child process, its lines collected as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([*CLI, "events", *args, "--follow", "--format", "json"], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        for stream, sink, parse in ((self.proc.stdout, self.events, json.loads), (self.proc.stderr, self.errors, str)):
            threading.Thread(target=self._read, args=(stream, sink, parse), daemon=True).start()

    @staticmethod
    def _read(stream: Any, sink: list[Any], parse: Callable[[str], Any]) -> None:
        for line in stream:
            sink.append(parse(line))

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := predicate():
                return value
            assert self.proc.poll() is None, f"events exited {self.proc.returncode}: {self.errors}"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: printed {self.events}, stderr {self.errors}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_follow_on_the_files_starts_from_now_unless_since_is_given(tmp_path: Path):
    data = tmp_path / "data"
    now = time.time()
    with EventWriter(data) as writer:
        writer.append([make_event("old", format_ts(now - 3600))])
    fresh, history = Follower("--data", str(data), cwd=tmp_path), Follower("--data", str(data), "--since", "2h",
                                                                               cwd=tmp_path)
    try:
        history.wait_for(lambda: history.events, 20, "the stored event")
        # Stamped well after the follower started: what "from now" must show (the old one comes first if shown).
        with EventWriter(data) as writer:
            writer.append([make_event("new", format_ts(now + 600))])
        fresh.wait_for(lambda: fresh.events, 20, "the new event")
        history.wait_for(lambda: len(history.events) == 2, 20, "the new event")
        assert [e["id"] for e in fresh.events] == ["new"]
        assert [e["id"] for e in history.events] == ["old", "new"]
    finally:
        fresh.stop()
        history.stop()


def test_follow_with_url_starts_from_now_and_reconnects_across_a_restart_printing_nothing_twice(tmp_path: Path):
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path)
    follower: Follower | None = None
    try:
        before = engine.post("/api/events", {"type": "test.tick", "data": {"n": -1}})["ids"][0]
        follower = Follower("--url", engine.url, "--type", "test.*", cwd=tmp_path)
        posted: list[str] = []
        deadline = time.monotonic() + 20
        while not follower.events:  # tick until the follower shows one: its "now" has been taken
            assert time.monotonic() < deadline, f"nothing printed: {follower.errors}"
            posted.append(engine.post("/api/events", {"type": "test.tick", "data": {"n": len(posted)}})["ids"][0])
            time.sleep(0.2)
        first = posted.index(follower.events[0]["id"])
        follower.wait_for(lambda: len(follower.events) == len(posted) - first, 10, "every tick")

        engine.proc.send_signal(signal.SIGTERM)
        assert engine.proc.wait(timeout=30) == 0
        follower.wait_for(lambda: follower.errors, 15, "the lost-engine line")
        time.sleep(1.5)  # a few quiet retries while the engine is away
        engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path, port=engine.port)
        after = engine.post("/api/events", {"type": "test.after_restart"})["ids"][0]
        follower.wait_for(lambda: follower.events[-1]["id"] == after, 30, "the event after the restart")
        time.sleep(1.5)  # another poll or two: anything printed twice would show now

        assert [e["id"] for e in follower.events] == [*posted[first:], after]
        assert before not in {e["id"] for e in follower.events}
        assert len(follower.errors) == 1
        assert follower.errors[0].startswith(f"aios-engine events: cannot reach the engine at {engine.url}")
        assert follower.errors[0].rstrip().endswith("; reconnecting")
        assert follower.proc.poll() is None
    finally:
        if follower is not None:
            follower.stop()
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
