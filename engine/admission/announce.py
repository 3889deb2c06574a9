"""Set-aside decisions as stored events, rate-limited so a flood cannot fill the store.

Every decision that does not run is a `scheduler.decision` with `outcome: set_aside` (contract §8), the
matcher's reasons (throttled, sustained 1/3, disabled, outranked, no_playbook) as much as the guards'.
A flood of repeats of one event would store one such decision per repeat, so a decision from a new event
is stored at most once per (playbook, key, reason) per `every_s`; the next one stored carries
`repeats`, how many were held back meanwhile. A problem's own answers are never held back: those about
the event that opened it (a flood of repeats joins an open problem, it does not open new ones) and its
re-decisions (asked at most once per lapse or backoff step, engine/problems/book.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.capped import CappedMap
from engine.events import format_ts

EVERY_S = 60.0
MAX_KEYS = 10_000


class AsideLimiter:
    """Per (playbook, key, reason): when one was last stored, and how many were held back since."""

    def __init__(self, clock: Callable[[], float], every_s: float = EVERY_S, cap: int = MAX_KEYS) -> None:
        self._clock = clock
        self.every_s = every_s
        self.map: CappedMap[tuple[str, str, str], list[float]] = CappedMap("set_aside_limiter", cap)
        self.held = 0  # decisions not stored because of the limit (/metrics)

    def admit(self, playbook: str, key: str, reason: str) -> int | None:
        """None: hold this one back. Else store it, with the number held back since the last one stored."""
        now = self._clock()
        seen = self.map.get((playbook, key, reason))
        if seen is not None and now - seen[0] < self.every_s:
            seen[1] += 1
            self.held += 1
            return None
        self.map[(playbook, key, reason)] = [now, 0.0]
        return int(seen[1]) if seen is not None else 0


def set_aside_data(*, playbook: str | None, priority: str, cause: Any, reason: str, detail: str,
                   retry_at: float | None = None, run_id: str | None = None, repeats: int = 0,
                   redecision: str | None = None, exclusive: bool = True) -> dict[str, Any]:
    """The `data` of a set-aside `scheduler.decision` (one shape for the matcher's and the guards')."""
    data: dict[str, Any] = {"run_id": run_id, "playbook": playbook, "priority": priority, "cause": cause,
                            "outcome": "set_aside", "reason": reason, "detail": detail, "exclusive": exclusive}
    if retry_at is not None:
        data["retry_at"] = format_ts(retry_at)
    if repeats:
        data["repeats"] = repeats
    if redecision:
        data["redecision"] = redecision
    return data
