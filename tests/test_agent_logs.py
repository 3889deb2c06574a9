"""Agents' logs through the log pump, with real processes and real files: rotation by rename under the cap,
a flooding agent on a small full tmpfs (root only), the pump ending with its agent, and starts and pidfile
writes off the event loop."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_actions import gone
from test_service_api import small_filesystem
from test_supervisor import check_until, fill, url_fixture  # noqa: F401 (the `url` fixture)

import engine.agents.local as local_module
import engine.agents.supervisor as supervisor_module
from engine.agents.local import LOGPUMP
from engine.agents.logpump import LogFile, Pump
from engine.agents.supervisor import Supervisor
from engine.osutil import proctree

SLEEPER = ["python", "-c", "import time; time.sleep(60)"]
LINE = 65536  # the flooding agent's lines, newline included
# Writes numbered 64 KiB lines up to the target of the control file (`seq target`), then acknowledges
# (`seq lines_written`) in the ack file, so the test knows exactly what it wrote.
FLOODER = textwrap.dedent(f"""
    import os, sys, time
    control, ack = sys.argv[1:3]
    out = sys.stdout.buffer
    pad = b"x" * ({LINE} - 10)
    i, acked = 0, None
    while True:
        try:
            seq, target = map(int, open(control).read().split())
        except (OSError, ValueError):
            seq, target = 0, 0
        if i < target:
            out.write(b"%08d " % i + pad + b"\\n")
            out.flush()
            i += 1
        elif acked != seq:
            with open(ack + ".tmp", "w") as handle:
                handle.write(f"{{seq}} {{i}}")
            os.replace(ack + ".tmp", ack)
            acked = seq
        else:
            time.sleep(0.005)
""")


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return result


def log_files(log: Path) -> dict[str, int]:
    """`{name: size}` of the log and its rotated files, as they are now (a file renamed meanwhile is skipped)."""
    found = {}
    for path in log.parent.glob(log.name + "*"):
        try:
            found[path.name] = path.stat().st_size
        except FileNotFoundError:
            continue
    return found


def pump_of(marker: str) -> psutil.Process:
    """The log pump carrying the agent's marker."""
    (pump,) = [proc for proc in proctree.find_marked(marker) if LOGPUMP in proc.cmdline()]
    return pump


def run_pump(log: Path, max_bytes: int, keep: int) -> subprocess.Popen[bytes]:
    """The pump as the engine starts it, fed by this test through a pipe."""
    return subprocess.Popen([sys.executable, "-I", "-S", LOGPUMP, str(max_bytes), str(keep), str(log)],
                            stdin=subprocess.PIPE)


def test_the_pump_rotates_by_rename_under_the_cap_and_keeps_lines_whole(tmp_path):
    log = tmp_path / "coder.log"
    log.write_bytes(b"from before\n")
    pump = run_pump(log, 1000, 2)
    assert pump.stdin is not None
    lines = [f"{i:04d} {'y' * (10 + i % 40)}\n".encode() for i in range(400)]
    for line in lines[:10]:
        pump.stdin.write(line)
    pump.stdin.flush()
    wait_for(lambda: log.with_name("coder.log.1").exists() or log.stat().st_size > 200, what="first lines")
    for line in lines[10:]:  # each line in two writes: the pump must not split it at a rotation
        pump.stdin.write(line[:7])
        pump.stdin.flush()
        pump.stdin.write(line[7:])
    pump.stdin.close()
    assert pump.wait(10) == 0  # ends with its input
    assert set(log_files(log)) == {"coder.log", "coder.log.1", "coder.log.2"}
    kept = [log.with_name(name).read_bytes() for name in ("coder.log.2", "coder.log.1", "coder.log")]
    assert all(0 < len(part) <= 1000 and part.endswith(b"\n") for part in kept)
    assert all(re.fullmatch(rb"(\d{4} y+\n)+", part) for part in kept)  # whole lines only
    assert (b"from before\n" + b"".join(lines)).endswith(b"".join(kept))  # real data, in order


