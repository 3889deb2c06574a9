"""The engine under bursts and hostile input: it keeps answering, keeps deciding, and says so honestly."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from service_harness import run_engine, wait_for_event

from engine.store.reader import read_events

FLOOD_RULES = """
- id: on-flood
  on: ops.flood
  exclusive: false
  steps:
    - {id: note, action: emit, with: {type: ops.flooded, data: {n: "{data.n}"}}}
"""


def _rules(tmp_path: Path, text: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "extra.yaml").write_text(text)


async def _watch_health(http: aiohttp.ClientSession, until: asyncio.Event, seen: list[tuple[float, int, Any]]) -> None:
    """Ask /api/health every 50 ms and keep (latency, status, body) of each answer."""
    while not until.is_set():
        started = time.perf_counter()
        async with http.get("/api/health", timeout=aiohttp.ClientTimeout(total=10)) as response:
            body = await response.json()
            seen.append((time.perf_counter() - started, response.status, body))
        await asyncio.sleep(0.05)


def test_a_burst_of_12000_matching_events_is_answered_and_every_event_decided(tmp_path: Path):
    """The deadlock of issue 10: each decision publishes back into the queue the matcher loop reads."""
    _rules(tmp_path, FLOOD_RULES)

    async def body(engine, http):
        health: list[tuple[float, int, Any]] = []
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch_health(http, done, health))
        lines = b"\n".join(orjson.dumps({"type": "ops.flood", "data": {"n": n}}) for n in range(12_000))
        async with http.post("/api/events", data=lines, headers={"Content-Type": "application/x-ndjson"},
                             timeout=aiohttp.ClientTimeout(total=60)) as response:
            assert response.status == 202
            ids = set((await response.json())["ids"])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            decided = {e["data"]["cause"] for e in read_events(engine.events_dir, types=("scheduler.decision",))}
            if ids <= decided:
                break
            await asyncio.sleep(0.5)
        done.set()
        await watcher
        return ids - decided, health, engine.scheduler.depth

    undecided, health, _ = run_engine(tmp_path, body, extra="reactor: {queue_max: 200}\n")
    assert not undecided  # every one of the 12,000 got its scheduler.decision
    assert health and all(status in (200, 503) for _, status, _ in health)
    for _, status, body in health:  # a 503 names what is wrong
        if status == 503:
            assert body["components"]["scheduler"]["problems"] or body["components"]["store"]["state"] != "ok"


def test_outside_events_get_503_with_retry_after_above_the_high_water_mark_and_engine_events_go_on(tmp_path: Path):
    _rules(tmp_path, FLOOD_RULES)

    async def body(engine, http):
        burst = b"\n".join(orjson.dumps({"type": "ops.flood", "data": {"n": n}}) for n in range(5000))
        async with http.post("/api/events", data=burst, headers={"Content-Type": "application/x-ndjson"}) as first:
            assert first.status == 202  # below the mark when it arrived: all accepted, all or nothing
        refused = None
        for _ in range(200):
            async with http.post("/api/events", json={"type": "ops.flood", "data": {"n": -1}}) as again:
                if again.status == 503:
                    refused = (again.headers.get("Retry-After"), await again.json())
                    break
            await asyncio.sleep(0)
        # The engine's own events are not refused: the burst is decided all the same.
        await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision", timeout=20)
        for _ in range(600):
            if engine.overloaded() is None:
                break
            await asyncio.sleep(0.05)
        async with http.post("/api/events", json={"type": "ops.flood", "data": {"n": -2}}) as later:
            return refused, later.status

    refused, later = run_engine(tmp_path, body, extra="server: {max_undecided: 50}\n")
    assert refused is not None, "never refused although 5,000 events waited with a mark of 50"
    retry_after, body = refused
    assert retry_after is not None and int(retry_after) >= 1
    assert "overloaded" in body["error"]
    assert later == 202  # intake resumes by itself once the backlog is decided


def test_a_catastrophic_backtracking_pattern_never_stalls_the_engine(tmp_path: Path):
    _rules(tmp_path, """
- id: backtrack
  on: ops.text
  when: {data.s: {matches: "(a+)+$"}}
  steps:
    - {id: note, action: emit, with: {type: ops.matched}}
""")

    async def body(engine, http):
        health: list[tuple[float, int, Any]] = []
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch_health(http, done, health))
        await asyncio.sleep(0.2)
        hostile = ["a" * 28 + "!", "a" * 40 + "!", "a" * 60_000 + "!"]  # Python's re: 13 s, days, forever
        async with http.post("/api/events", json=[{"type": "ops.text", "data": {"s": s}} for s in hostile]) as posted:
            assert posted.status == 202
        async with http.post("/api/events", json={"type": "ops.text", "data": {"s": "aaa"}}) as matching:
            cause = (await matching.json())["ids"][0]
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded" and e["data"]["cause"] == cause)
        await asyncio.sleep(0.5)
        done.set()
        await watcher
        runs = [e for e in read_events(engine.events_dir, types=("reactor.started",))]
        return health, len(runs)

    health, runs = run_engine(tmp_path, body)
    assert runs == 1  # the hostile strings end in "!": no match; "aaa" matches
    assert len(health) >= 5 and all(status == 200 for _, status, _ in health)
    assert max(latency for latency, _, _ in health) < 0.1  # health answered within 100 ms throughout
