"""The problem book: open faults as levels, folded from the event stream (docs/problems.md).

Events are edges; a problem is the level they describe. The book folds every stored event, in order, into
the problems it concerns: an opening event opens (or joins) its kind's problem for its key value; the
engine's decisions and run outcomes about that problem's events (by `cause`) say whether something runs
for it and why not; the kind's `resolved_by` sequences close it. It never calls up the chain: what it
decides goes out through `emit` (problem.opened/resolved/escalated) and through `due()`, the re-decisions
the engine should make now (the assembly hands them to the decider).

Synchronous and cheap (dict lookups per event): it runs inside the decision loop, so it sees an opening
event before the decisions about it. All time comes from the event's `ts` or the injected clock.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.admission.scheduler import ACCEPTED
from engine.capped import CappedMap
from engine.events import event_time, format_ts, parse_ts
from engine.problems.kinds import Kind, KindSet

log = logging.getLogger("aios.problems")
Emit = Callable[[str, dict[str, Any], dict[str, Any], str], None]

RUN_ENDS = ("reactor.succeeded", "reactor.failed")  # every run ends with one of these (rolled_back follows failed)
FAILED_STATUSES = ("failed", "timeout")  # a run that ended so counts as tried; cancelled/error do not
MAX_BACKOFF_S = 300.0
HOPELESS = ("no_playbook", "unknown_agent")  # reasons no lapse can change: a person must look at once
# holds an operator or another problem lifts (their control.* event names them in data.lifts)
LIFTABLE = ("paused", "disabled", "budget", "circuit open")
LIFTABLE_PREFIXES = ("silenced:", "maintenance:", "inhibited_by:", "stopped:")
DUE_BATCH = 200  # escalations, and re-decisions, per due() call at most
AWAIT_DECISION_S = 30.0  # a re-decision whose answer never came back (a lost event) is asked again after this
RESTART_GRACE_S = 3.0  # re-decide open problems this long after a restart (recovered runs announce first)
AWAITING = "no answer to the last decision"
TIMELINE_HEAD, TIMELINE_TAIL = 20, 180
MAX_OPEN = 2_000
MAX_RESOLVED = 1_000
MAX_CAUSES = 50_000
MAX_RUNS = 50  # runs remembered per problem


@dataclass(slots=True)
class Problem:
    id: str
    kind: str
    key: str
    subject: dict[str, Any]
    opened_at: float
    cause: dict[str, Any]  # the latest opening event: what a re-decision matches again
    status: str = "open"
    events: int = 1
    progress: list[int] = field(default_factory=list)  # per resolved_by sequence: steps seen
    active: set[str] = field(default_factory=set)  # run ids queued, waiting or running for it
    runs: dict[str, str] = field(default_factory=dict)  # run id -> playbook:status, in start order
    tried: set[str] = field(default_factory=set)  # playbooks whose run for it failed
    reasons: dict[str, str] = field(default_factory=dict)  # "playbook: reason" -> detail
    next_at: float | None = None  # when to decide it again (None: only on news)
    why: str = ""  # why it is decided again at next_at
    backoff_s: float = 0.0
    escalated_at: float | None = None
    resolved_at: float | None = None
    heal_s: float | None = None
    run_id: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    elided: int = 0
    dirty: bool = True

    def note(self, entry: dict[str, Any]) -> None:
        """Append to the timeline: the first TIMELINE_HEAD and the last TIMELINE_TAIL entries are kept."""
        self.timeline.append(entry)
        if len(self.timeline) > TIMELINE_HEAD + TIMELINE_TAIL:
            del self.timeline[TIMELINE_HEAD]
            self.elided += 1
        self.dirty = True

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "key": self.key, "subject": self.subject, "status": self.status,
                "opened_at": format_ts(self.opened_at), "events": self.events,
                "escalated_at": _ts(self.escalated_at), "resolved_at": _ts(self.resolved_at), "heal_s": self.heal_s,
                "run_id": self.run_id, "running": sorted(self.active), "reasons": dict(self.reasons),
                "next_decision_at": _ts(self.next_at) if self.status == "open" else None}

    def as_dict(self) -> dict[str, Any]:
        """The whole problem, as its file and `GET /api/problems/{id}` show it."""
        return {**self.summary(), "cause": self.cause, "progress": self.progress, "runs": self.runs,
                "tried": sorted(self.tried), "why": self.why, "backoff_s": self.backoff_s,
                "timeline": self.timeline, "elided": self.elided}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Problem:
        problem = cls(raw["id"], raw["kind"], raw["key"], dict(raw["subject"]), _epoch(raw["opened_at"]),
                      dict(raw["cause"]), status=raw["status"], events=int(raw["events"]),
                      progress=list(raw["progress"]), runs=dict(raw["runs"]), tried=set(raw["tried"]),
                      reasons=dict(raw["reasons"]), why=raw.get("why", ""), backoff_s=float(raw["backoff_s"]),
                      escalated_at=_epoch(raw["escalated_at"]), resolved_at=_epoch(raw["resolved_at"]),
                      heal_s=raw["heal_s"], run_id=raw["run_id"], timeline=list(raw["timeline"]),
                      elided=int(raw["elided"]))
        problem.dirty = False
        return problem


def _held_by(reason: str, playbook: Any, decision: dict[str, Any]) -> str:
    """The code that lifts a hold for this target only: `disabled:<playbook>`, `circuit open:<playbook>`,
    `budget:<agent>`; the others name their target already (`silenced:<id>`, `stopped:<agent>`…) or hold all."""
    if reason in ("disabled", "circuit open"):
        return f"{reason}:{playbook}"
    if reason == "budget":
        return f"budget:{decision.get('agent')}"
    return reason


def _ts(epoch: float | None) -> str | None:
    return None if epoch is None else format_ts(epoch)


def _epoch(text: str | None) -> float | None:  # type: ignore[return]
    return None if text is None else parse_ts(text).timestamp()


@dataclass(frozen=True, slots=True)
class Redecision:
    """Decide `problem` again: match `event` (its latest opening event), skipping `exclude` while another
    candidate is left; `why` goes into the decision's `data.redecision`."""

    problem: str
    event: dict[str, Any]
    why: str
    exclude: frozenset[str]


