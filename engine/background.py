"""The one place background tasks are started, so none can fail unseen.

`asyncio.create_task` alone is fire-and-forget: an exception is reported only when the task is garbage
collected, if ever, and a task nobody holds can vanish. Every task the engine starts in the background
goes through `Background.spawn`: it is held until it ends, and a failure is logged once with its
traceback and counted per task name (`/metrics`: `aios_background_failures_total`).
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("aios.background")


class Background:
    """Holds the engine's background tasks; `close()` cancels what is left and waits for it."""

    def __init__(self, on_failure: Callable[[str], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_failure = on_failure
        self.failures: Counter[str] = Counter()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background under `name` (a kind, not an id: it labels the failure count)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        name = task.get_name()
        self.failures[name] += 1
        log.error("background task %s failed", name, exc_info=exc, extra={"task": name})
        if self._on_failure is not None:
            try:
                self._on_failure(name)
            except Exception:  # a metrics hook must not turn one failure into two
                log.exception("background failure hook failed")

    def __len__(self) -> int:
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait for the tasks running now to end by themselves."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task still running and wait until they have all ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
