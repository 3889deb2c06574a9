"""After the faults: is every acknowledged event in the store exactly once, and did every run caught
mid-step end rolled back? Reads the store as `aios-engine events` does (raw days and archives)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.reactor.journal import unfinished
from engine.store.reader import ReadStats, read_events


@dataclass(frozen=True, slots=True)
class StoreAudit:
    """`missing`: acknowledged and not stored (lost); `duplicated`: id -> copies for every id stored more
    than once (any event, the engine's own included); `unacked_stored`: load events stored though never
    acknowledged (their answer was lost and the client gave up: allowed, reported); `unknown`: load events
    stored that the client neither acknowledged nor posted-and-gave-up (should be none)."""

    stored: int  # load events in the store, copies included
    acked: int
    missing: frozenset[str]
    duplicated: dict[str, int]
    unacked_stored: int
    unknown: int
    skipped_lines: int  # lines the reader could not parse (a torn tail is repaired at open, never skipped)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated and not self.unknown


def audit_store(data_dir: str | Path, acked: set[str], unacked: Iterable[str] = (),
                source: str = "chaos.load") -> StoreAudit:
    """Count every stored id under `data_dir` against the acknowledged set; load events are those whose
    `source` is `source`."""
    stats = ReadStats()
    copies: Counter[str] = Counter()
    load: set[str] = set()
    stored = 0
    for event in read_events(Path(data_dir) / "events", stats=stats):
        event_id = event.get("id")
        copies[event_id] += 1
        if event.get("source") == source:
            stored += 1
            load.add(event_id)
    given_up = set(unacked)
    return StoreAudit(stored=stored, acked=len(acked), missing=frozenset(acked - load),
                      duplicated={i: n for i, n in copies.items() if n > 1},
                      unacked_stored=len(load & given_up), unknown=len(load - acked - given_up),
                      skipped_lines=stats.skipped)


def runs_in_step(data_dir: str | Path, step: str) -> set[str]:
    """Ids of the runs whose journal shows `step` started and not finished right now: a kill now catches
    them mid-step, and the next start must roll them back."""
    return {state.run_id for state in unfinished(Path(data_dir) / "runs") if step in state.in_step}