class Book:
    """Open problems by (kind, key), recently resolved ones by id, and the events that belong to each."""

    def __init__(self, kinds: KindSet, *, emit: Emit, new_id: Callable[[], str], clock: Callable[[], float],
                 resync_s: float = 60.0, redecide: bool = True, max_open: int = MAX_OPEN,
                 on_healed: Callable[[float], None] = lambda heal_s: None) -> None:
        self.kinds = kinds
        self._emit = emit
        self._new_id = new_id
        self._clock = clock
        self.resync_s = resync_s
        self.redecide = redecide
        self.max_open = max_open
        self.open: dict[tuple[str, str], Problem] = {}  # capped by hand: the oldest escalated one goes first
        self.evicted = 0
        self.dropped: list[Problem] = []  # closed unhealed (forgotten, withdrawn) since dirty(): files say so
        self.resolved: CappedMap[str, Problem] = CappedMap("problems_resolved", MAX_RESOLVED)
        self._by_id: dict[str, tuple[str, str]] = {}
        self._by_cause: CappedMap[str, str] = CappedMap("problem_causes", MAX_CAUSES)  # event id -> problem id
        # a hold's reason code (silenced:<id>, paused, inhibited_by:<problem>…) -> the problems it set aside
        self._set_aside_by: CappedMap[str, set[str]] = CappedMap("problem_holds", MAX_OPEN)
        # ids an open problem must never lose to that cap: its runs and its latest cause (re-decisions answer
        # to it); dropped when it closes, so bounded by max_open × (MAX_RUNS + 1)
        self._owned: dict[str, str] = {}
        self.opened_total: dict[str, int] = {}
        self.resolved_total: dict[tuple[str, str], int] = {}
        self.escalated_total: dict[str, int] = {}
        self._on_healed = on_healed  # time to heal, for the histogram in /metrics
        self._catching_up = False
        # while catching up: announcements held until the stored problem.* events say they were made already
        self._held: dict[tuple[str, str], tuple[str, Problem, dict[str, Any], str, dict[str, Any] | None]] = {}
        self._resolvers: dict[str, list[Kind]] = {}
        self.set_kinds(kinds)

    # -- lookups ------------------------------------------------------------------------------------
    def set_kinds(self, kinds: KindSet) -> None:
        """Reloaded kinds. An open problem whose kind is gone, or now has another number of key paths, could
        never resolve: it is withdrawn (closed unhealed, logged); the fault, if it lasts, opens a new one."""
        self.kinds = kinds
        resolvers: dict[str, list[Kind]] = {}
        for kind in kinds.kinds.values():
            for step_type in sorted({step.type for sequence in kind.resolved_by for step in sequence}):
                resolvers.setdefault(step_type, []).append(kind)
        self._resolvers = resolvers
        self._withdraw_orphans()

    def _withdraw_orphans(self) -> None:
        for problem in list(self.open.values()):
            kind = self.kinds.kinds.get(problem.kind)
            try:
                keyed = kind is not None and len(orjson.loads(problem.key)) == len(kind.key)
            except orjson.JSONDecodeError:
                keyed = False
            if not keyed:
                self._drop(problem, "withdrawn")
                log.warning("problem withdrawn: its kind is gone or re-keyed",
                            extra={"problem": problem.id, "kind": problem.kind})

    def _drop(self, problem: Problem, status: str) -> None:
        self._close(problem)
        problem.status, problem.next_at, problem.dirty = status, None, True
        self.dropped.append(problem)
        self._lifted((f"inhibited_by:{problem.id}",))  # withdrawn or forgotten: it holds nothing off any more

    def get(self, problem_id: str) -> Problem | None:
        where = self._by_id.get(problem_id)
        if where is not None:
            return self.open.get(where)
        return self.resolved.peek(problem_id)

    def problems(self, open_only: bool = False) -> list[Problem]:
        """Newest first."""
        found: list[Problem | None] = list(self.open.values())
        if not open_only:
            found += [self.resolved.peek(k) for k in self.resolved]
        return sorted((p for p in found if p is not None), key=lambda p: p.opened_at, reverse=True)

    def opened_by(self, event: dict[str, Any]) -> bool:
        """Whether `event` opened a problem that is still open (folded already: the decision loop folds
        before it matches). The answers about it are that problem's first decisions: the dispatcher never
        holds them back, as a flood of repeats only ever joins."""
        problem = self._of(event.get("id"))
        return problem is not None and problem.events == 1 and problem.cause.get("id") == event.get("id")

    def _of(self, event_or_run_id: Any) -> Problem | None:
        if not isinstance(event_or_run_id, str):
            return None
        problem_id = self._owned.get(event_or_run_id) or self._by_cause.peek(event_or_run_id)
        problem = self.get(problem_id) if problem_id else None
        return problem if problem is not None and problem.status == "open" else None

    # -- folding events -----------------------------------------------------------------------------
    def fold(self, event: dict[str, Any]) -> None:
        """Take one stored event into account (the decision loop calls this for every event, in order)."""
        event_type = event.get("type")
        if not isinstance(event_type, str):
            return
        if event_type.startswith("problem."):
            if self._catching_up:
                self._recall(event_type, event)
            elif event_type == "problem.resolved":  # what it inhibited may act now
                self._lifted((f"inhibited_by:{(event.get('data') or {}).get('problem')}",))
            return
        if event_type.startswith("control."):
            lifts = (event.get("data") or {}).get("lifts")
            if isinstance(lifts, list):
                self._lifted(tuple(str(code) for code in lifts[:20]))
            return
        if event_type == "scheduler.decision":
            self._decision(event)
        elif event_type.startswith("reactor."):
            self._run_event(event_type, event)
        else:
            for kind in self.kinds.opening(event):
                self._opening(kind, event)
            if event_type in self._resolvers:
                self._resolving(event_type, event)

    def _opening(self, kind: Kind, event: dict[str, Any]) -> None:
        key = kind.key_of(event)
        now = event_time(event, self._clock())
        problem = self.open.get((kind.kind, key))
        if problem is not None and self._catching_up and now < event_time(problem.cause, 0.0):
            return  # read again after a restart, older than what the problem already holds
        if problem is not None:  # joins: the latest event is what a re-decision matches
            problem.events += 1
            self._owned.pop(str(problem.cause.get("id")), None)
            problem.cause = event
            problem.progress = [0] * len(kind.resolved_by)
            problem.note({"ts": event.get("ts"), "id": event.get("id"), "type": event["type"], "what": "joined"})
        else:
            problem = Problem(f"pr-{self._new_id()}", kind.kind, key, kind.subject(event), now, event,
                              progress=[0] * len(kind.resolved_by), backoff_s=self.resync_s,
                              next_at=self._clock() + AWAIT_DECISION_S, why=AWAITING)  # if its answer is lost
            self._admit(problem)
            problem.note({"ts": event.get("ts"), "id": event.get("id"), "type": event["type"], "what": "opened"})
            self.opened_total[kind.kind] = self.opened_total.get(kind.kind, 0) + 1
            log.warning("problem opened", extra={"problem": problem.id, "kind": kind.kind, "key": key,
                                                 "cause": event.get("id")})
            self._announce("problem.opened", problem, {}, "warning")
        if isinstance(event.get("id"), str):
            self._by_cause[event["id"]] = problem.id
            self._owned[event["id"]] = problem.id

    def _admit(self, problem: Problem) -> None:
        """Hold `problem` open; at the cap one is forgotten (logged, counted, its file marked `forgotten`) so
        that a flood of made-up subjects cannot grow memory: first the oldest no playbook may act on (an
        unknown agent, no playbook), else the oldest escalated, else the oldest."""
        if len(self.open) >= self.max_open:
            def rank(item: tuple[tuple[str, str], Problem]) -> int:
                reasons = item[1].reasons
                if any(r.endswith(tuple(f": {h}" for h in HOPELESS)) for r in reasons):
                    return 0
                return 1 if item[1].escalated_at is not None else 2
            victim = min(self.open.items(), key=rank)[1]  # min keeps the first (oldest) of the best rank
            self._drop(victim, "forgotten")
            self.evicted += 1
            log.error("problem forgotten: too many open", extra={"problem": victim.id, "kind": victim.kind,
                                                                 "max_open": self.max_open})
        self.open[(problem.kind, problem.key)] = problem
        self._by_id[problem.id] = (problem.kind, problem.key)

    def _resolving(self, event_type: str, event: dict[str, Any]) -> None:
        for kind in self._resolvers[event_type]:
            problem = self.open.get((kind.kind, kind.key_of(event)))
            if problem is None:
                continue
            if self._catching_up and event_time(event, 0.0) < event_time(problem.cause, 0.0):
                continue  # an old event read again after a restart: it came before the problem
            if len(problem.progress) != len(kind.resolved_by):  # the kind was edited: its sequences start over
                problem.progress = [0] * len(kind.resolved_by)
            for i, sequence in enumerate(kind.resolved_by):
                if problem.progress[i] < len(sequence) and sequence[problem.progress[i]].matches(event):
                    problem.progress[i] += 1
                    problem.dirty = True
                    if problem.progress[i] == len(sequence):
                        self._resolve(problem, event)
                        break

    def _resolve(self, problem: Problem, event: dict[str, Any]) -> None:
        now = event_time(event, self._clock())
        problem.status = "resolved"
        problem.resolved_at = now
        problem.heal_s = round(max(0.0, now - problem.opened_at), 3)
        healers = [rid for rid, what in problem.runs.items() if what.rsplit(":", 1)[1] in ("running", "succeeded")]
        problem.run_id = healers[-1] if healers else None
        problem.next_at = None
        problem.note({"ts": event.get("ts"), "id": event.get("id"), "type": event["type"], "what": "resolved",
                      "run_id": problem.run_id})
        self._close(problem)
        self.resolved[problem.id] = problem
        by = "run" if problem.run_id else "itself"
        self.resolved_total[(problem.kind, by)] = self.resolved_total.get((problem.kind, by), 0) + 1
        self._on_healed(problem.heal_s)
        log.info("problem resolved", extra={"problem": problem.id, "kind": problem.kind, "heal_s": problem.heal_s,
                                            "run_id": problem.run_id})
        data: dict[str, Any] = {"heal_s": problem.heal_s, "by": by}
        if problem.run_id:
            data["run_id"] = problem.run_id
        self._announce("problem.resolved", problem, data, "info", event)

    def _decision(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        problem = self._of(data.get("cause"))
        if problem is None:
            return
        outcome, playbook, run_id = data.get("outcome"), data.get("playbook"), data.get("run_id")
        entry = {"ts": event.get("ts"), "id": event.get("id"), "type": "scheduler.decision", "playbook": playbook,
                 "outcome": outcome}
        for name in ("reason", "detail", "run_id", "redecision", "repeats", "retry_at"):
            if data.get(name) is not None:
                entry[name] = data[name]
        problem.note(entry)
        now = self._clock()
        if data.get("exclusive") is False:  # a notification beside the fix: shown, but it heals nothing
            return
        if outcome in ACCEPTED and isinstance(run_id, str):
            problem.active.add(run_id)
            self._add_run(problem, run_id, f"{playbook}:queued")
            problem.next_at, problem.backoff_s = None, self.resync_s
            return
        if outcome in ("dropped", "displaced") and isinstance(run_id, str):
            problem.active.discard(run_id)
        # set_aside carries a reason code and a detail; the scheduler's refusals (coalesced, queue_full,
        # stopping) carry their sentence as the reason: the outcome is their code
        reason = str(data.get("reason") or outcome) if outcome == "set_aside" else str(outcome)
        detail = data.get("detail") if outcome == "set_aside" else data.get("reason")
        problem.reasons[f"{playbook or 'no playbook'}: {reason}"] = str(detail or reason)
        if reason in LIFTABLE or reason.startswith(LIFTABLE_PREFIXES):
            self._set_aside_by.setdefault(_held_by(reason, playbook, event), set).add(problem.id)
        if reason in HOPELESS:
            self._escalate(problem, now)
        self._plan(problem, now, data.get("retry_at"), f"{reason} lapsed")

    def _plan(self, problem: Problem, now: float, retry_at: Any, why: str) -> None:
        """When to decide a set-aside problem again: when its reason lapses (the earliest of its reasons'
        lapses), else at the resync backoff."""
        at, reason_why = now + problem.backoff_s, "resync"
        if isinstance(retry_at, str):
            try:
                lapse = parse_ts(retry_at).timestamp()
            except ValueError:
                lapse = None
            if lapse is not None:  # known: no use asking before it
                at, reason_why = max(lapse, now), why
        if problem.next_at is None or at < problem.next_at or problem.why == AWAITING:  # the earliest answer wins
            problem.next_at, problem.why = at, reason_why
        problem.dirty = True

    def _run_event(self, event_type: str, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        run_id = data.get("run_id")
        problem = self._of(run_id)  # runs of the problem's exclusive decisions only
        if problem is None or not isinstance(run_id, str):
            return
        playbook = str(data.get("playbook"))
        entry = {"ts": event.get("ts"), "id": event.get("id"), "type": event_type, "run_id": run_id,
                 "playbook": playbook}
        if data.get("reason"):
            entry["reason"] = data["reason"]
        problem.note(entry)
        if event_type in ("reactor.started", "reactor.resumed"):
            self._add_run(problem, run_id, f"{playbook}:running")
            problem.active.add(run_id)
        elif event_type in RUN_ENDS:
            status = "succeeded" if event_type == "reactor.succeeded" else str(data.get("status") or "failed")
            problem.runs[run_id] = f"{playbook}:{status}"
            problem.active.discard(run_id)
            by = data.get("by")
            person = status == "cancelled" and isinstance(by, str) and by != "engine"
            if status in FAILED_STATUSES or person:
                problem.tried.add(playbook)
                problem.reasons[f"{playbook}: run {'cancelled' if person else 'failed'}"] = \
                    f"run {run_id} {status}{f' by {by}' if person else ''}: {data.get('reason', '')}".strip(": ")
            if person and not problem.active:  # a person stopped that fix: not straight back in, ask later
                problem.next_at, problem.why = self._clock() + self.resync_s, "resync"
                problem.backoff_s = self.resync_s
            elif not problem.active:  # failed, or succeeded without healing: decide again now
                problem.next_at, problem.why = self._clock(), f"run {status}"
                problem.backoff_s = self.resync_s

    def _add_run(self, problem: Problem, run_id: str, what: str) -> None:
        problem.runs[run_id] = what
        self._owned[run_id] = problem.id
        while len(problem.runs) > MAX_RUNS:  # a crash loop over days: the newest runs are the ones that tell
            gone = next(iter(problem.runs))
            del problem.runs[gone]
            problem.active.discard(gone)
            self._owned.pop(gone, None)

    def _close(self, problem: Problem) -> None:
        """`problem` is no longer open: its ids go back to the capped map, as any past event's."""
        self.open.pop((problem.kind, problem.key), None)
        self._by_id.pop(problem.id, None)
        for owned in (*problem.runs, str(problem.cause.get("id"))):
            if self._owned.get(owned) == problem.id:
                del self._owned[owned]

    # -- time -----------------------------------------------------------------------------------------
    def due(self, now: float | None = None) -> list[Redecision]:
        """Escalations that are due (emitted), and the re-decisions to make now: DUE_BATCH of each at most, the
        rest at the next call (a mass escalation or a reload's re-decisions spread over ticks, never one long
        stall of the loop)."""
        now = self._clock() if now is None else now
        out: list[Redecision] = []
        escalations = 0
        for problem in list(self.open.values()):
            kind = self.kinds.kinds.get(problem.kind)
            escalate_after = kind.escalate_after_s if kind is not None else 300.0
            if problem.escalated_at is None and now - problem.opened_at >= escalate_after \
                    and escalations < DUE_BATCH:
                escalations += 1
                problem.reasons.setdefault("unhealed", f"open for {now - problem.opened_at:.0f}s")
                self._escalate(problem, now)
            if not self.redecide or problem.active or problem.next_at is None or now < problem.next_at \
                    or len(out) >= DUE_BATCH:
                continue
            if problem.why == "resync":  # nothing lapsed, the answer is likely the same: ask less often
                problem.backoff_s = min(MAX_BACKOFF_S, max(self.resync_s, problem.backoff_s * 2))
            why = problem.why  # until its answer comes back (and plans the next one), ask again only if it is lost
            problem.next_at, problem.why = now + AWAIT_DECISION_S, AWAITING
            problem.note({"ts": format_ts(now), "type": "redecision", "why": why})
            out.append(Redecision(problem.id, problem.cause, why, frozenset(problem.tried)))
        return out

    def _escalate(self, problem: Problem, now: float) -> None:
        if problem.escalated_at is not None:
            return
        problem.escalated_at = now
        reasons = [f"{what} ({detail})" if detail != what.split(": ", 1)[-1] else what
                   for what, detail in sorted(problem.reasons.items())]
        problem.note({"ts": format_ts(now), "type": "problem.escalated", "what": "escalated", "reasons": reasons})
        self.escalated_total[problem.kind] = self.escalated_total.get(problem.kind, 0) + 1
        log.error("problem escalated", extra={"problem": problem.id, "kind": problem.kind, "reasons": reasons})
        self._announce("problem.escalated", problem, {"reasons": reasons}, "error")

    def _lifted(self, codes: tuple[str, ...]) -> None:
        """An operator's hold ended (a silence, the pause, a disable, a reset, an inhibiting problem): decide
        again now the idle open problems one of `codes` set aside (level-triggered, no new event needed)."""
        now = self._clock()
        for code in codes:
            for problem_id in self._set_aside_by.pop(code) or ():
                problem = self.get(problem_id)
                if problem is None or problem.status != "open" or problem.active or problem.why == AWAITING:
                    continue
                problem.next_at, problem.why = now, f"{code} lifted"
                problem.dirty = True

    def rules_changed(self) -> None:
        """A playbook may have been enabled or added: decide every idle open problem again."""
        now = self._clock()
        for problem in self.open.values():
            if not problem.active:
                problem.next_at, problem.why = now, "rules reloaded"

    def restarted(self, problems: Iterable[Problem], missed: Iterable[dict[str, Any]] = ()) -> None:
        """After a restart: the problems from their files, then the stored events they missed (stored after
        a file was last written), each folded once: an event already in a timeline is skipped, and a
        resolving event older than the problem's latest opening cannot resolve it. Runs died with the old
        engine (a recovered one announces itself again), so each open problem is decided again shortly."""
        known: set[str] = set()
        for problem in problems:
            known.update(entry["id"] for entry in problem.timeline if isinstance(entry.get("id"), str))
            if problem.status != "open":
                if problem.status == "resolved":  # forgotten and withdrawn ones only wait for pruning
                    self.resolved[problem.id] = problem
                continue
            self._admit(problem)
            self.opened_total[problem.kind] = self.opened_total.get(problem.kind, 0) + 1  # held since start
            for entry in problem.timeline:
                ref = entry.get("id") if entry.get("what") in ("opened", "joined") else None
                if isinstance(ref, str):  # its events and runs are still its own
                    self._by_cause[ref] = problem.id
            for owned in (*problem.runs, str(problem.cause.get("id"))):
                self._owned[owned] = problem.id
        self._catching_up = True
        try:
            for event in missed:
                if event.get("id") not in known:
                    self.fold(event)
        finally:
            self._catching_up = False
            held, self._held = self._held, {}
            for type_, problem, data, severity, cause in held.values():  # never stored before the crash
                self._announce(type_, problem, data, severity, cause)
        self._withdraw_orphans()  # kinds edited while the engine was down
        now = self._clock()
        for problem in self.open.values():
            problem.active.clear()
            problem.next_at, problem.why = now + RESTART_GRACE_S, "engine restarted"

    def folded_types(self) -> list[str]:
        """Type globs of the events that can change a problem (what a catch-up after a restart reads)."""
        opening = {t for kind in self.kinds.kinds.values() for t in kind.opened_by}
        return sorted({*opening, *self._resolvers, "scheduler.decision", "reactor.*", "problem.*"})

    def _recall(self, event_type: str, event: dict[str, Any]) -> None:
        """A problem.* event the engine stored before it died, read again while catching up: the problem the
        catch-up opened again takes back its id, and what was announced then is not announced twice."""
        data = event.get("data") or {}
        problem_id = data.get("problem")
        if not isinstance(problem_id, str):
            return
        problem = self.get(problem_id)
        if event_type == "problem.opened" and problem is None:
            again = self.open.get((str(data.get("kind")), str(data.get("key"))))
            if again is not None and ("problem.opened", again.id) in self._held:
                self._rename(again, problem_id)
                problem = again
        if problem is None:
            return
        if self._held.pop((event_type, problem_id), None) is None and event_type == "problem.escalated" \
                and problem.escalated_at is None:  # escalated just before the crash, after its file was written
            problem.escalated_at = event_time(event, self._clock())
            problem.note({"ts": event.get("ts"), "id": event.get("id"), "type": event_type, "what": "escalated",
                          "reasons": data.get("reasons", [])})

    def _rename(self, problem: Problem, new_id: str) -> None:
        old = problem.id
        problem.id = new_id
        self._by_id[new_id] = self._by_id.pop(old)
        for ref in [entry.get("id") for entry in problem.timeline] + [*problem.runs]:
            if not isinstance(ref, str):
                continue
            if self._owned.get(ref) == old:
                self._owned[ref] = new_id
            if self._by_cause.peek(ref) == old:
                self._by_cause[ref] = new_id
        for (type_, held_id), held in list(self._held.items()):
            if held_id == old:
                del self._held[(type_, held_id)]
                self._held[(type_, new_id)] = held

    # -- out ------------------------------------------------------------------------------------------
    def _announce(self, type_: str, problem: Problem, data: dict[str, Any], severity: str,
                  cause: dict[str, Any] | None = None) -> None:
        if self._catching_up:
            self._held[(type_, problem.id)] = (type_, problem, data, severity, cause)
            return
        payload = {"problem": problem.id, "kind": problem.kind, "key": problem.key, "subject": problem.subject,
                   **data}
        self._emit(type_, payload, cause or problem.cause, severity)

    def capped_maps(self) -> tuple[CappedMap[str, Any], ...]:
        """The capped maps (their evictions are counted in /metrics)."""
        return self.resolved, self._by_cause, self._set_aside_by

    def dirty(self, limit: int) -> list[Problem]:
        """Up to `limit` problems changed since they were last returned (to be written to disk); the rest
        stay dirty for the next call."""
        found, self.dropped = self.dropped[:limit], self.dropped[limit:]
        for source in (self.open.values(), (self.resolved.peek(k) for k in self.resolved)):
            for problem in source:
                if len(found) >= limit:
                    break
                if problem is not None and problem.dirty:
                    found.append(problem)
        for problem in found:
            problem.dirty = False
        return found
