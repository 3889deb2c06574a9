"""Problem kinds (`rules/*.problems.yaml`): loaded and linted like playbooks, applied to events as the spec says."""
from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import ROOT, run_cli

from engine.playbooks.registry import Registry
from engine.problems import docgen
from engine.problems.kinds import KindRegistry, Step, kind_files, kind_from, load_kinds, load_kinds_file
from engine.schemas import load_schema

SHIPPED = ROOT / "rules" / "problems.problems.yaml"
KIND = """\
kind: {name}
opened_by: agent.error
key: [agent]
resolved_by: [agent.heartbeat]
"""
EVENT = {"type": "agent.down", "agent": "coder", "host": "h", "data": {"exit_code": 1}}


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def lines(path: Path) -> list[str]:
    return [str(d) for d in load_kinds_file(path)[1]]


# -- the shipped kinds -----------------------------------------------------------------------------------
def test_the_shipped_kinds_lint_clean_and_are_the_five_of_the_docs():
    kinds, diagnostics = load_kinds_file(SHIPPED)
    assert diagnostics == []
    assert {k.kind: (k.opened_by, k.key) for k in kinds} == {
        "agent-down": (("agent.down",), ("agent",)),
        "cpu-spike": (("resource.cpu_spike",), ("host",)),
        "memory-high": (("resource.memory_high",), ("host",)),
        "disk-full": (("resource.disk_full",), ("host",)),
        "score-degraded": (("score.degraded",), ("agent",)),
    }
    assert all(k.description and k.escalate_after_s == 300.0 for k in kinds)
    down = next(k for k in kinds if k.kind == "agent-down")
    assert [[s.type for s in seq] for seq in down.resolved_by] == [["agent.started", "agent.heartbeat"],
                                                                    ["agent.recovered"]]
    assert kind_files(ROOT / "rules") == [str(ROOT / "rules" / "problems.problems.yaml")]


def test_lint_of_the_shipped_rules_checks_playbooks_and_kinds():
    result = run_cli("lint", str(ROOT / "rules"))
    assert result.returncode == 0, result.stdout
    count = len(os.listdir(ROOT / "rules"))
    assert result.stderr.strip().endswith(f"in {count} files")


# -- behaviour -------------------------------------------------------------------------------------------
def test_opens_key_of_and_subject():
    kinds, _ = load_kinds(ROOT / "rules")
    down = kinds.kinds["agent-down"]
    cpu = kind_from({"kind": "per-agent", "opened_by": "x.y", "key": ["host", "agent"], "resolved_by": ["x.z"]})
    assert down.opens(EVENT) and down.opens({**EVENT, "data": {}})  # absent exit code: ne holds
    assert not down.opens({**EVENT, "data": {"exit_code": 0}})  # a clean stop is no fault
    assert not down.opens({**EVENT, "type": "agent.started"})
    assert down.key_of(EVENT) == '["coder"]' and down.subject(EVENT) == {"agent": "coder"}
    assert cpu.key_of(EVENT) == '["h","coder"]' and cpu.subject(EVENT) == {"host": "h", "agent": "coder"}
    assert cpu.key_of({"type": "x.y", "host": "h"}) == '["h",null]'
    assert cpu.subject({"type": "x.y", "host": "h"}) == {"host": "h"}
    assert down.key_of({**EVENT, "agent": {"b": 1, "a": 2}}) == '[{"a":2,"b":1}]'


def test_kind_set_is_indexed_by_opening_type():
    kinds, _ = load_kinds(ROOT / "rules")
    assert len(kinds) == 5
    assert [k.kind for k in kinds.opening(EVENT)] == ["agent-down"]
    assert kinds.opening({**EVENT, "data": {"exit_code": 0}}) == []
    assert kinds.opening({"type": "agent.heartbeat"}) == [] and kinds.opening({"type": ["not", "hashable"]}) == []


def test_step_matches_type_and_where():
    kind = kind_from({"kind": "k", "opened_by": "a.b", "key": ["agent"],
                      "resolved_by": [{"type": "agent.task_done", "where": {"data.ok": True,
                                                                           "data.note": {"matches": "^fix"}}}]})
    step = kind.resolved_by[0][0]
    assert step.matches({"type": "agent.task_done", "data": {"ok": True, "note": "fixed it"}})
    assert not step.matches({"type": "agent.task_done", "data": {"ok": 1, "note": "fixed it"}})  # no coercion
    assert not step.matches({"type": "agent.task_done", "data": {"ok": True, "note": "broke it"}})
    assert not step.matches({"type": "agent.error", "data": {"ok": True, "note": "fixed it"}})
    assert Step("agent.heartbeat").matches({"type": "agent.heartbeat"})


