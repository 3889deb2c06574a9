"""Prometheus metrics (`GET /metrics`), on a registry of the engine's own (not the process-global one),
so several engines in one test process never share counters."""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_TYPE_LABELS = 200  # event types are user input: past this many, the rest count as "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingested = Counter("aios_events_ingested", "Events stored, by type", ["type"], registry=r)
        self.refused = Counter("aios_events_refused", "Events refused at intake, by reason", ["reason"], registry=r)
        self.matches = Counter("aios_matches", "Decisions the matcher made, by playbook", ["playbook"], registry=r)
        self.decisions = Counter("aios_decisions", "Scheduler decisions, by priority and outcome",
                                 ["priority", "outcome"], registry=r)
        self.queue_depth = Gauge("aios_queue_depth", "Runs waiting, by priority", ["priority"], registry=r)
        self.running = Gauge("aios_runs_running", "Runs in progress", registry=r)
        self.runs = Counter("aios_runs", "Finished runs, by outcome", ["outcome"], registry=r)
        self.run_seconds = Histogram("aios_run_duration_seconds", "Run duration", registry=r,
                                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.fsync_seconds = Histogram("aios_store_commit_seconds", "Group commit write+fsync time", registry=r,
                                       buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05, 0.1, 0.25, 1))
        self.ws_clients = Gauge("aios_websocket_clients", "Connected WebSocket clients", registry=r)
        self.live = Gauge("aios_live_since_start", "Live push counts since start (docs/live.md): events, frames, "
                          "overflows, dropped_frames, refused, expired, state_errors", ["count"], registry=r)
        self.agents_up = Gauge("aios_agents_up", "Supervised agents running", registry=r)
        self.bus_depth = Gauge("aios_bus_queue_depth", "Events waiting in each bus subscriber's queue", ["subscriber"],
                               registry=r)
        self.undecided = Gauge("aios_events_undecided", "Stored events not yet through the matcher", registry=r)
        self.decision_errors = Gauge("aios_decision_errors", "Events whose observers, match or dispatch raised, "
                                     "since start", registry=r)
        self.approval_timer_failures = Gauge("aios_approval_timer_failures", "Approval expiry timers that raised "
                                             "since start (each such run was denied, saying why)", registry=r)
        self.dispatching = Gauge("aios_decisions_dispatching", "Decisions being handed to guards and scheduler",
                                 registry=r)
        self.loop_lag = Gauge("aios_event_loop_lag_seconds", "How late the event loop woke at the last sample",
                              registry=r)
        self.loop_lag_worst = Gauge("aios_event_loop_lag_worst_seconds", "Worst event loop lag in the last minute",
                                    registry=r)
        self.evictions = Gauge("aios_state_evicted", "Entries evicted from a capped per-key map since start, by map",
                               ["map"], registry=r)
        self.notifications = Counter("aios_notifications", "Notification deliveries by target and outcome: sent, "
                                     "failed (to be retried), gave_up, dropped (queue full)", ["target", "outcome"],
                                     registry=r)
        self.background_failures = Counter("aios_background_failures", "Background tasks that failed, by task",
                                           ["task"], registry=r)
        self.set_asides_held = Gauge("aios_set_aside_decisions_held", "Set-aside decisions not stored (rate "
                                     "limit per playbook, key and reason), since start", registry=r)
        self.problems_open = Gauge("aios_problems_open", "Open problems, by kind", ["kind"], registry=r)
        self.problems_opened = Gauge("aios_problems_opened", "Problems opened since start, by kind", ["kind"],
                                     registry=r)
        self.problems_resolved = Gauge("aios_problems_resolved", "Problems resolved since start, by kind and by "
                                       "what (run, itself)", ["kind", "by"], registry=r)
        self.problems_escalated = Gauge("aios_problems_escalated", "Problems escalated since start, by kind",
                                        ["kind"], registry=r)
        self.healed_share = Gauge("aios_problems_healed_share", "Problems resolved / problems opened, since start",
                                  registry=r)
        self.heal_seconds = Histogram("aios_problem_heal_seconds", "Time from a problem's opening to its resolution",
                                      registry=r, buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
        self.label_overflow = 0  # event types counted as "other" because the label cache is full
        self._by_type: dict[str, Any] = {}  # label children, cached: `labels()` costs more than `inc()`
        self._other = self.ingested.labels("other")

    def count_ingested(self, event_type: str) -> None:
        child = self._by_type.get(event_type)
        if child is None:
            if len(self._by_type) >= MAX_TYPE_LABELS:  # the cache stays bounded too: types are client input
                self._other.inc()
                self.label_overflow += 1
                return
            child = self._by_type[event_type] = self.ingested.labels(event_type)
        child.inc()

    def problems(self, book: Any) -> None:
        """The problem book's counts (engine.problems.book.Book), read at scrape time."""
        open_by_kind: dict[str, int] = dict.fromkeys(book.opened_total, 0)
        for problem in book.open.values():
            open_by_kind[problem.kind] = open_by_kind.get(problem.kind, 0) + 1
        for kind, count in open_by_kind.items():
            self.problems_open.labels(kind).set(count)
        for kind, count in book.opened_total.items():
            self.problems_opened.labels(kind).set(count)
        for (kind, by), count in book.resolved_total.items():
            self.problems_resolved.labels(kind, by).set(count)
        for kind, count in book.escalated_total.items():
            self.problems_escalated.labels(kind).set(count)
        opened = sum(book.opened_total.values())
        self.healed_share.set(sum(book.resolved_total.values()) / opened if opened else 1.0)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