def test_rotation_renames_the_file_and_a_line_longer_than_the_cap_is_split(tmp_path):
    log = tmp_path / "coder.log"
    pump = run_pump(log, 1000, 3)
    assert pump.stdin is not None
    pump.stdin.write(b"a" * 899 + b"\n")
    pump.stdin.flush()
    wait_for(lambda: log.exists() and log.stat().st_size == 900, what="the first line")
    inode = log.stat().st_ino
    pump.stdin.write(b"c" * 199 + b"\n")  # does not fit: the file is renamed, not copied
    pump.stdin.flush()
    rotated = log.with_name("coder.log.1")
    wait_for(rotated.exists, what="a rotation")
    assert rotated.stat().st_ino == inode and rotated.read_bytes() == b"a" * 899 + b"\n"
    pump.stdin.write(b"b" * 2499 + b"\n")
    pump.stdin.close()
    assert pump.wait(10) == 0
    assert {name: log.with_name(name).read_bytes() for name in log_files(log)} == {
        "coder.log": b"b" * 499 + b"\n", "coder.log.1": b"b" * 1000, "coder.log.2": b"b" * 1000,
        "coder.log.3": b"c" * 199 + b"\n"}


def test_a_flooding_agent_stays_under_its_cap_survives_a_full_disk_and_an_engine_restart(tmp_path, url):
    cap, keep = 1 << 20, 2
    disk = tmp_path / "disk"
    control, ack = tmp_path / "control", tmp_path / "ack"
    with small_filesystem(disk, "16m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a tmpfs")
        data_dir = disk / "data"
        log = data_dir / "agents" / "flood.log"
        events: list[dict[str, Any]] = []

        async def emit(event: dict[str, Any]) -> dict[str, Any]:
            events.append(event)
            return event

        def supervisor() -> Supervisor:
            return Supervisor({"flood": {"command": ["python", "-c", FLOODER, str(control), str(ack)]}},
                              data_dir, url, emit, grace_s=0.5, log_max_bytes=cap, log_keep=keep)

        steps = iter(range(1, 1000))

        def drive(target: int) -> int:
            """Tell the agent to have written `target` lines and wait until it did; the lines written."""
            seq = next(steps)
            control.write_text(f"{seq} {target}")
            def acked() -> list[str] | None:
                got = ack.read_text().split() if ack.exists() else []
                return got if got[:1] == [str(seq)] else None
            return int(wait_for(acked, what=f"agent ack {seq}")[1])

        def flood(seconds: float) -> int:
            """Flood, checking the cap all along, then stop; the lines written."""
            control.write_text(f"{next(steps)} {10 ** 9}")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                sizes = log_files(log)
                assert set(sizes) <= {"flood.log", "flood.log.1", "flood.log.2"}, sizes
                assert max(sizes.values(), default=0) <= cap and sum(sizes.values()) <= cap * (keep + 1), sizes
                time.sleep(0.005)
            return drive(0)

        def last_line() -> bytes:
            return log.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]

        first = supervisor()  # whatever this test leaves running, the url fixture kills
        asyncio.run(first.start())
        agent = events[0]["data"]["pid"]
        marker = first.local.process("flood").marker
        written = flood(1.5)
        assert written > 3 * 16, "not even three files' worth"
        wait_for(lambda: last_line().startswith(b"%08d " % (written - 1)), what="the pump to catch up")
        kept = [log.with_name(name).read_bytes() for name in ("flood.log.2", "flood.log.1", "flood.log")]
        assert all(0 < len(part) <= cap for part in kept)  # rotated files are real data, not 0 bytes
        numbers = [int(line[:8]) for line in b"".join(kept).splitlines()]
        assert numbers == list(range(written - len(numbers), written))  # whole lines, none lost

        pump = pump_of(marker)
        pipe = os.readlink(f"/proc/{pump.pid}/fd/0")
        ours = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")}
        assert pipe.startswith("pipe:") and pipe not in ours  # the engine is not in the middle

        asyncio.run(first.close())  # the engine goes away; the next one adopts the agent
        second = supervisor()
        asyncio.run(second.start())
        assert (events[-1]["type"], events[-1]["data"]["pid"], events[-1]["data"]["adopted"]) == \
            ("agent.started", agent, True)
        assert second.pids() == {"flood": agent} and pump.pid != agent
        more = flood(0.3)
        assert more > written and not gone(agent) and pump.is_running()  # no EPIPE after the restart

        filler = fill(disk / "filler")
        flood(1.0)
        assert not gone(agent) and pump.is_running() and pump.status() != psutil.STATUS_ZOMBIE
        text = log.read_bytes()
        assert b"logpump: cannot write flood.log (No space left on device): emptied it" in text
        assert len(text) < cap

        filler.unlink()  # space comes back: logging resumes, saying what it dropped
        resumed = rb"logpump: writing again; dropped (\d+) bytes since"
        lines = drive(0)
        deadline = time.monotonic() + 10
        while not re.search(resumed, log.read_bytes()):  # one line at a time: the pump looks once a second
            assert time.monotonic() < deadline, "logging never resumed"
            lines = drive(lines + 1)
        dropped = int(re.search(resumed, log.read_bytes()).group(1))
        assert dropped >= LINE
        wait_for(lambda: last_line().startswith(b"%08d " % (lines - 1)), what="logging to resume")

        outcome = asyncio.run(second.restart("flood"))
        assert agent in outcome["killed"] and gone(agent) and gone(pump.pid)  # the pump ends with its agent