# -- lint ------------------------------------------------------------------------------------------------
def test_a_typo_in_a_key_is_placed_with_a_suggestion(tmp_path: Path):
    path = write(tmp_path, "x.problems.yaml", KIND.format(name="k").replace("opened_by", "opend_by"))
    found = lines(path)
    assert f"{path}:2:1: error: unknown key 'opend_by': did you mean 'opened_by'?" in found[1]
    assert found[0] == f"{path}:1:1: error: 'opened_by' is a required property"
    assert load_kinds_file(path)[0] == ()


def test_semantic_mistakes_are_placed(tmp_path: Path):
    path = write(tmp_path, "x.problems.yaml", """\
- kind: a
  opened_by: [agent.down, agent.error]
  when: {data.reason: {matches: "(?<=x)y"}}
  key: [agnt]
  resolved_by:
    any:
      - [agent.started, {type: agent.error, where: {data.x: {matches: "a(b"}}}]
  escalate_after: 10x
""")
    found = lines(path)
    assert any(line.startswith(f"{path}:8:19: error: ") and "duration" in line for line in found)
    assert len(found) == 1  # an item with a schema error gets no semantic checks (as playbooks)
    path.write_text(path.read_text().replace("10x", "10m"))
    found = lines(path)
    assert found[0].startswith(f"{path}:3:33: error: invalid regular expression '(?<=x)y'")
    assert found[1].startswith(f"{path}:4:9: error: unknown event field 'agnt' (did you mean 'agent'?)")
    assert found[2].startswith(f"{path}:7:32: error: 'agent.error' opens this kind")
    assert found[3].startswith(f"{path}:7:71: error: invalid regular expression 'a(b'")
    assert len(found) == 4


def test_yaml_errors_and_empty_files(tmp_path: Path):
    dup = write(tmp_path, "d.problems.yaml", "kind: a\nkind: b\n")
    assert lines(dup)[0].startswith(f"{dup}:2:1: error: duplicate key")
    empty = write(tmp_path, "e.problems.yaml", "")
    assert lines(empty) == [f"{empty}:1:1: warning: the file holds no problem kind"]


def test_a_kind_repeated_in_one_file_or_across_files(tmp_path: Path):
    item = "- kind: k\n  opened_by: agent.error\n  key: [agent]\n  resolved_by: [agent.heartbeat]\n"
    one = write(tmp_path, "one.problems.yaml", item + item)
    assert lines(one) == [f"{one}:5:9: error: duplicate problem kind 'k' (first defined at {one}:1:9)"]
    folder = tmp_path / "rules"
    first = write(folder, "a.problems.yaml", KIND.format(name="k"))
    later = write(folder / "sub", "b.problems.yaml", KIND.format(name="k"))
    kinds, errors = load_kinds(folder)
    assert list(kinds.kinds) == ["k"] and kinds.kinds["k"].file == str(first)
    assert errors == {str(later): [f"{later}:1:7: error: duplicate problem kind 'k' (first defined at {first}:1:7)"]}


