"""Intake, in the order contract §1 fixes: validate → durable append to the store → publish.

A batch is all or nothing: one bad event refuses the batch before anything is written. Repeats of an
id stored within the window are acknowledged with their id but neither written nor published again.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from engine.bus import Bus
from engine.events import EventValidator
from engine.store.writer import AppendResult, EventWriter

OFF_LOOP_EVENTS = 200  # batches this large are validated in a worker thread (~2 µs an event)


class Intake:
    def __init__(self, validator: EventValidator, writer: EventWriter, bus: Bus) -> None:
        self.validator = validator
        self.writer = writer
        self.bus = bus
        self._appending: set[asyncio.Task[AppendResult]] = set()

    async def submit(self, raws: Iterable[Any], source: str = "api", external: bool = True) -> AppendResult:
        """Store and publish a batch; raises EventError (nothing stored) or StoreWriteError. `external`
        batches (API, `emit`) are refused while the disk is short of space; the engine's own are not."""
        batch = raws if isinstance(raws, list) else list(raws)
        if len(batch) < OFF_LOOP_EVENTS:
            events = self.validator.normalize_batch(batch, source, external)
        else:  # validating thousands of events takes milliseconds: off the event loop
            events = await asyncio.to_thread(self.validator.normalize_batch, batch, source, external)
        return await self._store_and_publish(events, external)

    async def submit_one(self, raw: dict[str, Any], external: bool = False) -> dict[str, Any]:
        """Store and publish one event; returns it as stored. The engine's own by default (reserved types
        allowed); `external` checks it as an outside event (an operator's fields for a manual trigger)."""
        event = self.validator.normalize(raw, raw.get("source", "api" if external else "engine"), external=external)
        await self._store_and_publish([event], external=external)
        return event

    async def _store_and_publish(self, events: list[dict[str, Any]], external: bool) -> AppendResult:
        """Stored events are published even when the caller gives up waiting (a step's timeout, shutdown):
        the append and the publish run as one shielded task, held until it ends."""
        task = asyncio.ensure_future(self._append_then_publish(events, external))
        self._appending.add(task)
        task.add_done_callback(self._appended)
        return await asyncio.shield(task)

    async def _append_then_publish(self, events: list[dict[str, Any]], external: bool) -> AppendResult:
        result = await self.writer.append_async(events, external)
        self.bus.deliver(event for event, stored in zip(events, result.stored) if stored)
        return result

    def _appended(self, task: asyncio.Task[AppendResult]) -> None:
        self._appending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a refusal reaches the caller (or, if it left, was counted by the writer)
