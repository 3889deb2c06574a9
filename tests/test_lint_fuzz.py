"""No input makes lint crash or hang: random bytes, broken YAML, bombs, deep nesting, huge files,
and playbooks mutated at random so that every semantic check meets odd but schema-valid shapes."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import ROOT, run_cli

from engine.config import load_config
from engine.playbooks.lint import LintResult, lint_file
from engine.schemas import is_valid, load_schema, validator
from engine.yaml_loader import MAX_BYTES, load_file

# What a schema-valid shape can still get wrong (anything else would mean the generator is off).
SEMANTIC_CODES = {"template", "template-path", "event-path", "regex", "regex-template", "needs-unknown", "needs-cycle",
                  "duplicate-step", "duplicate-id", "unknown-agent", "timeout", "loop", "shadowed", "schema"}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = sorted((ROOT / "rules").glob("*.yaml"))
SCHEMA = load_schema("playbook")
Lint = Callable[[bytes], LintResult]


def as_yaml(value: Any) -> bytes:
    """`value` as a file: JSON is YAML (non-ASCII written as is: libyaml reads no JSON surrogate pairs)."""
    return json.dumps(value, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def lint_bytes(tmp_path_factory: pytest.TempPathFactory) -> Lint:
    """Lint `data` as one file, with a config declaring one agent; checks the result hangs together."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "aios.yaml").write_text("agents:\n  coder: {command: [x]}\n")
    config = load_config(folder / "aios.yaml")

    def lint(data: bytes) -> LintResult:
        path = folder / "fuzz.yaml"
        path.write_bytes(data)
        result = lint_file(path, config)
        assert_consistent(result)
        return result

    return lint


def assert_consistent(result: LintResult) -> None:
    for diagnostic in result.diagnostics:
        assert diagnostic.loc.line >= 1 and diagnostic.loc.col >= 1
        assert diagnostic.severity in ("error", "warning") and diagnostic.message and diagnostic.code
        assert str(diagnostic).startswith(f"{diagnostic.loc}: {diagnostic.severity}: ")
    assert (result.errors > 0) == (result.files_ok == [])
    assert not (result.errors and result.playbooks)  # a file with an error loads nothing


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(lint_bytes: Lint, data: bytes):
    lint_bytes(data)


@FUZZ
@given(st.text(alphabet=st.sampled_from("{}[]:,-?&*!|>'\"#%@` \n\tabon0.1"), max_size=400))
def test_random_yaml_punctuation(lint_bytes: Lint, text: str):
    lint_bytes(text.encode())


@FUZZ
@given(st.data())
def test_a_shipped_rule_with_random_edits(lint_bytes: Lint, data: st.DataObject):
    text = bytearray(data.draw(st.sampled_from(SEEDS)).read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(b"{}[]:,- \n\"'#&*x0\xff"))
        if kind == "insert":
            text[at:at] = bytes([byte])
        elif at < len(text):
            text[at:at + 1] = b"" if kind == "delete" else bytes([byte])
    lint_bytes(bytes(text))


# Values that reach deep into the checks: names the schema knows, templates, durations, regexes.
WORDS = sorted({*SCHEMA["$defs"]["playbook"]["properties"], *SCHEMA["$defs"]["step"]["properties"],
                *SCHEMA["$defs"]["operators"]["properties"], *SCHEMA["$defs"]["actions"], "data.x", "agent", "a"})
SCALARS = st.one_of(
    st.sampled_from(WORDS), st.sampled_from(["{agent}", "{steps.a.stdout}", "{data", "{{x}}", "(", "0s", "5m",
                                             "agent.down", "score.degraded", "coder", "P1", "TERM", "0644"]),
    st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"), max_size=8),
)
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(WORDS), inner, max_size=5)), max_leaves=30)


