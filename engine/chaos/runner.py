"""Run a chaos scenario end to end and say what happened: inject, follow the problem, verify, clean up, and
check that no event acknowledged meanwhile was lost (a probe load, `AckLoad`, posts all along).

A scenario passes only when its problem resolved by a run of a playbook (not by itself) before the deadline,
its own checks hold, and every acknowledged probe event is stored (through the API; with `--data` the store's
files are read too: every line whole, no id twice). `random` runs a seeded mix for a duration.
"""
from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.chaos.audit import audit_store
from engine.chaos.engine_api import ChaosError, EngineApi
from engine.chaos.follow import follow
from engine.chaos.load import LOAD_TYPE, AckLoad
from engine.chaos.scenarios import SCENARIOS
from engine.chaos.scenarios.base import Options, Scenario
from engine.events import format_ts

log = logging.getLogger("aios.chaos")
PROBE_RATE = 20.0  # events/s posted during a scenario, each checked afterwards


@dataclass(slots=True)
class Report:
    scenario: str
    seed: int
    target: str | None = None
    fault: dict[str, Any] = field(default_factory=dict)
    injected_at: float | None = None
    detected_at: float | None = None
    healed_at: float | None = None
    problem: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    reason: str = ""

    def seconds(self, later: float | None) -> float | None:
        return round(later - self.injected_at, 2) if later is not None and self.injected_at is not None else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("injected_at", "detected_at", "healed_at"):
            data[key] = format_ts(data[key]) if data[key] is not None else None
        data["time_to_detect_s"] = self.seconds(self.detected_at)
        data["time_to_heal_s"] = self.seconds(self.healed_at)
        if self.problem is not None:  # the problem in short: the timeline is in GET /api/problems/{id}
            keep = ("id", "kind", "subject", "status", "opened_at", "escalated_at", "resolved_at", "run_id", "reasons")
            data["problem"] = {k: self.problem.get(k) for k in keep}
        return data

    def line(self) -> str:
        """The one-line human summary."""
        who = f" {self.target}" if self.target else ""
        if not self.ok:
            return f"chaos {self.scenario}{who}: FAILED: {self.reason}"
        runs = len(self.runs)
        return (f"chaos {self.scenario}{who}: healed in {self.seconds(self.healed_at):.1f} s (detected after "
                f"{self.seconds(self.detected_at):.1f} s, {runs} run{'s' * (runs != 1)}, "
                f"{self.events.get('lost', 0)} events lost)")


async def run_scenario(api: EngineApi, name: str, seed: int, options: Options) -> Report:
    """One scenario against the engine `api` talks to; never raises for the fault's sake (the report says)."""
    report = Report(scenario=name, seed=seed)
    scenario: Scenario = SCENARIOS[name](api, random.Random(seed), options)
    deadline_s = options.deadline_s or scenario.deadline_s
    probe = AckLoad(api.url, rate=PROBE_RATE, batch_size=5, max_in_flight=4, token=api.token, seed=seed)
    prepared = False
    try:
        await scenario.prepare()
        prepared = True
        report.target = scenario.target
        await probe.start()
        report.injected_at = time.time()
        report.fault = await scenario.inject()
        followed = await follow(api, scenario.kinds, scenario.subject(), report.injected_at,
                                report.injected_at + deadline_s)
        report.problem = followed.problem
        report.runs = [await _run(api, run) for run in followed.runs]
        report.detected_at, report.healed_at = followed.detected_at, followed.healed_at
        report.reason = followed.reason
        if followed.healed and not (followed.problem or {}).get("run_id"):
            report.reason = "the problem resolved by itself, not by a run of a playbook"
        elif followed.healed:
            report.reason = await scenario.verify() or ""
    except ChaosError as exc:
        report.reason = str(exc)
    except Exception as exc:  # the fault's own machinery failed: said in the report, cleaned up all the same
        log.exception("chaos %s failed", name)
        report.reason = f"the scenario itself failed: {type(exc).__name__}: {exc}"
    finally:
        if prepared:
            await scenario.cleanup()
    if prepared:
        report.events = await _lost(api, probe, report.injected_at or time.time(), options)
        if report.events.get("lost") and not report.reason:
            report.reason = f"{report.events['lost']} acknowledged events are not in the store"
        if report.events.get("damaged_lines") and not report.reason:
            report.reason = f"{report.events['damaged_lines']} lines of the store cannot be read"
    report.ok = report.healed_at is not None and not report.reason
    return report


async def _run(api: EngineApi, run: Any) -> dict[str, Any]:
    """A problem's run as the report shows it: its playbook, how it ended, and why when it failed."""
    run_id = run.get("run_id") if isinstance(run, dict) else str(run)
    try:
        record = await api.get(f"/api/runs/{run_id}")
    except ChaosError as exc:
        return {"run_id": run_id, "error": str(exc)}
    return {"run_id": run_id, "playbook": record.get("playbook"), "status": record.get("status"),
            "error": record.get("error"), "started": record.get("started"), "ended": record.get("ended")}


async def _lost(api: EngineApi, probe: AckLoad, since: float, options: Options) -> dict[str, Any]:
    """The probe's figures, and which acknowledged events the store does not hold."""
    stats = await probe.stop(drain_s=30.0)
    stored = await api.event_ids(LOAD_TYPE, since - 60)
    figures: dict[str, Any] = {"posted": stats.posted, "acked": stats.acked, "refused": dict(stats.refused),
                               "retries": stats.retries, "lost": len(probe.acked - stored),
                               "longest_without_ack_s": round(stats.max_ack_gap_s, 2)}
    if options.data_dir is not None:
        audit = await asyncio.to_thread(audit_store, options.data_dir, probe.acked, probe.unacked())
        figures.update(damaged_lines=audit.skipped_lines, stored_twice=len(audit.duplicated))
    return figures


async def run_random(api: EngineApi, seed: int, duration_s: float, options: Options,
                     names: tuple[str, ...]) -> list[Report]:
    """Scenarios drawn from `names` (seeded) one after another until `duration_s` is spent."""
    rng = random.Random(seed)
    end = time.monotonic() + duration_s
    reports = []
    while time.monotonic() < end or not reports:
        name = rng.choice(names)
        reports.append(await run_scenario(api, name, rng.randrange(2**31), options))
        log.info(reports[-1].line())
    return reports


def table(reports: list[Report]) -> str:
    """Per scenario: runs, healed, time to heal p50/p95 (markdown)."""
    lines = ["| scenario | runs | healed | heal p50 (s) | heal p95 (s) | detect p50 (s) | events lost |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in sorted({r.scenario for r in reports}):
        mine = [r for r in reports if r.scenario == name]
        heals = sorted(s for r in mine if r.ok and (s := r.seconds(r.healed_at)) is not None)
        detects = sorted(s for r in mine if (s := r.seconds(r.detected_at)) is not None)
        lost = sum(r.events.get("lost", 0) for r in mine)
        lines.append(f"| {name} | {len(mine)} | {sum(r.ok for r in mine)} | {_q(heals, 0.5)} | {_q(heals, 0.95)} "
                     f"| {_q(detects, 0.5)} | {lost} |")
    return "\n".join(lines)


def _q(values: list[float], q: float) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[round(q * 100) - 1]:.1f}"
