"""The problem book as a fold over events, with an injected clock: opening, joining, resolution sequences,
re-decisions when reasons lapse, escalation once, restart from its files (docs/problems.md)."""
from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from engine.events import format_ts
from engine.problems.book import Book, Problem
from engine.problems.files import ProblemFiles
from engine.problems.kinds import KindSet, kind_from

AGENT_DOWN = kind_from({"kind": "agent-down", "opened_by": "agent.down", "when": {"data.exit_code": {"ne": 0}},
                        "key": ["agent"], "escalate_after": "5m",
                        "resolved_by": {"any": [["agent.started", "agent.heartbeat"], ["agent.recovered"]]}})
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make(**options):
    clock = Clock()
    emitted: list[tuple[str, dict]] = []
    ids = (f"{n:04d}" for n in itertools.count())
    book = Book(KindSet([AGENT_DOWN]), emit=lambda t, d, cause, sev: emitted.append((t, d)),
                new_id=lambda: next(ids), clock=clock, **options)
    return book, clock, emitted


def ev(clock: Clock, type_: str, agent: str = "coder", **data) -> dict:
    ev.n = getattr(ev, "n", 0) + 1
    return {"id": f"e{ev.n}", "type": type_, "ts": format_ts(clock.now), "agent": agent, "data": data}


def decision(clock: Clock, cause: dict, outcome: str, run_id: str | None = None, **data) -> dict:
    return ev(clock, "scheduler.decision", cause.get("agent"), cause=cause["id"], outcome=outcome, run_id=run_id,
              playbook="restart", exclusive=True, **data)


def test_an_agent_down_opens_one_problem_and_a_second_joins_it():
    book, clock, emitted = make()
    first = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(first)
    book.fold(ev(clock, "agent.down", exit_code=0, agent="analyst"))  # a clean exit: not a fault
    clock.now += 5
    second = ev(clock, "agent.down", exit_code=1)
    book.fold(second)
    [problem] = book.problems(open_only=True)
    assert problem.events == 2 and problem.cause["id"] == second["id"] and problem.subject == {"agent": "coder"}
    assert [t for t, _ in emitted] == ["problem.opened"]
    assert emitted[0][1]["problem"] == problem.id and emitted[0][1]["kind"] == "agent-down"


def test_resolution_needs_its_sequence_in_order_and_names_the_run_that_healed():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(ev(clock, "agent.heartbeat"))  # a stale heartbeat before the restart: not healed
    assert book.problems(open_only=True)
    book.fold(decision(clock, down, "queued", "r1"))
    book.fold(ev(clock, "reactor.started", cause=down["id"], run_id="r1", playbook="restart"))
    clock.now += 4
    book.fold(ev(clock, "agent.started"))
    book.fold(ev(clock, "agent.heartbeat"))
    assert not book.problems(open_only=True)
    [problem] = book.problems()
    assert problem.status == "resolved" and problem.run_id == "r1" and problem.heal_s == 4.0
    assert emitted[-1] == ("problem.resolved", {**emitted[-1][1], "heal_s": 4.0, "run_id": "r1"})
    assert [e.get("what") or e["type"] for e in problem.timeline] == [
        "opened", "scheduler.decision", "reactor.started", "resolved"]


def test_a_silent_agent_that_speaks_again_heals_by_itself():
    book, clock, emitted = make()
    book.fold(ev(clock, "agent.down", reason="heartbeat"))
    clock.now += 2
    book.fold(ev(clock, "agent.recovered", reason="heartbeat"))
    assert emitted[-1][0] == "problem.resolved" and "run_id" not in emitted[-1][1]


