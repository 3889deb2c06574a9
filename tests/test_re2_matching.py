"""`matches` is an RE2 search: linear whatever the pattern, compiled once at load, never from a template."""
from __future__ import annotations

import asyncio
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import re2
from reactor_harness import Harness, pb

from engine.playbooks.compiler import Index
from engine.playbooks.conditions import all_hold
from engine.playbooks.lint import lint_file
from engine.playbooks.matcher import Matcher
from engine.playbooks.model import Condition, Playbook
from engine.playbooks.regex import Regex

# Python's `re` takes 13 s on 28 'a's and a '!' against `(a+)+$`, twice as long per extra 'a': without
# RE2 these cases take minutes to years, and the alarm fails the test instead of letting it hang.
PATHOLOGICAL = [("a" * 28 + "!", False), ("a" * 40 + "!", False), ("a" * 100_000, True), ("a" * 100_000 + "!", False)]


@pytest.fixture
def alarm() -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("a regex search took over 30 s: backtracking, not RE2")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def load(tmp_path: Path, text: str) -> list[Playbook]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    result = lint_file(path)
    assert result.errors == 0, [str(d) for d in result.diagnostics]
    return result.playbooks


def test_a_catastrophic_pattern_is_decided_by_the_matcher_as_re2_says(tmp_path: Path, alarm: None):
    playbooks = load(tmp_path, 'id: greedy\non: agent.error\nwhen: {data.s: {matches: "(a+)+$"}}\n'
                               "steps: [{id: a, action: compact}]\n")
    matcher = Matcher(Index(playbooks), clock=lambda: 0.0)
    for text, expected in PATHOLOGICAL:
        match = matcher.match({"id": "e", "type": "agent.error", "data": {"s": text}})
        assert [d.playbook_id for d in match.decisions] == (["greedy"] if expected else []), len(text)
        assert all_hold(playbooks[0].when, {"data": {"s": text}}) is expected  # the reference agrees


def test_the_pattern_is_compiled_at_load_never_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    playbooks = load(tmp_path, 'id: p\non: agent.error\nwhen: {data.s: {matches: "^co.*r$"}}\n'
                               "steps: [{id: a, action: compact}]\n")
    matcher = Matcher(Index(playbooks), clock=lambda: 0.0)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled while matching")

    monkeypatch.setattr(re2, "compile", refuse)
    results = [bool(matcher.match({"type": "agent.error", "data": {"s": s}}).decisions) for s in ("coder", "cod", 7)]
    assert results == [True, False, False]  # a number never matches: no coercion


@pytest.mark.parametrize("pattern, text, expected", [
    ("a$", "a\n", False),  # `$` is the end of the text (Python's `re` also matches before a final newline)
    (r"^\d+$", "١٢٣", False),  # `\d` is ASCII (Python's `re` takes Arabic-Indic digits)
    (r"\w", "é", False),  # so is `\w`
    (r"\pL", "é", True),  # Unicode classes are written \pL, \p{Greek}
    (r"^a{2}\{x\}$", "aa{x}", True),
    ("(?i)CODER", "coder", True),
    ("a.b", "a\ud800b", True),  # a lone surrogate in an event is searched, never raises
    ("(a)\\1", "aa", False),  # no backreferences: lint refuses it, and it never matches
])
def test_semantics_are_re2s_in_both_evaluators(pattern: str, text: str, expected: bool):
    playbook = Playbook(id="p", on=("t.x",), when=(Condition("data.s", "matches", pattern),))
    event = {"type": "t.x", "data": {"s": text}}
    assert all_hold(playbook.when, event) is expected
    assert bool(Index([playbook]).candidates(event)) is expected


def test_a_failed_compile_writes_nothing_to_stderr(tmp_path: Path):
    """RE2 logs each failed compile through absl unless told not to; lint reports it at its place instead."""
    path = tmp_path / "p.yaml"
    path.write_text("id: p\non: agent.error\nwhen: {data.s: {matches: '(a)\\1'}}\nsteps: [{id: a, action: compact}]\n")
    code = (f"from engine.playbooks.lint import lint_file; r = lint_file({str(path)!r}); "
            "print(*(str(d) for d in r.diagnostics))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr == ""
    assert f"{path}:3:26: error: invalid regular expression" in done.stdout


def test_thousands_of_groups_cost_nothing_per_group():
    """With capture groups, RE2's NFA copies every group's position per thread and per character: 4,000
    nested groups around `a+` took 24 s on 1,000 characters. `matches` only asks yes or no, so nothing is
    captured. Run in a child (RE2's C++ cannot be interrupted), limited to 1 GB and 60 s."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from engine.playbooks.regex import Regex; r = Regex('(' * 4000 + 'a+' + ')' * 4000); "
            "print(r.error, r.search('a' * 20_000 + '!'), r.search('b' * 20_000))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["None", "True", "False"], done.stderr[-2000:]


def test_a_wait_for_where_pattern_is_never_rendered(data_dir: Path):
    """Even past lint, the reactor hands a `where` pattern on as written: an event supplying `.*` as
    `data.p` does not turn `{data.p}` into a pattern; `{2}` stays a counted repeat."""
    playbook = pb({"id": "verify", "timeout": "5s", "steps": [
        {"id": "say", "action": "emit", "with": {"type": "agent.heartbeat", "data": {"s": "{data.s}"}}},
        {"id": "wait", "needs": ["say"], "action": "wait_for", "with": {
            "type": "agent.heartbeat", "within": "300ms",
            "where": {"data.s": {"matches": "^(x{data.p}|a{2})$"}}}},
    ]})
    assert isinstance(playbook.steps[1].with_["where"]["data.s"]["matches"], Regex)
    runs = {}
    for text in ("zzz", "x{data.p}", "aa"):
        h = Harness(data_dir / text, [playbook], clock=lambda: 1000.0)  # the wait looks back at the emit
        runs[text] = asyncio.run(h.run("verify", {"id": "c", "type": "agent.error", "agent": "coder",
                                                  "data": {"s": text, "p": ".*"}}))
    assert runs == {"zzz": "failed", "x{data.p}": "succeeded", "aa": "succeeded"}


def test_a_pattern_crosses_a_lint_worker_and_is_written_as_its_text():
    """Parallel lint pickles playbooks; run records and the API write `where` as JSON."""
    regex = pickle.loads(pickle.dumps(Regex("^co")))
    assert isinstance(regex, Regex) and regex.search("coder") and not regex.search("decor")
    assert orjson.dumps({"m": regex}) == b'{"m":"^co"}' and regex == "^co"
