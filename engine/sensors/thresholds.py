"""Alert thresholds and their config checks: kept apart from the sensors (and psutil) so that
`config check` and every command that loads aios.yaml stay light."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.durations import parse_duration


class ThresholdError(ValueError):
    """Threshold values that cannot work together; `key` names the offending one."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Threshold:
    """Alert at or above `high` for `for_scans` consecutive scans; clear at or below `clear` (< high).

    `repeat` (seconds) re-announces a firing alert that long after its last announcement; None never.
    """

    high: float
    clear: float
    for_scans: int = 2
    repeat: float | None = None

    def __post_init__(self) -> None:
        if not self.clear < self.high:
            raise ThresholdError("clear",
                                 f"clear ({self.clear}) must be below high ({self.high}), or alerts would flap")
        if self.for_scans < 1:
            raise ThresholdError("for_scans", f"for_scans must be at least 1, not {self.for_scans}")
        if self.repeat is not None and self.repeat <= 0:
            raise ThresholdError("repeat", "repeat must be a positive duration, or null for never")

    @classmethod
    def from_config(cls, levels: dict[str, Any], timing: dict[str, Any] | None = None) -> Threshold:
        """`high`/`clear` from `levels`, `for_scans`/`repeat` (a duration or null) from `timing` (default:
        the same config section)."""
        timing = levels if timing is None else timing
        repeat = timing["repeat"]
        return cls(levels["high"], levels["clear"], timing["for_scans"],
                   None if repeat is None else parse_duration(repeat))


def _thresholds(section: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    """Each threshold of a `sensors` section: (pointer, high/clear section, pointer, for_scans/repeat section)."""
    for kind in ("cpu", "memory", "disk"):
        yield f"/sensors/{kind}", section[kind], f"/sensors/{kind}", section[kind]
    for metric in ("cpu", "rss_mb"):
        yield f"/sensors/agents/{metric}", section["agents"][metric], "/sensors/agents", section["agents"]


def config_problems(section: dict[str, Any]) -> list[tuple[str, str]]:
    """(JSON pointer, message) for each threshold the schema accepts but that cannot work (`clear` not
    below `high`, a `repeat` of zero): for `config check`, beside the schema's own findings."""
    problems = []
    for levels_at, levels, timing_at, timing in _thresholds(section):
        try:
            Threshold.from_config(levels, timing)
        except ThresholdError as exc:
            problems.append((f"{levels_at if exc.key == 'clear' else timing_at}/{exc.key}", str(exc)))
    return problems