def test_cli_lint_exits_1_with_the_line_of_a_bad_kinds_file(tmp_path: Path):
    write(tmp_path, "good.yaml", "id: good\non: agent.down\nsteps:\n  - id: c\n    action: compact\n")
    write(tmp_path, "p.problems.yaml", KIND.format(name="k").replace("key: [agent]", "key: [agent]\nowner: ''"))
    result = run_cli("lint", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{tmp_path / 'p.problems.yaml'}:4:8: error: '' should be non-empty"]
    assert result.stderr.strip() == "1 error, 0 warnings in 2 files"
    as_json = json.loads(run_cli("lint", str(tmp_path / "p.problems.yaml"), "--format", "json").stdout)
    assert (as_json["line"], as_json["col"], as_json["code"]) == (4, 8, "schema")


def test_a_kinds_file_is_not_loaded_as_playbooks(tmp_path: Path):
    rules = tmp_path / "rules"
    write(rules, "good.yaml", "id: good\non: agent.down\nsteps:\n  - id: c\n    action: compact\n")
    write(rules, "p.problems.yaml", KIND.format(name="k"))
    events: list[dict] = []
    registry = Registry(rules, emit=events.append)
    registry.reload()
    assert list(registry.playbooks) == ["good"] and registry.health()["state"] == "ok"
    assert [e["type"] for e in events] == ["playbook.loaded"]


# -- the registry ----------------------------------------------------------------------------------------
def test_the_registry_keeps_a_broken_files_last_good_kinds(tmp_path: Path):
    rules = tmp_path / "rules"
    path = write(rules, "p.problems.yaml", KIND.format(name="k"))
    registry = KindRegistry(rules)
    assert len(registry.kinds) == 0
    assert registry.reload() is True and list(registry.kinds.kinds) == ["k"]
    assert registry.health() == {"state": "ok", "kinds": 1, "files": 1, "errors": {}}
    assert registry.reload() is False  # nothing changed
    path.write_text(KIND.format(name="k").replace("agent.heartbeat", "Agent.Heartbeat"))
    assert registry.reload() is False and list(registry.kinds.kinds) == ["k"]
    health = registry.health()
    assert health["state"] == "degraded" and health["errors"][str(path)][0].startswith(f"{path}:4:15: error: ")
    path.write_text(KIND.format(name="k2"))
    assert registry.reload() is True and list(registry.kinds.kinds) == ["k2"]
    assert registry.health()["state"] == "ok"
    path.unlink()
    assert registry.reload() is True and len(registry.kinds) == 0


def test_the_registry_parses_only_changed_files(tmp_path: Path, monkeypatch):
    rules = tmp_path / "rules"
    write(rules, "a.problems.yaml", KIND.format(name="a"))
    write(rules, "b.problems.yaml", KIND.format(name="b"))
    registry = KindRegistry(rules)
    registry.reload()
    parsed: list[str] = []
    from engine.problems import kinds as module

    real = module.load_kinds_file
    monkeypatch.setattr(module, "load_kinds_file", lambda path: parsed.append(Path(path).name) or real(path))
    (rules / "b.problems.yaml").write_text(KIND.format(name="b").replace("agent.error", "agent.learning"))
    assert registry.reload() is True
    assert parsed == ["b.problems.yaml"] and registry.kinds.kinds["b"].opened_by == ("agent.learning",)


def test_a_failed_listing_changes_nothing(tmp_path: Path):
    rules = tmp_path / "rules"
    write(rules, "a.problems.yaml", KIND.format(name="a"))
    registry = KindRegistry(rules)
    registry.reload()
    rules.rename(tmp_path / "elsewhere")
    assert registry.reload() is False and list(registry.kinds.kinds) == ["a"]
    assert registry.health()["state"] == "degraded" and "cannot list" in str(registry.health()["errors"])
    assert load_kinds(rules)[1] and len(load_kinds(rules)[0]) == 0


# -- schema and docs -------------------------------------------------------------------------------------
def _without_docs(schema: dict) -> dict:
    return {key: _without_docs(value) if isinstance(value, dict) else value for key, value in schema.items()
            if key not in ("description", "examples")}


def test_the_copied_condition_definitions_equal_the_playbook_schemas():
    mine, playbook = load_schema("problem")["$defs"], load_schema("playbook")["$defs"]
    for name in ("conditions", "condition", "operators", "ordered", "path", "positive_duration"):
        assert _without_docs(mine[name]) == _without_docs(playbook[name]), name


def test_every_property_is_documented_and_the_table_is_up_to_date():
    schema = load_schema("problem")
    for name, spec in schema["$defs"]["kind"]["properties"].items():
        assert spec.get("description") and spec.get("examples"), name
    text = docgen.DOC.read_text(encoding="utf-8")
    assert docgen.render(text, schema) == text, "run: python -m engine.problems.docgen"
    assert docgen.main(["--check"]) == 0
    assert all(f"| `{name}` |" in text for name in schema["$defs"]["kind"]["properties"])


def test_every_example_in_the_schema_is_accepted(tmp_path: Path):
    base = {"kind": "k", "opened_by": "a.b", "key": ["agent"], "resolved_by": ["c.d"]}
    for name, spec in load_schema("problem")["$defs"]["kind"]["properties"].items():
        for i, example in enumerate(spec["examples"]):
            path = write(tmp_path, f"{name}{i}.problems.yaml", json.dumps({**base, name: example}))
            assert lines(path) == [], (name, example)


def test_a_cpu_spike_whose_repeat_names_another_agent_is_still_one_problem_that_its_clear_resolves():
    from engine.problems.book import Book
    from engine.problems.kinds import KindSet

    book = Book(KindSet(load_kinds_file(SHIPPED)[0]), emit=lambda *a: None, new_id=lambda: "p1",
                clock=lambda: 1_800_000_000.0)
    spike = {"type": "resource.cpu_spike", "host": "h1", "data": {"percent": 97.0}}
    book.fold({**spike, "id": "s1", "agent": "coder"})
    book.fold({**spike, "id": "s2", "agent": "analyst", "data": {"percent": 96.0, "repeat": True}})  # top changed
    book.fold({"id": "c1", "type": "resource.cpu_spike_cleared", "host": "h1", "agent": "coder", "data": {}})
    [problem] = book.problems()
    assert problem.status == "resolved" and problem.events == 2 and problem.subject == {"host": "h1"}