STRINGS = st.sampled_from(["{agent}", "{steps.restart.stdout}", "{steps.verify.exit_code}", "{steps.nope.stdout}",
                            "{data", "x}", "{{x}}", "{dta.x}", "{agent.x}", "(", "a{2}", "^a{{2}}$", "0s", "5m",
                            "agent.down", "ops.x", "score.x", "coder", "ghost", "restart", "verify", ""])


def _mutate(value: Any, data: st.DataObject, gentle: bool, depth: int = 0) -> Any:
    """`value` with one node changed somewhere inside: a leaf swapped for one of its own type (`gentle`,
    so the playbook mostly stays schema-valid and reaches the semantic checks), or any node replaced by
    a random tree, a key dropped or added."""
    if isinstance(value, dict) and value and depth < 6:
        key = data.draw(st.sampled_from(sorted(value)))
        choice = "descend" if gentle else data.draw(st.sampled_from(["descend", "replace", "drop", "add"]))
        if choice == "descend":
            return {**value, key: _mutate(value[key], data, gentle, depth + 1)}
        if choice == "drop":
            return {k: v for k, v in value.items() if k != key}
        if choice == "add":
            return {**value, data.draw(st.sampled_from(WORDS)): data.draw(TREES)}
        return {**value, key: data.draw(TREES)}
    if isinstance(value, list) and value and depth < 6:
        index = data.draw(st.integers(0, len(value) - 1))
        return value[:index] + [_mutate(value[index], data, gentle, depth + 1)] + value[index + 1:]
    if gentle and isinstance(value, str):
        return data.draw(STRINGS)
    return data.draw(TREES)


@FUZZ
@given(st.data())
def test_mutated_playbooks_never_crash_and_the_validators_agree(lint_bytes: Lint, data: st.DataObject):
    value = load_file(data.draw(st.sampled_from(SEEDS))).value
    gentle = data.draw(st.booleans())
    for _ in range(data.draw(st.integers(1, 3))):
        value = _mutate(value, data, gentle)
    precise = not any(True for _ in validator("playbook").iter_errors(value))
    assert is_valid("playbook", value) == precise
    lint_bytes(as_yaml(value))


@settings(max_examples=60, deadline=None)
@given(TREES)
def test_random_trees(lint_bytes: Lint, value: Any):
    lint_bytes(as_yaml(value))


STEP_IDS = st.sampled_from(["a", "b", "c", "d"])
PATHS = st.sampled_from(["agent", "data.x", "data.top.0.pid", "agnet", "type.x", "steps.a.stdout"])
CONDITIONS = st.dictionaries(PATHS, st.one_of(STRINGS, st.integers(), st.fixed_dictionaries(
    {}, optional={"matches": STRINGS, "ne": SCALARS, "in": st.lists(SCALARS, max_size=3), "exists": st.booleans()})),
    max_size=3)
STEPS = st.one_of(
    st.fixed_dictionaries({"id": STEP_IDS, "action": st.just("shell"), "with": st.fixed_dictionaries(
        {"argv": st.lists(STRINGS, min_size=1, max_size=3)})}, optional={"needs": st.lists(STEP_IDS, unique=True)}),
    st.fixed_dictionaries({"id": STEP_IDS, "action": st.just("wait_for"), "with": st.fixed_dictionaries(
        {"type": st.just("agent.heartbeat"), "within": st.sampled_from(["1s", "1m"]), "where": CONDITIONS})},
        optional={"needs": st.lists(STEP_IDS, unique=True), "timeout": st.sampled_from(["1s", "1h"])}),
    st.fixed_dictionaries({"id": STEP_IDS, "action": st.sampled_from(["restart_agent", "signal"]),
                           "with": st.fixed_dictionaries({"agent": STRINGS})}),
    st.fixed_dictionaries({"id": STEP_IDS, "action": st.just("emit"), "with": st.fixed_dictionaries(
        {"type": st.sampled_from(["agent.down", "ops.x"]),
         "data": st.dictionaries(st.sampled_from(WORDS), STRINGS)})}),
)
PLAYBOOKS = st.fixed_dictionaries(
    {"id": st.sampled_from(["p", "q"]), "on": st.sampled_from(["agent.down", ["agent.down", "ops.x"]]),
     "steps": st.lists(STEPS, min_size=1, max_size=5)},
    optional={"when": CONDITIONS, "confidence": st.sampled_from([0.2, 0.9]), "exclusive": st.booleans(),
              "rollback": st.lists(STEPS.map(lambda s: {k: v for k, v in s.items() if k != "needs"}), max_size=2),
              "snapshot": st.lists(STRINGS, max_size=2), "throttle": st.just({"within": "1m", "key": ["agnt"]})})


