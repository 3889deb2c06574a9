"""Intake: what is stored is published, even when whoever stored it stopped waiting."""
from __future__ import annotations

import asyncio
from pathlib import Path

from engine.bus import Bus
from engine.events import EventValidator
from engine.intake import Intake
from engine.store.writer import EventWriter


def test_an_event_stored_for_a_caller_that_gave_up_is_still_published(tmp_path: Path):
    async def scenario():
        bus = Bus()
        engine = bus.subscribe("engine", "*", policy="lossless")
        with EventWriter(tmp_path / "data", reserve_mb=0) as writer:
            intake = Intake(EventValidator(), writer, bus)
            caller = asyncio.ensure_future(intake.submit_one({"type": "reactor.timeout", "data": {}}))
            await asyncio.sleep(0)  # the append is under way
            caller.cancel()  # a step's timeout, a shutdown…
            got = await asyncio.wait_for(engine.get(), 5)
            return caller.cancelled(), got["type"]

    assert asyncio.run(scenario()) == (True, "reactor.timeout")


def test_a_large_batch_is_validated_off_the_event_loop_with_ids_still_unique(tmp_path: Path):
    import threading

    threads: set[str] = set()

    class Spy(EventValidator):
        def normalize_batch(self, raws, source="api", external=True):
            threads.add(threading.current_thread().name)
            return super().normalize_batch(raws, source, external)

    async def scenario():
        with EventWriter(tmp_path / "data", reserve_mb=0) as writer:
            intake = Intake(Spy(), writer, Bus())
            small = intake.submit([{"type": "ops.x"}] * 5)
            large = intake.submit([{"type": "ops.x"}] * 5000)
            own = [intake.submit_one({"type": "reactor.note", "data": {}}) for _ in range(50)]
            results = await asyncio.gather(small, large, *own)
            return [i for r in results[:2] for i in r.ids] + [e["id"] for e in results[2:]]

    ids = asyncio.run(scenario())
    assert len(ids) == len(set(ids)) == 5055  # ids from the loop and from the worker thread never collide
    assert threading.main_thread().name in threads and len(threads) == 2  # the small batch on the loop, the large off
