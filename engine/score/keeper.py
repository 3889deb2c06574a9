"""The score engine as the service runs it: the scorer, its labels and its weights, behind one object.

The service feeds it every stored event (`observe`, in the decision loop: synchronous, O(1)), stores what
it returns, and calls the blocking parts from threads: `rebuild` at start, `flush_labels` on a tick,
`feedback`, `tune`. Nothing here emits by itself: it returns the events for the service to emit.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.events import event_time
from engine.score.feedback import feedback_label
from engine.score.labels import WINDOW_S, AutoLabeler, LabelFile
from engine.score.scorer import READS, Emitted, Scorer
from engine.score.tuner import tuning_run
from engine.score.weights import WeightStore
from engine.store.reader import read_events

LABEL_READS = ("score.degraded", "problem.opened", "reactor.failed")  # what the auto labels also look at
MAX_UNWRITTEN = 10_000


class ScoreKeeper:
    def __init__(self, config: Mapping[str, Any], data_dir: Path, *, cpu_high: float, rss_high: float,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.weights = WeightStore(self.data_dir, config["weights"])
        self.scorer = Scorer(config, cpu_high=cpu_high, rss_high=rss_high, clock=clock,
                             weights_of=self.weights.weights_of)
        self.labeler = AutoLabeler(clock)
        self.labels = LabelFile(self.data_dir)
        self._clock = clock
        self._files = threading.Lock()  # labels and weights are written from threads: one writer at a time
        self._unwritten: list[dict[str, Any]] = []  # labels a full disk refused, tried again at the next tick

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], data_dir: Path, clock: Callable[[], float]) -> ScoreKeeper:
        """From the whole filled-in config: its `score` section, and the agent sensor's limits."""
        limits = raw["sensors"]["agents"]
        return cls(raw["score"], data_dir, cpu_high=limits["cpu"]["high"], rss_high=limits["rss_mb"]["high"],
                   clock=clock)

    def observe(self, event: dict[str, Any]) -> list[Emitted]:
        """One stored event: the score events to emit."""
        out = self.scorer.fold(event)
        self.labeler.fold(event)
        return out

    def rebuild(self, events_dir: Path) -> int:
        """At start (blocking, before the decision loop runs): the weights file, then the score state from
        the last `rebuild_hours` of stored events, and the degradations still waiting for an auto label."""
        self.weights.load()
        self.labeler.known = {str(r.get("event")) for r in self.labels.load() if r.get("source") == "auto"}
        now = self._clock()
        since = datetime.fromtimestamp(now - float(self.config["rebuild_hours"]) * 3600, timezone.utc)
        count = 0
        for event in read_events(events_dir, since=since, types=(*READS, *LABEL_READS)):
            self.scorer.rebuild((event,))
            if now - event_time(event, now) <= 3 * WINDOW_S:  # the evidence window of the last ones
                self.labeler.fold(event)
            count += 1
        return count

    def due_labels(self) -> list[dict[str, Any]]:
        """The automatic labels decided by now (on the loop: the labeler is the decision loop's)."""
        self._unwritten += self.labeler.due()
        due, self._unwritten = self._unwritten, []
        return due

    def write_labels(self, records: list[dict[str, Any]]) -> None:
        """Store labels (blocking); on a write error they wait for the next call (a full disk degrades)."""
        try:
            with self._files:
                self.labels.append(records)
        except OSError:
            self._unwritten = records + self._unwritten[:MAX_UNWRITTEN]
            raise

    def feedback(self, events_dir: Path, body: Any) -> dict[str, Any]:
        """An operator's label, stored (blocking; FeedbackError for bad input)."""
        record = feedback_label(events_dir, body, self._clock())
        with self._files:
            self.labels.append([record])
        return record

    def agents(self) -> list[str]:
        """The agents scored now (on the loop: the scorer is not to be read from a thread)."""
        return self.scorer.names()

    def labelled_agents(self) -> list[str]:
        """The agents with labels: those a tuning run fits (blocking)."""
        return sorted({record["agent"] for record in self.labels.load()})

    def tune(self, agents: list[str], *, dry_run: bool, revert: bool) -> dict[str, Any]:
        """A tuning run over `agents` (and every labelled one), or the revert of the last one (blocking)."""
        with self._files:
            if revert:
                undone = self.weights.revert()
                return {"reverted": undone, "version": self.weights.version}
            return tuning_run(self.weights, self.labels.load(), agents, self.config, dry_run=dry_run,
                              now=self._clock())
