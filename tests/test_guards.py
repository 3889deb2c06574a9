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
    assert breaker.record("fix", False) is None
    clock.now += 700  # the first failure has left the window
    assert breaker.record("fix", False) is None
    assert breaker.record("fix", False) is None
    assert breaker.admit("fix") is None
    opened = breaker.record("fix", False)
    assert opened is not None and opened.event_type == "reactor.circuit_open"
    assert opened.data["playbook"] == "fix"
    aside = breaker.admit("fix")
    assert aside is not None and aside.reason.startswith("circuit open")
    assert breaker.admit("other") is None  # per playbook

    clock.now += 901
    assert breaker.state("fix") == "half_open"
    assert breaker.admit("fix") is None  # the probe
    assert "probe run is going" in breaker.admit("fix").reason
    reopened = breaker.record("fix", False)  # the probe failed: open again at once
    assert reopened is not None and reopened.data["probe_failed"] is True
    clock.now += 901
    assert breaker.admit("fix") is None
    assert breaker.record("fix", True) is None  # the probe succeeded: closed
    assert breaker.state("fix") == "closed" and breaker.admit("fix") is None


def test_budget_caps_runs_per_agent_across_playbooks_successes_included_and_recovers():
    clock = Clock()
    budget = Budget(clock, max_runs=3, window_s=3600)
    for _ in range(3):
        assert budget.admit({"coder"}) is None
        clock.now += 60
    first = budget.admit({"coder"})
    assert first is not None and first.event_type == "escalation.budget_exhausted"
    assert first.data["agent"] == "coder" and first.data["max_runs"] == 3
    again = budget.admit({"coder"})
    assert again is not None and again.event_type is None  # announced once per window
    assert budget.admit({"analyst"}) is None
    assert budget.admit({"analyst", "coder"}) is not None  # a run touching both is still refused
    clock.now = 1000.0 + 3600 + 1  # the oldest run left the window
    assert budget.admit({"coder"}) is None


def test_loop_guard_refuses_deep_chains_and_playbooks_retriggered_by_their_own_results():
    clock = Clock()
    guard = LoopGuard(clock, max_depth=4, max_self=2, window_s=600)
    deep = guard.admit("pb", {"id": "e9", "chain": ["a", "b", "c", "d"]})
    assert deep is not None and deep.event_type == "reactor.loop_detected" and deep.data["depth"] == 4
    assert guard.admit("pb", {"id": "e1", "chain": ["a"]}) is None

    guard.emitted("out-1", "pb")
    assert guard.admit("pb", {"id": "x1", "chain": ["out-1"]}) is None
    assert guard.admit("pb", {"id": "x2", "chain": ["out-1"]}) is None
    looped = guard.admit("pb", {"id": "x3", "chain": ["out-1"]})
    assert looped is not None and looped.data["why"] == "self-trigger"
    assert guard.admit("other", {"id": "x4", "chain": ["out-1"]}) is None  # another playbook's results are fine
    clock.now += 601
    assert guard.admit("pb", {"id": "x5", "chain": ["out-1"]}) is None
