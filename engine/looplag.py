"""How late the event loop runs: the proof that no input, regex or disk stalls it.

A task asks to wake every `interval_s`; how much later than asked it wakes is the lag (a callback that
held the loop for 2 s shows as 2 s). `/metrics` exports the last and the worst of the recent window;
health names a lag over its limit.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class LoopLag:
    def __init__(self, interval_s: float = 0.25, window: int = 240,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._recent: deque[float] = deque(maxlen=window)  # a minute of samples at the default interval
        self.last = 0.0

    @property
    def worst(self) -> float:
        return max(self._recent, default=0.0)

    def sample(self, asked_at: float, woke_at: float) -> None:
        self.last = max(0.0, woke_at - asked_at - self.interval_s)
        self._recent.append(self.last)

    async def run(self) -> None:
        while True:
            asked = self._monotonic()
            await asyncio.sleep(self.interval_s)
            self.sample(asked, self._monotonic())
