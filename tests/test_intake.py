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