def test_the_pump_is_not_the_agent_and_ends_when_its_agent_dies(data_dir, url):
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return event

    sup = Supervisor({"sleeper": {"command": SLEEPER}}, data_dir, url, emit, grace_s=0.5)

    async def scenario() -> None:
        await sup.start()
        process = sup.local.process("sleeper")
        pump = pump_of(process.marker)
        assert sup.pids() == {"sleeper": process.pid} and pump.pid != process.pid
        assert pump.environ() == {proctree.MARK_ENV: process.marker}  # no AIOS_URL, no token
        assert os.getsid(pump.pid) == pump.pid != os.getsid(process.pid)  # sessions of their own
        log = data_dir / "agents" / "sleeper.log"
        assert wait_for(lambda: log.exists() and log.read_text()).startswith("--- ")  # the start line
        os.kill(process.pid, signal.SIGKILL)
        await check_until(sup, events, 2)
        assert events[-1]["data"]["signal"] == "SIGKILL"
        deadline = time.monotonic() + 5
        while not gone(pump.pid):  # end of its input: the pump exits, and check() reaps it
            assert time.monotonic() < deadline, "the pump outlived its agent"
            await sup.check(time.time())
            await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_starts_and_pidfile_writes_run_off_the_event_loop(data_dir, url, monkeypatch):
    calls: list[tuple[str, bool]] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            return False

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, on_loop()))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(local_module.subprocess, "Popen", spy("popen", subprocess.Popen))
    monkeypatch.setattr(supervisor_module, "atomic_write", spy("pidfile", supervisor_module.atomic_write))
    main = threading.get_ident()

    async def emit(event: dict[str, Any]) -> dict[str, Any]:
        assert threading.get_ident() == main
        return event

    sup = Supervisor({"sleeper": {"command": SLEEPER}}, data_dir, url, emit, grace_s=0.5)

    async def scenario() -> None:
        await sup.start()
        await sup.restart("sleeper")
        await sup.local.stop_all()

    asyncio.run(scenario())
    assert calls == [("popen", False), ("popen", False), ("pidfile", False)] * 2  # pump, agent, pidfile


def test_a_failing_pump_looks_for_room_once_a_second_and_resumes_with_two_caps_free(tmp_path):
    disk = tmp_path / "disk"
    with small_filesystem(disk, "1m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a tmpfs")
        now = [0.0]
        log = LogFile(str(disk / "coder.log"), 100_000, 1)
        feeder = Pump(log, clock=lambda: now[0])
        line = b"z" * 999 + b"\n"
        feeder.feed(line * 50)
        filler = fill(disk / "filler")
        feeder.feed(line * 60)  # 50 kB do not fit: the file is emptied, output dropped, one line says so
        text = Path(log.path).read_bytes()
        assert text.startswith(b"--- ") and b"cannot write coder.log (No space left on device)" in text
        assert text.count(b"\n") == 1 and feeder.dropped > 0
        with open(filler, "r+b") as handle:  # some room, but less than two caps
            handle.truncate(filler.stat().st_size - 100_000)
        now[0] = 5.0
        feeder.feed(line)
        assert Path(log.path).read_bytes() == text  # still dropping
        filler.unlink()
        now[0] = 5.5
        feeder.feed(line)
        assert Path(log.path).read_bytes() == text  # looked less than a second ago
        dropped = feeder.dropped
        now[0] = 6.0
        feeder.feed(line)
        resumed = Path(log.path).read_bytes()[len(text):]
        assert resumed.startswith(b"--- ") and f"writing again; dropped {dropped} bytes".encode() in resumed
        assert resumed.endswith(b"\n" + line) and feeder.dropped == 0
        log.close()