@FUZZ
@given(st.lists(PLAYBOOKS, min_size=1, max_size=3))
def test_generated_playbooks_reach_every_semantic_check(lint_bytes: Lint, playbooks: list[dict[str, Any]]):
    result = lint_bytes(as_yaml(playbooks))
    assert {d.code for d in result.diagnostics} <= SEMANTIC_CODES


@pytest.mark.parametrize("name, text, code", [
    ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, n in zip("abcdefgh", "bcdefghi")), "alias-bomb"),
    ("deep flow nesting", "a: " + "[" * 100_000, "too-deep"),
    ("deep block nesting", "".join(" " * i + "a:\n" for i in range(2000)), "too-deep"),
    ("recursive alias", "a: &a [*a]\n", "alias-bomb"),
    ("a 5 MB key", "id: p\n" + "k" * 5_000_000 + ": 1\n", "yaml"),
    ("many broken playbooks", "".join(f"- {{id: Bad{i}, on: x, steps: 5}}\n" for i in range(5000)),
     "too-many-errors"),
    ("a regex repeat past RE2's 1000", 'id: p\non: a.b\nwhen: {data.x: {matches: "a{1001}"}}\n'
     "steps: [{id: a, action: compact}]\n", "regex"),
    ("nested regex repeats", 'id: p\non: a.b\nwhen: {data.x: {matches: "((a{100}){100}){100}"}}\n'
     "steps: [{id: a, action: compact}]\n", "regex"),
    ("a regex of a million characters", 'id: p\non: a.b\nwhen: {data.x: {matches: "' + "[a-z]{1000}" * 100_000
     + '"}}\nsteps: [{id: a, action: compact}]\n', "schema"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_hostile_files_fail_fast_with_a_place(lint_bytes: Lint, name: str, text: str, code: str):
    start = time.perf_counter()
    result = lint_bytes(text.encode())
    assert time.perf_counter() - start < 10
    assert code in {d.code for d in result.diagnostics}


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:
        out.truncate(MAX_BYTES + 1)
    start = time.perf_counter()
    [error] = lint_file(path).diagnostics
    assert (error.code, error.loc.line, error.loc.col) == ("too-large", 1, 1)
    assert time.perf_counter() - start < 1


def test_a_long_chain_of_steps_is_linear(tmp_path: Path):
    steps = "".join(f"  - {{id: s{i}, action: shell, needs: [s{i - 1}], with: {{argv: [\"{{steps.s0.stdout}}\"]}}}}\n"
                    for i in range(1, 3000))
    path = tmp_path / "chain.yaml"
    path.write_text("id: p\non: a.b\nsteps:\n  - {id: s0, action: compact}\n" + steps)
    start = time.perf_counter()
    assert lint_file(path).diagnostics == []
    assert time.perf_counter() - start < 10


def test_the_cli_never_prints_a_traceback_for_bad_input(tmp_path: Path):
    (tmp_path / "bytes.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bomb.yaml").write_text("a: " + "[" * 10_000)
    (tmp_path / "fifo.yaml").mkdir()  # a directory named like a file is simply walked
    result = run_cli("lint", str(tmp_path), "/dev/null", "--format", "json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    codes = [json.loads(line)["code"] for line in result.stdout.splitlines()]
    assert codes == ["file", "too-deep", "encoding"]