def test_a_throttled_problem_is_decided_again_when_the_window_lapses_and_not_before():
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "set_aside", reason="throttled", retry_at=format_ts(T0 + 90)))
    clock.now = T0 + 89
    assert book.due() == []
    clock.now = T0 + 90
    [again] = book.due()
    assert again.event["id"] == down["id"] and again.why == "throttled lapsed"
    assert book.due() == []  # asked once: the answer is awaited, not asked again each tick
    book.fold(decision(clock, down, "queued", "r2", redecision="throttled lapsed"))
    clock.now += 1000
    assert book.due() == []  # a run is going for it: nothing to decide


def test_a_failed_run_is_decided_again_at_once_skipping_the_playbook_that_failed():
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "queued", "r1"))
    book.fold(ev(clock, "reactor.started", cause=down["id"], run_id="r1", playbook="restart"))
    book.fold(ev(clock, "reactor.failed", cause=down["id"], run_id="r1", playbook="restart", status="failed"))
    [again] = book.due()
    assert again.why == "run failed" and again.exclude == {"restart"}


def test_a_run_a_person_cancelled_is_not_tried_again_at_once_and_the_lifted_hold_decides_again():
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "queued", "r1"))
    book.fold(ev(clock, "reactor.started", cause=down["id"], run_id="r1", playbook="restart"))
    book.fold(ev(clock, "reactor.failed", cause=down["id"], run_id="r1", playbook="restart", status="cancelled",
                 by="cli:ann@ops via 127.0.0.1"))
    assert book.due() == [], "a person stopped that fix: not straight back in"
    problem = book.problems(open_only=True)[0]
    assert "restart" in problem.tried and "cancelled by cli:ann@ops" in problem.reasons["restart: run cancelled"]
    clock.now += 60
    [again] = book.due()
    assert again.exclude == {"restart"}

    book.fold(decision(clock, down, "set_aside", reason="silenced:S1", redecision="resync"))
    clock.now += 1
    assert book.due() == []
    book.fold(ev(clock, "control.silence_expired", agent=None, lifts=["silenced:S1"]))
    [lifted] = book.due()
    assert lifted.why == "silenced:S1 lifted"


def test_a_reset_lifts_only_the_holds_of_its_own_target():
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold({**decision(clock, down, "set_aside", reason="budget"), "agent": "coder"})
    clock.now += 1
    book.fold(ev(clock, "control.budget_reset", agent="analyst", lifts=["budget:analyst"]))
    book.fold(ev(clock, "control.playbook_enabled", agent=None, lifts=["disabled:restart"]))
    assert book.due() == [], "another agent's budget, a playbook that held nothing: no re-decision"
    book.fold(ev(clock, "control.budget_reset", agent="coder", lifts=["budget:coder"]))
    [again] = book.due()
    assert again.why == "budget:coder lifted"


def test_same_answer_to_a_resync_backs_off_up_to_five_minutes():
    book, clock, _ = make(resync_s=60.0)
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "set_aside", reason="unknown_agent"))  # lapses never by itself
    waits = []
    for _ in range(5):
        problem = book.problems()[0]
        waits.append(problem.next_at - clock.now)
        clock.now = problem.next_at
        [again] = book.due()
        book.fold(decision(clock, down, "set_aside", reason="unknown_agent", redecision=again.why))
    assert waits == [60.0, 120.0, 240.0, 300.0, 300.0]


def test_escalation_goes_once_with_every_reason_and_the_problem_stays_open():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "set_aside", reason="budget", detail="budget for coder exhausted"))
    clock.now = T0 + 299
    book.due()
    assert not [t for t, _ in emitted if t == "problem.escalated"]
    clock.now = T0 + 300
    book.due()
    clock.now = T0 + 900
    book.due()
    escalations = [d for t, d in emitted if t == "problem.escalated"]
    assert len(escalations) == 1
    assert any("budget" in reason for reason in escalations[0]["reasons"])
    assert book.problems(open_only=True)[0].escalated_at == T0 + 300


def test_no_playbook_escalates_at_once():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(ev(clock, "scheduler.decision", cause=down["id"], outcome="set_aside", playbook=None,
                 reason="no_playbook", detail="no exclusive playbook acts on this agent.down"))
    assert [t for t, _ in emitted] == ["problem.opened", "problem.escalated"]


