"""AckLoad against a scripted HTTP server: retries carry the same bytes (same ids), Retry-After is honoured,
an engine that is not there yet is waited for, a 4xx gives up, and only 202 bodies count as acknowledged."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from process_harness import free_port

from engine.chaos.load import AckLoad

DROP = "drop"  # close the connection without an answer, as a SIGKILLed engine does


class FakeTime:
    """A clock that moves only when the client sleeps: waits are recorded, tests never really wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Engine:
    """Answers POST /api/events from a script (status, or DROP), then 202 with the batch's ids."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.bodies: list[bytes] = []

    async def post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else 202
        if step == DROP:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if step == 503:
            return web.json_response({"error": "overloaded"}, status=503, headers={"Retry-After": "2"})
        if step != 202:
            return web.json_response({"error": "no"}, status=step)
        ids = [e["id"] for e in orjson.loads(body)]
        return web.json_response({"accepted": len(ids), "ids": ids, "duplicates": 0}, status=202)


async def serve(engine: Engine, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/events", engine.post)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def load_for(port: int, time: FakeTime, **kw: Any) -> AckLoad:
    return AckLoad(f"http://127.0.0.1:{port}", rate=1000.0, batch_size=3, max_in_flight=1, seed=1,
                   clock=time.clock, sleep=time.sleep, **kw)


def test_a_batch_goes_again_byte_for_byte_until_acknowledged_honouring_retry_after():
    async def scenario() -> tuple[Engine, AckLoad, FakeTime]:
        port, time = free_port(), FakeTime()
        engine = Engine([503, DROP, 500, 202])
        runner = await serve(engine, port)
        load = load_for(port, time)
        await load.start()
        await until(lambda: load.stats.acked >= 6)
        await load.stop()
        await runner.cleanup()
        return engine, load, time

    engine, load, time = asyncio.run(scenario())
    first = engine.bodies[0]
    assert engine.bodies[:4] == [first] * 4  # four tries of one batch, the same bytes each time
    ids = [e["id"] for e in orjson.loads(first)]
    assert len(ids) == 3 and ids[0] in load.acked and set(ids) <= load.acked
    assert load.stats.retries == 3 and dict(load.stats.refused) == {"503": 1, "closed": 1, "500": 1}
    assert 2.0 in time.waits  # Retry-After: 2
    assert load.stats.max_retry_gap_s >= 2.0
    every = [e["id"] for body in dict.fromkeys(engine.bodies) for e in orjson.loads(body)]
    assert every == sorted(every) and len(set(every)) == len(every)  # unique, in the order they were made
    assert load.stats.mismatched == 0 and load.unacked() == set() and len(load.acked) == load.stats.acked


def test_an_engine_not_listening_yet_is_retried_until_it_answers():
    async def scenario() -> AckLoad:
        port, time = free_port(), FakeTime()
        load = load_for(port, time)
        await load.start()
        await until(lambda: load.stats.refused["connect"] >= 3)  # nobody on the port: refused, backing off
        assert load.stats.acked == 0
        runner = await serve(Engine([]), port)  # the engine is back on the same port
        await until(lambda: load.stats.acked >= 3)
        await load.stop()
        await runner.cleanup()
        return load

    load = asyncio.run(scenario())
    assert load.stats.retries >= 3 and load.stats.batches >= 1 and not load.unacked()


def test_a_refusal_no_retry_can_change_gives_the_batch_up_and_stop_abandons_what_is_pending():
    async def scenario() -> tuple[Engine, AckLoad]:
        port, time = free_port(), FakeTime()
        engine = Engine([400] + [503] * 10_000)  # the first batch is refused; the next one never gets in
        runner = await serve(engine, port)
        load = load_for(port, time)
        await load.start()
        await until(lambda: len(engine.bodies) >= 5)
        await load.stop(drain_s=0.05)
        await runner.cleanup()
        return engine, load

    engine, load = asyncio.run(scenario())
    batches = [[e["id"] for e in orjson.loads(body)] for body in dict.fromkeys(engine.bodies)]
    assert len(batches) == 2  # the refused one was not sent again; the pending one was, always the same
    assert load.unacked() == set(batches[0]) | set(batches[1]) and not load.acked
    assert load.stats.refused["400"] == 1 and load.stats.abandoned == 6
