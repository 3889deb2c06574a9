"""Issue 14, crash durability: a live engine under ~5,000 events/s is SIGKILLed three times and restarted on
the same port and data dir while the load keeps going; every acknowledged id is stored exactly once, and the
runs each kill caught inside a step end rolled back, their file as it was before the run."""
from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
from process_harness import EngineProcess, free_port

from engine.chaos.audit import audit_store, runs_in_step
from engine.chaos.load import LOAD_SOURCE, AckLoad
from engine.reactor.journal import unfinished
from engine.reactor.records import RunStore
from engine.store.reader import read_events

SEED = 14
RATE = 5000.0
KILLS = 3
MARK_EVERY = 500  # every 500th load event starts a run (10 a second, coalesced to one at a time)
HOLD_S = 3  # the slow step a kill lands in
RATE_FLOOR = 3000.0  # acknowledged events/s over the whole load, outages included (measured: ~4,400)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

PLAYBOOK = {
    "id": "chaos-mark", "on": "chaos.mark", "exclusive": False,
    "steps": [
        {"id": "edit", "action": "write_file",
         "with": {"path": "{data.target}", "content": "written by the run for {id}\n"}},
        {"id": "hold", "needs": ["edit"], "action": "shell", "with": {"argv": ["sleep", str(HOLD_S)]}},
    ],
}


class Marks:
    """The load's events: every MARK_EVERY-th one is a `chaos.mark` naming a file of its own, created here
    with its pre-run content so that a rollback can be checked against it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.before: dict[str, str] = {}
        folder.mkdir()

    def __call__(self, n: int, event_id: str) -> dict[str, Any]:
        if n % MARK_EVERY:
            return {"id": event_id, "type": "chaos.load", "source": LOAD_SOURCE, "data": {"n": n}}
        target = self.folder / f"mark-{n}.txt"
        self.before[str(target)] = f"before mark {n}\n"
        target.write_text(self.before[str(target)])
        return {"id": event_id, "type": "chaos.mark", "source": LOAD_SOURCE, "data": {"n": n, "target": str(target)}}


async def start_engine(tmp_path: Path, port: int) -> EngineProcess:
    return await asyncio.to_thread(EngineProcess, "--config", str(tmp_path / "aios.yaml"), "--data",
                                   str(tmp_path / "data"), "--rules", str(tmp_path / "rules"), cwd=tmp_path, port=port)


async def fresh_run_in_hold(data_dir: Path, seen: set[str], timeout: float = 10.0) -> str:
    """The first run seen inside its slow step that was not seen there before: it has ~HOLD_S s to go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = await asyncio.to_thread(runs_in_step, data_dir, "hold") - seen
        if fresh:
            return min(fresh)
        await asyncio.sleep(0.02)
    raise AssertionError("no run reached its slow step")


async def crash_under_load(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mark.yaml").write_text(json.dumps(PLAYBOOK))
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    data_dir = tmp_path / "data"
    marks = Marks(tmp_path / "targets")
    rng = random.Random(SEED)
    port = free_port()
    engine = await start_engine(tmp_path, port)
    load = AckLoad(engine.url, rate=RATE, batch_size=100, event=marks, seed=SEED)
    caught: list[str] = []
    try:
        await load.start()
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(1.5, 4.0))  # the seeded moment, then the next run inside its step
            caught.append(await fresh_run_in_hold(data_dir, set(caught)))
            engine.proc.kill()
            await asyncio.to_thread(engine.proc.wait)
            engine = await start_engine(tmp_path, port)
        await asyncio.sleep(2.0)
        stats = await load.stop(drain_s=30.0)
        engine.proc.terminate()  # drains: the run going finishes within the grace
        assert await asyncio.to_thread(engine.proc.wait, 30) == 0, "".join(engine.log[-20:])
    finally:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
    audit = audit_store(data_dir, load.acked, load.unacked())
    return {"stats": stats, "audit": audit, "caught": caught, "marks": marks, "data_dir": data_dir}


def test_sigkilled_engine_under_load_keeps_every_acknowledged_event_once_and_rolls_back_caught_runs(tmp_path: Path):
    result = asyncio.run(asyncio.wait_for(crash_under_load(tmp_path), 120))
    stats, audit, caught, data_dir = result["stats"], result["audit"], result["caught"], result["data_dir"]
    figures = {"events_posted": stats.posted, "events_acked": audit.acked, "kills": KILLS,
               "acknowledged_lost": len(audit.missing), "duplicates_stored": len(audit.duplicated),
               "posted_unacked": stats.abandoned, "unacked_stored": audit.unacked_stored,
               "acked_as_repeats": stats.duplicates, "retries": stats.retries, "refused": dict(stats.refused),
               "max_retry_gap_s": round(stats.max_retry_gap_s, 3), "max_ack_gap_s": round(stats.max_ack_gap_s, 3),
               "rate_acked_per_s": round(stats.rate), "elapsed_s": round(stats.elapsed_s, 1),
               "runs_caught_mid_step": len(caught)}
    print("\ncrash-load:", json.dumps(figures))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "crash-load.json").write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")

    assert not audit.missing, f"{len(audit.missing)} acknowledged events lost, e.g. {sorted(audit.missing)[:3]}"
    assert not audit.duplicated, f"stored twice: {list(audit.duplicated.items())[:3]}"
    assert audit.unknown == 0 and audit.stored == audit.acked + audit.unacked_stored
    assert stats.mismatched == 0 and stats.acked == audit.acked  # each 202 named its batch's own ids, once
    assert stats.retries > 0 and stats.refused["connect"] > 0  # the kills were felt, and retried through
    assert stats.rate >= RATE_FLOOR, f"{stats.rate:.0f} events/s acknowledged"

    assert len(caught) == KILLS
    assert not list(unfinished(data_dir / "runs"))  # every journal ended
    runs = RunStore(data_dir)
    rolled_back = {e["data"]["run_id"]: e["data"]["why"] for e in read_events(data_dir / "events",
                                                                           types=["reactor.rolled_back"])}
    for run_id in caught:
        record = runs.get(run_id)
        assert record.status == "rolled_back", (run_id, record.status)
        assert rolled_back.get(run_id) == "crash_recovery", run_id
        target = record.steps[0].attempts[0].detail["path"]
        assert Path(target).read_text() == result["marks"].before[target]  # the pre-run content
    statuses = {r.status for r in runs.list()}
    assert statuses <= {"succeeded", "rolled_back"}, statuses