def test_a_down_agent_the_engine_does_not_run_escalates_at_once_with_the_reason():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", "ghost", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "set_aside", reason="unknown_agent", detail="'ghost' is not a declared agent"))
    assert [t for t, _ in emitted] == ["problem.opened", "problem.escalated"]
    assert emitted[1][1]["reasons"] == ["restart: unknown_agent ('ghost' is not a declared agent)"]


def test_open_problems_come_back_from_their_files_and_are_decided_again_after_a_restart(tmp_path: Path):
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "queued", "r1"))  # the engine dies with this run going
    files = ProblemFiles(tmp_path)
    assert files.write({p.id: p.as_dict() for p in book.dirty(100)}) == []
    assert book.dirty(100) == []  # written: nothing left to write

    (files.dir / "pr-broken.json").write_text("{not json")  # a damaged file is skipped, not fatal
    raw, newest = files.load()
    fresh, clock2, emitted = make()
    clock2.now = clock.now + 60
    stale = ev(clock, "agent.started")  # stored before the kill: read again at start, it must not count
    stale["ts"] = format_ts(T0 - 10)
    again_down = {**down}  # in the timeline already: not folded twice
    missed = [again_down, decision(clock, down, "queued", "r1"), stale, ev(clock, "agent.heartbeat")]
    fresh.restarted([Problem.from_dict(item) for item in raw], missed)
    [problem] = fresh.problems(open_only=True)
    assert problem.events == 1 and problem.progress == [0, 0]
    assert problem.active == set() and problem.why == "engine restarted"  # r1 died with the old engine
    assert fresh.due() == []
    clock2.now += 3
    [again] = fresh.due()
    assert again.why == "engine restarted" and again.event["id"] == down["id"]
    fresh.fold(ev(clock2, "agent.started"))
    fresh.fold(ev(clock2, "agent.heartbeat"))
    assert emitted[-1][0] == "problem.resolved" and emitted[-1][1]["problem"] == problem.id


def test_a_flood_of_made_up_subjects_keeps_at_most_max_open_forgetting_first_what_no_playbook_may_fix():
    book, clock, _ = make(max_open=3)
    downs = {agent: ev(clock, "agent.down", agent, signal="SIGKILL") for agent in ("a", "b", "c")}
    for down in downs.values():
        book.fold(down)
    book.fold(decision(clock, downs["b"], "set_aside", reason="unknown_agent"))  # made up: no fix may act
    clock.now += 400
    book.due()  # all three escalate
    book.fold(ev(clock, "agent.down", "d", signal="SIGKILL"))
    assert sorted(p.subject["agent"] for p in book.problems(open_only=True)) == ["a", "c", "d"]
    book.fold(ev(clock, "agent.down", "e", signal="SIGKILL"))
    assert sorted(p.subject["agent"] for p in book.problems(open_only=True)) == ["c", "d", "e"]  # oldest escalated
    assert book.evicted == 2
    assert [(p.subject["agent"], p.status) for p in book.dirty(100) if p.status != "open"] == \
        [("b", "forgotten"), ("a", "forgotten")]  # their files say so: not loaded open again after a restart


def test_a_run_whose_problem_saw_a_flood_of_other_events_still_ends_for_it(monkeypatch):
    monkeypatch.setattr("engine.problems.book.MAX_CAUSES", 4)
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    book.fold(decision(clock, down, "queued", "r1"))
    for n in range(20):  # other subjects push every older id out of the capped map
        book.fold(ev(clock, "agent.down", f"other{n}", signal="SIGKILL"))
    book.fold(ev(clock, "reactor.failed", run_id="r1", playbook="restart", status="failed"))
    [again] = [r for r in book.due() if r.event["id"] == down["id"]]
    assert again.why == "run failed" and again.exclude == frozenset({"restart"})


