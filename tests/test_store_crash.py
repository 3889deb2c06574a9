"""Durability under SIGKILL: every acknowledged event survives, exactly once, and the store goes on."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from conftest import ROOT

from engine.events import EventValidator
from engine.store.reader import read_events
from engine.store.writer import EventWriter

CHILD = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {root!r})
    from engine.events import EventValidator
    from engine.store.writer import EventWriter

    writer = EventWriter(sys.argv[1]).open()
    validator = EventValidator()
    out_lock = threading.Lock()
    print("ready", flush=True)

    def appender(worker):
        n = 0
        while True:
            batch = [validator.normalize({{"type": "agent.task_done", "agent": f"w{{worker}}",
                                          "data": {{"n": n + i, "pad": "x" * 200}}}}) for i in range(1 + n % 37)]
            n += len(batch)
            writer.append(batch)
            with out_lock:
                sys.stdout.write("".join(e["id"] + "\\n" for e in batch))
                sys.stdout.flush()

    for worker in range(4):
        threading.Thread(target=appender, args=(worker,), daemon=True).start()
    threading.Event().wait()
""")


def _acknowledged_then_kill(data_dir: Path, at_least: int) -> set[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(data_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"ready", child.stderr.read() if child.stderr else ""
    acked: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(acked) < at_least and time.monotonic() < deadline:
        acked.append(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    rest = child.stdout.read()  # whatever it printed before dying
    child.wait()
    lines = b"".join(acked).decode() + rest.decode()
    complete = lines.split("\n")[:-1]  # a line cut by the kill is not an acknowledgement
    return {line for line in complete if len(line) == 26}


def test_acknowledged_events_survive_sigkill_exactly_once_and_the_store_goes_on(data_dir: Path):
    acknowledged: set[str] = set()
    for round_ in range(3):
        acknowledged |= _acknowledged_then_kill(data_dir, at_least=1500 + 700 * round_)
    assert len(acknowledged) >= 1500 * 3

    with EventWriter(data_dir) as writer:  # the lock died with the child; the writer repairs and reopens
        stored = Counter(e["id"] for e in read_events(data_dir / "events"))
        missing = acknowledged - set(stored)
        assert not missing, f"{len(missing)} acknowledged events lost"
        assert max(stored.values()) == 1, "an event was stored twice"
        fresh = EventValidator().normalize({"type": "agent.heartbeat", "agent": "coder"})
        assert writer.append([fresh]).stored == [True]
    assert fresh["id"] in {e["id"] for e in read_events(data_dir / "events")}
