"""Circuit breaker, remediation budget and loop guard, with an injected clock."""
from engine.admission.guards import Budget, CircuitBreaker, LoopGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_n_failures_in_the_window_then_lets_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(clock, failures=3, window_s=600, cooldown_s=900)
    fix = ("fix", '["coder"]')
    assert breaker.record(fix, False) is None
    clock.now += 700  # the first failure has left the window
    assert breaker.record(fix, False) is None
    assert breaker.record(fix, False) is None
    assert breaker.check(fix) is None
    opened = breaker.record(fix, False)
    assert opened is not None and opened.event_type == "reactor.circuit_open"
    assert opened.data["playbook"] == "fix" and opened.data["key"] == '["coder"]'
    aside = breaker.check(fix)
    assert aside is not None and aside.reason == "circuit open" and aside.detail.startswith("circuit open until")
    assert breaker.check(("fix", '["analyst"]')) is None  # per (playbook, key): another target is still fixed
    assert breaker.check(("other", '["coder"]')) is None

    clock.now += 901
    assert breaker.state(fix) == "half_open"
    assert breaker.check(fix) is None
    assert breaker.check(fix) is None  # checking spends nothing: only the admitted run takes the probe
    breaker.commit(fix)
    assert breaker.states("fix") == {"probing": 1}
    assert "probe run is going" in breaker.check(fix).detail
    reopened = breaker.record(fix, False)  # the probe failed: open again at once
    assert reopened is not None and reopened.data["probe_failed"] is True
    clock.now += 901
    assert breaker.check(fix) is None
    breaker.commit(fix)
    assert breaker.record(fix, True) is None  # the probe succeeded: closed
    assert breaker.state(fix) == "closed" and breaker.check(fix) is None


def test_a_probe_whose_outcome_never_comes_back_releases_the_breaker_when_its_lease_expires():
    clock = Clock()
    breaker = CircuitBreaker(clock, failures=1, window_s=600, cooldown_s=900, lease_s=120)
    breaker.record(("fix", "[]"), False)
    clock.now += 901
    breaker.commit(("fix", "[]"))  # a probe admitted, then lost (displaced, engine bug…)
    assert breaker.check(("fix", "[]")) is not None
    clock.now += 121
    assert breaker.state(("fix", "[]")) == "half_open" and breaker.check(("fix", "[]")) is None


def test_budget_caps_runs_per_agent_across_playbooks_successes_included_and_recovers():
    clock = Clock()
    budget = Budget(clock, max_runs=3, window_s=3600)
    for _ in range(3):
        assert budget.check({"coder"}) is None
        budget.commit({"coder"})
        clock.now += 60
    first = budget.check({"coder"})
    assert first is not None and first.event_type == "escalation.budget_exhausted" and first.reason == "budget"
    assert first.data["agent"] == "coder" and first.data["max_runs"] == 3
    again = budget.check({"coder"})
    assert again is not None and again.event_type is None  # announced once per window
    assert budget.check({"analyst"}) is None
    assert budget.check({"analyst", "coder"}) is not None  # a run touching both is still refused
    clock.now = 1000.0 + 3600 + 1  # the oldest run left the window
    assert budget.check({"coder"}) is None


def test_per_key_state_is_capped_and_evictions_are_counted():
    clock = Clock()
    budget = Budget(clock, max_runs=1, window_s=3600, cap=100)
    breaker = CircuitBreaker(clock, failures=5, cap=100)
    for n in range(5000):
        budget.commit({f"agent-{n}"})
        breaker.record(("fix", f'["k{n}"]'), False)
    assert len(budget.map) == 100 and budget.map.evicted == 4900
    assert len(breaker.map) == 100 and breaker.map.evicted == 4900
    assert budget.check({"agent-4999"}) is not None  # the newest keys are still guarded


def test_loop_guard_refuses_deep_chains_and_playbooks_retriggered_by_their_own_results():
    clock = Clock()
    guard = LoopGuard(clock, max_depth=4, max_self=2, window_s=600)
    deep = guard.check("pb", {"id": "e9", "chain": ["a", "b", "c", "d"]})
    assert deep is not None and deep.event_type == "reactor.loop_detected" and deep.data["depth"] == 4
    assert deep.reason == "loop"
    assert guard.check("pb", {"id": "e1", "chain": ["a"]}) is None

    guard.emitted("out-1", "pb")
    for n in (1, 2):
        assert guard.check("pb", {"id": f"x{n}", "chain": ["out-1"]}) is None
        guard.commit("pb", {"id": f"x{n}", "chain": ["out-1"]})
    looped = guard.check("pb", {"id": "x3", "chain": ["out-1"]})
    assert looped is not None and looped.data["why"] == "self-trigger"
    assert guard.check("other", {"id": "x4", "chain": ["out-1"]}) is None  # another playbook's results are fine
    clock.now += 601
    assert guard.check("pb", {"id": "x5", "chain": ["out-1"]}) is None