def test_a_problem_whose_kind_is_removed_by_a_reload_is_withdrawn_not_left_open_for_ever():
    book, clock, _ = make()
    book.fold(ev(clock, "agent.down", signal="SIGKILL"))
    book.set_kinds(KindSet([]))
    assert book.problems(open_only=True) == []
    assert [p.status for p in book.dirty(100)] == ["withdrawn"]


def test_catching_up_after_a_crash_in_the_write_window_announces_nothing_twice_and_keeps_the_ids():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)  # opened, and the engine is killed before its file is written
    book.fold(decision(clock, down, "set_aside", reason="no_playbook"))  # escalated at once
    stored = [down, decision(clock, down, "set_aside", reason="no_playbook")]
    stored += [ev(clock, type_, **data) for type_, data in emitted]  # what the old engine stored
    fresh, _, again = make()
    fresh.restarted([], stored)
    [problem] = fresh.problems(open_only=True)
    assert again == [] and problem.id == emitted[0][1]["problem"] and problem.escalated_at is not None
    up = ev(clock, "agent.recovered")
    fresh.fold(up)
    assert [(t, d["problem"]) for t, d in again] == [("problem.resolved", problem.id)]


def test_catching_up_announces_what_the_old_engine_never_stored():
    book, clock, emitted = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)
    fresh, _, again = make()
    fresh.restarted([], [down])  # its problem.opened was never stored
    assert [t for t, _ in again] == ["problem.opened"]


def test_a_problem_whose_first_answer_never_comes_is_decided_again_after_30_s():
    book, clock, _ = make()
    down = ev(clock, "agent.down", signal="SIGKILL")
    book.fold(down)  # its decision was lost (the store refused it): the problem must not wait for news
    clock.now = T0 + 29
    assert book.due() == []
    clock.now = T0 + 30
    [again] = book.due()
    assert again.event["id"] == down["id"] and again.why == "no answer to the last decision"


def test_problem_files_prune_what_is_closed_and_old_and_mark_every_write_pass(tmp_path: Path):
    from datetime import datetime, timezone

    files = ProblemFiles(tmp_path)
    old, new = format_ts(T0 - 86400 * 30), format_ts(T0)
    problems = {"pr-open": {"status": "open", "opened_at": old, "resolved_at": None},
                "pr-healed": {"status": "resolved", "opened_at": old, "resolved_at": old},
                "pr-recent": {"status": "resolved", "opened_at": old, "resolved_at": new},
                "pr-lost": {"status": "forgotten", "opened_at": old, "resolved_at": None},
                "pr-gone": {"status": "withdrawn", "opened_at": new, "resolved_at": None}}
    assert files.write({pid: {"id": pid, **raw} for pid, raw in problems.items()}) == []
    deleted = files.prune(datetime.fromtimestamp(T0 - 86400, timezone.utc))
    assert sorted(deleted) == ["pr-healed", "pr-lost"]
    assert sorted(raw["id"] for raw in files.load()[0]) == ["pr-gone", "pr-open", "pr-recent"]
    week_ago = time.time() - 7 * 86400
    for name in os.listdir(files.dir):
        os.utime(files.dir / name, (week_ago, week_ago))
    assert files.load()[1] == week_ago
    assert files.write({}) == []  # a pass with nothing to write still marks it: a quiet week is no catch-up
    assert files.load()[1] > week_ago + 7 * 86400 - 60


def test_a_mass_escalation_spreads_over_ticks_and_misses_none(monkeypatch):
    monkeypatch.setattr("engine.problems.book.DUE_BATCH", 3)
    book, clock, emitted = make()
    for n in range(7):
        book.fold(ev(clock, "agent.down", f"a{n}", signal="SIGKILL"))
    clock.now += 400
    counts = []
    for _ in range(4):
        before = len(emitted)
        book.due()
        counts.append(sum(t == "problem.escalated" for t, _ in emitted[before:]))
    assert counts == [3, 3, 1, 0]
