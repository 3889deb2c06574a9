"""`aios-engine lint`: every mistake named at its file:line:col, before deploy."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from engine.config import load_config
from engine.playbooks.lint import LintResult, lint_file, lint_paths

STEP = """\
steps:
  - id: restart
    action: restart_agent
    with: {agent: "{agent}"}
"""
GOOD = "id: good\non: agent.down\n" + STEP


def lint_text(tmp_path: Path, text: str | bytes, name: str = "p.yaml", config=None) -> LintResult:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return lint_file(path, config)


def where(result: LintResult, severity: str = "error") -> list[tuple[int, int, str]]:
    return [(d.loc.line, d.loc.col, d.code) for d in result.diagnostics if d.severity == severity]


# (case, text, line, col, code, words in the message): each text has exactly one error.
BAD = [
    ("typo in a top-level key", "id: p\non: agent.down\nwhne: {agent: coder}\n" + STEP,
     3, 1, "unknown-key", "unknown key 'whne': did you mean 'when'?"),
    ("on not an event type", "id: p\non: Agent.Down\n" + STEP,
     2, 5, "event-type", "'Agent.Down' is not an event type"),
    ("on list with a number", "id: p\non: [agent.down, 5]\n" + STEP,
     2, 18, "event-type", "5 is not an event type"),
    ("unknown action", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: restrat_agent\n",
     5, 13, "unknown-action", "did you mean 'restart_agent'?"),
    ("action field missing", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: restart_agent\n    with: {}\n",
     6, 11, "required", "'agent' is a required property"),
    ("unknown action field", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: signal\n"
     "    with: {agent: coder, sig: HUP}\n", 6, 26, "unknown-key", "unknown key 'sig': did you mean 'signal'?"),
    ("unquoted number in argv", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: shell\n"
     "    with: {argv: [sleep, 5]}\n", 6, 26, "schema", "5 is not a string (quote numbers and booleans)"),
    ("bad duration", "id: p\non: agent.down\ntimeout: 30 seconds\n" + STEP,
     3, 10, "duration", "'30 seconds' is not a duration above zero"),
    ("zero throttle window", "id: p\non: agent.down\nthrottle: {within: 0s}\n" + STEP,
     3, 20, "duration", "'0s' is not a duration above zero"),
    ("bad retry backoff", "id: p\non: agent.down\nretry: {backoff: 2 s}\n" + STEP,
     3, 18, "duration", "invalid duration '2 s'"),
    ("invalid regex", "id: p\non: agent.down\nwhen:\n  data.reason: {matches: \"(heart\"}\n" + STEP,
     4, 26, "regex", "invalid regular expression '(heart'"),
    ("regex backreference (RE2 has none)", "id: p\non: agent.down\nwhen:\n  data.reason: {matches: '(a)\\1'}\n"
     + STEP, 4, 26, "regex", "invalid escape sequence: \\1 (RE2 syntax, as in Prometheus: no backreferences"),
    ("regex lookahead", "id: p\non: agent.down\nwhen:\n  data.reason: {matches: '(?=x)'}\n" + STEP,
     4, 26, "regex", "invalid perl operator: (?= (RE2 syntax"),
    ("regex lookbehind", "id: p\non: agent.down\nwhen:\n  data.reason:\n    matches: '(?<=x)'\n" + STEP,
     5, 14, "regex", "invalid perl operator: (?<= (RE2 syntax"),
    ("templated regex in when", "id: p\non: agent.down\nwhen:\n  data.reason: {matches: \"^{data.p}\"}\n" + STEP,
     4, 26, "regex-template", "a 'matches' pattern is never a template, yet '{data.p}' at character 2 reads as one"),
    ("templated regex in a wait_for where", "id: p\non: agent.down\nsteps:\n  - id: w\n    action: wait_for\n"
     "    with: {type: agent.heartbeat, within: 5s, where: {data.s: {matches: \"{data.p}\"}}}\n",
     6, 73, "regex-template", "'{data.p}' at character 1 reads as one (a pattern must not come from the event)"),
    ("template-escaped braces in a where regex", "id: p\non: agent.down\nsteps:\n  - id: w\n    action: wait_for\n"
     "    with: {type: agent.heartbeat, within: 5s, where: {data.s: {matches: \"^a{{2}}$\"}}}\n",
     6, 73, "regex-template", "'{{' at character 3 (a template's escaped '{') reads as one"),
    ("operator typo", "id: p\non: agent.down\nwhen:\n  data.score: {gtee: 0.3}\n" + STEP,
     4, 16, "unknown-key", "did you mean 'gte'?"),
    ("operators mixed with other keys", "id: p\non: agent.down\nwhen:\n  data.score: {lt: 0.3, limit: 1}\n" + STEP,
     4, 25, "unknown-key", "to compare with a mapping write {eq: {...}}"),
    ("unknown event field", "id: p\non: agent.down\nwhen:\n  agnet: coder\n" + STEP,
     4, 3, "event-path", "unknown event field 'agnet' (did you mean 'agent'?)"),
    ("sub-field of a string field", "id: p\non: agent.down\nwhen:\n  agent.name: coder\n" + STEP,
     4, 3, "event-path", "event field 'agent' is a string"),
    ("unclosed template", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: shell\n"
     "    with: {argv: [kill, \"{data.pid\"]}\n", 6, 25, "template", "'{' at character 1 is not closed"),
    ("template path typo", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: shell\n"
     "    with: {argv: [kill, \"{dta.pid}\"]}\n", 6, 25, "event-path", "unknown event field 'dta' in 'dta.pid'"),
    ("step result of a step not needed",
     "id: p\non: agent.down\nsteps:\n  - id: find\n    action: shell\n    with: {argv: [pgrep, x]}\n"
     "  - id: kill\n    action: shell\n    with: {argv: [kill, \"{steps.find.stdout}\"]}\n",
     9, 25, "template-path", "step 'kill' does not need 'find'"),
    ("step result of an unknown step",
     "id: p\non: agent.down\nsteps:\n  - id: kill\n    action: shell\n"
     "    with: {argv: [kill, \"{steps.fnd.stdout}\"]}\n",
     6, 25, "template-path", "no step 'fnd' in this playbook"),
    ("step result field", "id: p\non: agent.down\nsteps:\n  - id: find\n    action: compact\n  - id: b\n"
     "    needs: [find]\n    action: shell\n    with: {argv: [echo, \"{steps.find.output}\"]}\n",
     9, 25, "template-path", "{steps.<id>.stdout} or {steps.<id>.exit_code}"),
    ("unknown needs", "id: p\non: agent.down\nsteps:\n  - id: a\n    needs: [restrat]\n    action: compact\n",
     5, 13, "needs-unknown", "unknown step 'restrat' in needs"),
    ("cyclic needs", "id: p\non: agent.down\nsteps:\n  - id: a\n    needs: [b]\n    action: compact\n"
     "  - id: b\n    needs: [a]\n    action: compact\n", 5, 5, "needs-cycle", "a → b → a"),
    ("step needs itself", "id: p\non: agent.down\nsteps:\n  - id: a\n    needs: [a]\n    action: compact\n",
     5, 13, "needs-cycle", "step 'a' needs itself"),
    ("duplicate step id",
     "id: p\non: agent.down\nsteps:\n  - id: a\n    action: compact\n  - id: a\n    action: compact\n",
     6, 9, "duplicate-step", "duplicate step id 'a' (first at "),
    ("priority out of range", "id: p\non: agent.down\npriority: P5\n" + STEP,
     3, 11, "schema", "'P5' is not a priority"),
    ("confidence above 1", "id: p\non: agent.down\nconfidence: 1.5\n" + STEP,
     3, 13, "schema", "1.5 is greater than the maximum of 1"),
    ("emit of an engine type",
     "id: p\non: agent.down\nsteps:\n  - id: a\n    action: emit\n    with: {type: score.degraded}\n",
     6, 18, "reserved-type", "control.* and notification.* are the engine's own"),
    ("steps missing", "id: p\non: agent.down\n", 1, 1, "required", "'steps' is a required property"),
    ("YAML syntax", "id: p\non: [agent.down\n" + STEP, 3, 6, "yaml", "expected ',' or ']'"),
    ("duplicate top-level key", "id: p\non: agent.down\nid: q\n" + STEP, 3, 1, "duplicate-key",
     "duplicate key 'id' (first defined at "),
    ("duplicate key in when", "id: p\non: agent.down\nwhen:\n  agent: coder\n  data.x: 1\n  agent: analyst\n" + STEP,
     6, 3, "duplicate-key", "duplicate key 'agent'"),
    ("duplicate key in a flow mapping", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: restart_agent\n"
     "    with: {agent: coder, agent: analyst}\n", 6, 26, "duplicate-key", "duplicate key 'agent'"),
    ("file mode unquoted", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: write_file\n"
     "    with: {path: /tmp/x, content: x, mode: 0644}\n", 6, 44, "schema", "an octal mode in quotes"),
    ("rollback with needs",
     "id: p\non: agent.down\n" + STEP + "rollback:\n  - action: compact\n    needs: [restart]\n",
     9, 5, "unknown-key", "unknown key 'needs'"),
    ("rollback using a step result", "id: p\non: agent.down\n" + STEP +
     "rollback:\n  - action: shell\n    with: {argv: [echo, \"{steps.restart.stdout}\"]}\n",
     9, 25, "template-path", "rollback, snapshot and when see the event alone"),
    ("unknown signal", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: signal\n"
     "    with: {agent: coder, signal: SIGTREM}\n", 6, 34, "schema", "'SIGTREM' is not a signal name (TERM, KILL"),
    ("wait_for without within", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: wait_for\n"
     "    with: {type: agent.heartbeat}\n", 6, 11, "required", "'within' is a required property"),
    ("upper-case playbook id", "id: Restart\non: agent.down\n" + STEP, 1, 5, "schema", "is not a playbook id"),
    ("second playbook of a list",
     f"- {GOOD.replace(chr(10), chr(10) + '  ').rstrip()}\n- id: second\n  on: agent.down\n"
     "  sustained: {count: 0, within: 1m}\n  steps: [{id: a, action: compact}]\n",
     9, 22, "schema", "0 is less than the minimum of 1"),
    ("http url scheme", "id: p\non: agent.down\nsteps:\n  - id: a\n    action: http\n    with: {url: \"ftp://x\"}\n",
     6, 17, "schema", "is not an http:// or https:// URL"),
    ("non-UTF-8 bytes", b"id: p\non: agent.down\ndescription: caf\xe9\n" + STEP.encode(), 3, 17, "encoding",
     "not valid UTF-8"),
    ("not a mapping", "just a sentence\n", 1, 1, "schema", "'just a sentence' is not a playbook (a mapping"),
    ("throttle key typo", "id: p\non: agent.down\nthrottle: {within: 1m, key: agnt}\n" + STEP,
     3, 29, "event-path", "unknown event field 'agnt' (did you mean 'agent'?)"),
    ("snapshot template typo", "id: p\non: agent.down\nsnapshot: [\"/etc/aios/{agnt}.yaml\"]\n" + STEP,
     3, 12, "event-path", "unknown event field 'agnt'"),
]


@pytest.mark.parametrize("case, text, line, col, code, words", BAD, ids=[case[0] for case in BAD])
def test_each_mistake_is_reported_at_its_place(tmp_path: Path, case, text, line, col, code, words):
    result = lint_text(tmp_path, text)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert len(errors) == 1, [str(d) for d in errors]
    assert (errors[0].loc.line, errors[0].loc.col, errors[0].code) == (line, col, code), str(errors[0])
    assert words in errors[0].message
    assert errors[0].loc.file == str(tmp_path / "p.yaml")
    assert result.playbooks == [] and result.files_ok == []


def test_at_least_twenty_distinct_mistakes_are_covered():
    assert len({case[0] for case in BAD}) >= 20 and len({case[4] for case in BAD}) >= 15


def test_a_good_playbook_is_loaded_with_its_defaults(tmp_path: Path):
    result = lint_text(tmp_path, GOOD)
    assert result.diagnostics == [] and result.errors == 0
    [playbook] = result.playbooks
    assert playbook.id == "good" and playbook.on == ("agent.down",)
    assert (playbook.confidence, playbook.exclusive, playbook.enabled, playbook.timeout_s) == (0.5, True, True, 30.0)
    assert playbook.steps[0].with_ == {"agent": "{agent}"}
    assert result.files_ok == [str(tmp_path / "p.yaml")]


def test_a_wait_longer_than_the_step_timeout_is_a_warning(tmp_path: Path):
    text = ("id: p\non: agent.down\nsteps:\n  - id: a\n    action: wait_for\n"
            "    with: {type: agent.heartbeat, within: 1m}\n")
    result = lint_text(tmp_path, text)
    assert where(result, "warning") == [(6, 43, "timeout")] and result.errors == 0
    assert "times out after 30s" in result.diagnostics[0].message and len(result.playbooks) == 1


def test_a_playbook_that_emits_its_own_trigger_is_a_loop_warning(tmp_path: Path):
    text = "id: p\non: [ops.note, agent.down]\nsteps:\n  - id: a\n    action: emit\n    with: {type: ops.note}\n"
    result = lint_text(tmp_path, text)
    assert where(result, "warning") == [(6, 18, "loop")]
    assert "triggers this playbook again" in result.diagnostics[0].message


def test_templates_in_when_are_compared_as_written_warning(tmp_path: Path):
    result = lint_text(tmp_path, "id: p\non: agent.down\nwhen:\n  data.owner: \"{agent}\"\n" + STEP)
    assert where(result, "warning") == [(4, 15, "template")]


def test_escaped_braces_and_steps_needed_indirectly_are_fine(tmp_path: Path):
    text = ("id: p\non: agent.down\nsteps:\n  - id: find\n    action: shell\n    with: {argv: [pgrep, x]}\n"
            "  - id: mid\n    needs: [find]\n    action: compact\n"
            "  - id: use\n    needs: [mid]\n    action: shell\n"
            "    with: {argv: [awk, \"{{print $1}}\", \"{steps.find.stdout}\", \"{data.top.0.pid}\"]}\n"
            "  - id: wait\n    needs: [use]\n    action: wait_for\n"
            "    with: {type: agent.heartbeat, where: {data.n: {matches: \"^a{2}\\\\{x\\\\}$\"}}, within: 5s}\n")
    assert lint_text(tmp_path, text).diagnostics == []


def test_an_empty_file_is_a_warning_not_an_error(tmp_path: Path):
    result = lint_text(tmp_path, "# nothing yet\n")
    assert where(result, "warning") == [(1, 1, "empty-file")] and result.files_ok == [str(tmp_path / "p.yaml")]


def test_shadowed_playbook_is_a_warning_naming_the_winner(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("id: strong\non: agent.down\nconfidence: 0.9\nwhen: {agent: coder}\n" + STEP)
    (tmp_path / "b.yaml").write_text("id: weak\non: agent.down\nconfidence: 0.4\nwhen: {agent: coder}\n" + STEP)
    (tmp_path / "c.yaml").write_text("id: catch-all\non: agent.error\nconfidence: 0.8\n" + STEP)
    (tmp_path / "d.yaml").write_text("id: narrow\non: agent.error\nconfidence: 0.3\nwhen: {agent: coder}\n" + STEP)
    (tmp_path / "e.yaml").write_text("id: throttled\non: agent.error\nconfidence: 0.9\n"
                                     "throttle: {within: 1m}\n" + STEP)
    result = lint_paths([tmp_path])
    warnings = [d for d in result.diagnostics if d.code == "shadowed"]
    assert [(Path(d.loc.file).name, d.loc.line) for d in warnings] == [("b.yaml", 1), ("d.yaml", 1)]
    assert f"'strong' ({tmp_path / 'a.yaml'}:1:1)" in warnings[0].message
    assert "'catch-all'" in warnings[1].message
    assert result.errors == 0 and len(result.playbooks) == 5


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("# the same id again\n" + GOOD)
    result = lint_paths([tmp_path])
    [error] = result.diagnostics
    assert str(error) == (f"{tmp_path / 'b.yaml'}:2:5: error: duplicate playbook id 'good' "
                          f"(first defined at {tmp_path / 'a.yaml'}:1:5)")
    assert result.files_ok == [str(tmp_path / "a.yaml")]
    assert [p.file for p in result.playbooks] == [str(tmp_path / "a.yaml")]


def test_duplicate_ids_inside_one_list_file(tmp_path: Path):
    item = "- id: same\n  on: agent.down\n  steps: [{id: a, action: compact}]\n"
    result = lint_text(tmp_path, item + item)
    assert where(result) == [(4, 7, "duplicate-id")]


def test_a_directory_mixing_good_and_bad_files(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "sub" / "also_good.yml").write_text(GOOD.replace("id: good", "id: also-good"))
    (tmp_path / "bad.yaml").write_text(GOOD.replace("id: good", "id: bad").replace("agent.down", "agent down"))
    (tmp_path / "broken.yaml").write_text("id: [\n")
    (tmp_path / ".hidden" / "skipped.yaml").write_text("not: [valid\n")
    (tmp_path / "notes.txt").write_text("not a playbook")
    result = lint_paths([tmp_path])
    names = [str(tmp_path / n) for n in ("bad.yaml", "broken.yaml", "good.yaml", "sub/also_good.yml")]
    assert result.files == names
    assert sorted(result.by_file) == names and result.by_file[names[2]] == []
    assert [(Path(d.loc.file).name, d.loc.line, d.loc.col) for d in result.diagnostics] == [
        ("bad.yaml", 2, 5), ("broken.yaml", 2, 1)]
    assert result.files_ok == names[2:]
    assert sorted(p.id for p in result.playbooks) == ["also-good", "good"]
    assert result.errors == 2


def test_missing_paths_are_errors_and_empty_directories_warnings(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = lint_paths([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert [(d.severity, d.code) for d in result.diagnostics] == [("warning", "no-files"), ("error", "file")]


def test_agents_are_checked_against_the_config(tmp_path: Path):
    config_path = tmp_path / "aios.yaml"
    config_path.write_text("agents:\n  coder: {command: [x]}\n  analyst: {command: [x]}\n")
    config = load_config(config_path)
    text = ("id: p\non: agent.down\nsteps:\n  - id: a\n    action: restart_agent\n    with: {agent: codr}\n"
            "  - id: b\n    action: signal\n    with: {agent: analyst}\n"
            "  - id: c\n    action: restart_agent\n    with: {agent: \"{agent}\"}\n")
    result = lint_text(tmp_path, text, config=config)
    assert where(result) == [(6, 19, "unknown-agent")]
    assert "unknown agent 'codr' (did you mean 'coder'?)" in result.diagnostics[0].message
    assert lint_text(tmp_path, text).errors == 0  # without a config there is nothing to check against


def test_shipped_rules_are_lint_clean_with_the_demo_agents(tmp_path: Path):
    config_path = tmp_path / "aios.yaml"
    config_path.write_text("agents:\n" + "".join(f"  {name}: {{command: [x]}}\n"
                                                 for name in ("coder", "analyst", "monitor", "researcher")))
    result = lint_paths([ROOT / "rules"], load_config(config_path))
    assert result.diagnostics == []
    by_type: dict[str, set[str]] = {}
    for playbook in result.playbooks:
        for type_ in playbook.on:
            by_type.setdefault(type_, set()).add(playbook.id)
    situations = ("resource.cpu_spike", "resource.memory_high", "resource.disk_full", "agent.down", "score.degraded")
    assert all(by_type.get(t) for t in situations)
    assert any(not p.exclusive and any(s.action == "emit" for s in p.steps) for p in result.playbooks)
    assert any(s.action == "compact" for p in result.playbooks if "resource.disk_full" in p.on for s in p.steps)


def test_cli_text_format_and_exit_codes(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(GOOD)
    clean = run_cli("lint", str(tmp_path), cwd=tmp_path)
    assert clean.returncode == 0 and clean.stdout == ""
    assert clean.stderr.strip() == "0 errors, 0 warnings in 1 file"
    (tmp_path / "bad.yaml").write_text("id: bad\non: agent.down\nsteps: []\n")
    dirty = run_cli("lint", str(tmp_path), cwd=tmp_path)
    assert dirty.returncode == 1
    assert dirty.stdout.splitlines() == [f"{tmp_path / 'bad.yaml'}:3:8: error: [] should be non-empty"]
    assert dirty.stderr.strip() == "1 error, 0 warnings in 2 files"


def test_cli_defaults_to_rules_and_reads_aios_yaml(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(GOOD.replace('"{agent}"', "ghost"))
    (tmp_path / "aios.yaml").write_text("agents:\n  coder: {command: [x]}\n")
    result = run_cli("lint", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("rules/r.yaml:6:19: error: unknown agent 'ghost'")


def test_cli_json_format_one_object_per_line(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("id: a\non: agent.down\nwhen: {agent: coder, agent: x}\n" + STEP)
    (tmp_path / "b.yaml").write_text("id: b\non: [ops.x]\nsteps:\n  - id: e\n    action: emit\n"
                                     "    with: {type: ops.x}\n")
    result = run_cli("lint", str(tmp_path), "--format", "json")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"file": str(tmp_path / "a.yaml"), "line": 3, "col": 22, "severity": "error",
         "message": f"duplicate key 'agent' (first defined at {tmp_path / 'a.yaml'}:3:8)", "code": "duplicate-key"},
        {"file": str(tmp_path / "b.yaml"), "line": 6, "col": 18, "severity": "warning",
         "message": "emits 'ops.x', which triggers this playbook again (a loop)", "code": "loop"},
    ]


def test_cli_prints_odd_characters_escaped_on_one_line(tmp_path: Path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / os.fsdecode(b"odd\xff.yaml")).write_text('id: a\non: agent.down\n"we\\nird\\x01\\u2028": 1\n' + STEP)
    result = run_cli("lint", str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{folder}/odd\\udcff.yaml:3:1: error: unknown key 'we\\nird\\x01\\u2028'")
    as_json = json.loads(run_cli("lint", str(folder), "--format", "json").stdout)
    assert as_json["file"] == f"{folder}/odd\udcff.yaml" and as_json["message"].startswith("unknown key 'we\nird\x01")


def test_cli_refuses_a_broken_config_in_one_line(tmp_path: Path):
    (tmp_path / "aios.yaml").write_text("agents: [\n")
    result = run_cli("lint", str(tmp_path), "--config", str(tmp_path / "aios.yaml"))
    assert result.returncode == 1 and "invalid configuration" in result.stderr and "Traceback" not in result.stderr


def test_parallel_and_serial_lint_agree(tmp_path: Path):
    for i in range(300):
        text = GOOD.replace("id: good", f"id: p{i}") if i % 7 else "id: [\n"
        (tmp_path / f"p{i:03d}.yaml").write_text(text)
    (tmp_path / "p999.yaml").write_text(GOOD.replace("id: good", "id: p1"))
    serial, parallel = lint_paths([tmp_path]), lint_paths([tmp_path], jobs=2)
    assert [str(d) for d in serial.diagnostics] == [str(d) for d in parallel.diagnostics]
    assert serial.playbooks == parallel.playbooks and serial.files_ok == parallel.files_ok
    assert serial.errors == 44
