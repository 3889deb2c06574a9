"""Hot reload of rules/, file by file: broken files are rejected and their last good version keeps running."""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import psutil

from engine.playbooks.matcher import Matcher
from engine.playbooks.registry import Registry


def playbook_yaml(id_: str, type_: str = "agent.down", confidence: float = 0.5, agent: str = "coder") -> str:
    return f"""- id: {id_}
  on: {type_}
  when: {{agent: {agent}}}
  confidence: {confidence}
  steps:
    - id: free
      action: compact
"""


BROKEN = "- id: Not_Valid\n  on: agent.down\n  steps: []\n"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[str, str]]:
        out = [(e["type"], Path(e["data"]["file"]).name) for e in self.events]
        self.events.clear()
        return out


def setup(tmp_path: Path, **files: str) -> tuple[Registry, Recorder]:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in files.items():
        (rules / f"{name}.yaml").write_text(text)
    recorder = Recorder()
    registry = Registry(rules, emit=recorder)
    registry.reload()
    return registry, recorder


def test_start_up_loads_good_files_and_health_names_bad_ones(tmp_path: Path) -> None:
    registry, recorder = setup(tmp_path, good=playbook_yaml("restart"), bad=BROKEN)
    assert sorted(registry.playbooks) == ["restart"]
    assert recorder.take() == [("playbook.rejected", "bad.yaml"), ("playbook.loaded", "good.yaml")]
    health = registry.health()
    assert health["state"] == "degraded" and health["playbooks"] == 1
    [(name, lines)] = health["rejected"].items()
    assert name.endswith("bad.yaml") and all(": error: " in line and "bad.yaml:" in line for line in lines)


def test_broken_reload_keeps_the_last_good_version(tmp_path: Path) -> None:
    registry, recorder = setup(tmp_path, main=playbook_yaml("restart", agent="coder"))
    recorder.take()
    matcher = Matcher(registry.index, clock=lambda: 0.0)
    event = {"id": "e", "type": "agent.down", "agent": "coder"}
    assert [d.playbook_id for d in matcher.match(event).decisions] == ["restart"]

    path = registry.rules_dir / "main.yaml"
    path.write_text(playbook_yaml("restart", agent="coder") + "  bogus_key: 1\n")
    outcome = registry.reload()
    assert outcome.rejected and not outcome.loaded
    [rejected] = recorder.events
    assert rejected["type"] == "playbook.rejected" and rejected["data"]["kept"] == ["restart"]
    assert any("bogus_key" in line for line in rejected["data"]["errors"])
    recorder.take()
    matcher.index = registry.index
    assert [d.playbook_id for d in matcher.match(event).decisions] == ["restart"]  # still running
    assert registry.health()["state"] == "degraded"

    path.write_text(playbook_yaml("restart", agent="analyst"))
    assert registry.reload().loaded
    assert recorder.take() == [("playbook.loaded", "main.yaml")]
    matcher.index = registry.index
    assert matcher.match(event).decisions == ()
    assert registry.health() == {"state": "ok", "playbooks": 1, "files": 1, "rejected": {}}


def test_unchanged_files_are_not_reloaded(tmp_path: Path) -> None:
    registry, recorder = setup(tmp_path, a=playbook_yaml("one"), b=BROKEN)
    recorder.take()
    index = registry.index
    assert not registry.reload().changed
    assert recorder.take() == [] and registry.index is index


def test_only_changed_types_are_recompiled(tmp_path: Path) -> None:
    registry, _ = setup(tmp_path, a=playbook_yaml("one", "agent.down"), b=playbook_yaml("two", "agent.error"))
    before = registry.index.types
    (registry.rules_dir / "b.yaml").write_text(playbook_yaml("two", "agent.error", confidence=0.7))
    registry.reload()
    assert registry.index.types["agent.down"] is before["agent.down"]
    assert registry.index.types["agent.error"] is not before["agent.error"]


def test_removed_file_unloads_its_playbooks(tmp_path: Path) -> None:
    registry, recorder = setup(tmp_path, a=playbook_yaml("one"), b=playbook_yaml("two"))
    recorder.take()
    (registry.rules_dir / "b.yaml").unlink()
    assert registry.reload().removed
    assert sorted(registry.playbooks) == ["one"]
    [event] = recorder.events
    assert event["data"]["removed"] == ["two"] and event["data"]["playbooks"] == []


def test_an_id_defined_in_two_files_stays_with_the_first(tmp_path: Path) -> None:
    registry, recorder = setup(tmp_path, a=playbook_yaml("same"), b=playbook_yaml("same", "agent.error"))
    assert registry.playbooks["same"].on == ("agent.down",)
    assert "duplicate playbook id 'same'" in registry.health()["rejected"][str(registry.rules_dir / "b.yaml")][0]
    recorder.take()
    (registry.rules_dir / "a.yaml").write_text(playbook_yaml("other"))
    registry.reload()  # b.yaml, unchanged, is retried once the id is free
    assert sorted(registry.playbooks) == ["other", "same"] and registry.playbooks["same"].on == ("agent.error",)
    assert registry.health()["state"] == "ok"


def test_memory_stays_flat_across_1000_reloads(tmp_path: Path) -> None:
    variants = [playbook_yaml(f"pb-{i}", f"load.type_{i % 3}", agent=f"a{i}") for i in range(4)]
    registry, _ = setup(tmp_path, main="".join(variants))
    path = registry.rules_dir / "main.yaml"

    def churn(rounds: int) -> None:
        for i in range(rounds):
            path.write_text("".join(variants[:1 + i % 4]))  # every reload changes the file
            assert registry.reload().loaded
            for n in range(3):  # rulesets that have seen facts hold state: it must be freed too
                registry.index.candidates({"type": f"load.type_{n}", "agent": f"a{n}"})

    churn(200)  # warm-up: allocator pools, caches
    gc.collect()
    before = psutil.Process().memory_info().rss
    churn(1000)
    gc.collect()
    grown = psutil.Process().memory_info().rss - before
    print(f"RSS grew {grown / 2**20:.2f} MB over 1,000 reloads")
    assert grown < 4 * 2**20, f"RSS grew {grown / 2**20:.1f} MB over 1,000 reloads"


def test_an_id_moved_to_a_file_that_sorts_earlier_loads_in_one_reload(tmp_path):
    from engine.playbooks.registry import Registry

    rules = tmp_path / "rules"
    rules.mkdir()
    body = "  steps:\n    - {id: s, action: emit, with: {type: ops.x}}\n"
    (rules / "b.yaml").write_text(f"- id: x\n  on: agent.down\n{body}")
    registry = Registry(rules)
    registry.reload()
    (rules / "a.yaml").write_text(f"- id: x\n  on: agent.down\n{body}")  # copied first, a duplicate for now
    registry.reload()
    assert "x" in registry.playbooks and registry.health()["rejected"]
    (rules / "b.yaml").write_text(f"- id: y\n  on: agent.down\n{body}")  # then removed from b
    outcome = registry.reload()
    assert set(registry.playbooks) == {"x", "y"} and not registry.health()["rejected"]
    assert str(rules / "a.yaml") in outcome.loaded
