"""Hot reload of rules/, file by file: broken files are rejected and their last good version keeps running."""
from __future__ import annotations

import errno
import gc
import os
import resource
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

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
    assert registry.health() == {"state": "ok", "playbooks": 1, "files": 1, "rejected": {}, "unreadable": {}}


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


def decided(registry: Registry, agent: str = "coder") -> list[str]:
    event = {"id": "e", "type": "agent.down", "agent": agent}
    return [d.playbook_id for d in Matcher(registry.index, clock=lambda: 0.0).match(event).decisions]


def test_a_failed_listing_keeps_every_playbook_and_health_names_the_error(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of descriptors, the poll once saw an empty rules/ and unloaded everything: now nothing changes
    until a listing succeeds, and only then is a file deleted meanwhile unloaded."""
    registry, recorder = setup(tmp_path, a=playbook_yaml("one"), b=playbook_yaml("two", confidence=0.9))
    recorder.take()
    rules = registry.rules_dir

    def out_of_descriptors(path: Any = ".") -> Any:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(path))

    (rules / "b.yaml").unlink()
    with monkeypatch.context() as patched:
        patched.setattr(os, "scandir", out_of_descriptors)
        for _ in range(3):
            assert not registry.reload().changed
    assert sorted(registry.playbooks) == ["one", "two"] and decided(registry) == ["two"] and recorder.take() == []
    health = registry.health()
    assert health["state"] == "degraded" and health["playbooks"] == 2
    assert health["unreadable"] == {str(rules): "cannot list the directory: Too many open files (EMFILE)"}

    outcome = registry.reload()  # descriptors again: the deletion is real, and health recovers by itself
    assert outcome.removed == (str(rules / "b.yaml"),) and sorted(registry.playbooks) == ["one"]
    assert registry.health()["state"] == "ok" and registry.health()["unreadable"] == {}


def test_really_out_of_file_descriptors(tmp_path: Path) -> None:
    """The same with a real EMFILE: the process may open no descriptor at all during the poll."""
    registry, recorder = setup(tmp_path, a=playbook_yaml("one"))
    recorder.take()
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        outcome = registry.reload()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not outcome.changed and list(registry.playbooks) == ["one"] and recorder.take() == []
    [reason] = registry.health()["unreadable"].values()
    assert "(EMFILE)" in reason
    assert not registry.reload().changed and registry.health()["state"] == "ok"


def test_a_file_that_cannot_be_read_keeps_its_last_good_version(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """We run as root, whom permissions never stop: the refusal is injected where the file is opened."""
    registry, recorder = setup(tmp_path, main=playbook_yaml("restart", agent="coder"))
    recorder.take()
    path = registry.rules_dir / "main.yaml"
    path.write_text(playbook_yaml("restart", agent="analyst"))
    real_open = os.open

    def refuse(name: Any, flags: int, *args: Any) -> int:
        if os.fspath(name) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real_open(name, flags, *args)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", refuse)
        assert not registry.reload().changed
    assert decided(registry, "coder") == ["restart"] and recorder.take() == []
    assert registry.health()["unreadable"] == {str(path): "cannot read: Permission denied (EACCES)"}
    assert registry.health()["state"] == "degraded"

    assert registry.reload().loaded == (str(path),)  # readable again: the new version loads
    assert decided(registry, "analyst") == ["restart"] and registry.health()["state"] == "ok"


def test_a_missing_rules_dir_is_a_health_reason_not_silence(tmp_path: Path) -> None:
    """At start the engine runs with no playbook and says why; the directory is picked up once it appears."""
    rules = tmp_path / "rules"
    registry = Registry(rules)
    assert not registry.reload().changed
    health = registry.health()
    assert health["state"] == "degraded" and health["playbooks"] == 0
    assert health["unreadable"] == {str(rules): "cannot list the directory: No such file or directory (ENOENT)"}
    rules.mkdir()
    (rules / "a.yaml").write_text(playbook_yaml("one"))
    assert registry.reload().loaded and registry.health()["state"] == "ok"


def test_a_fifo_among_the_rules_does_not_stall_the_reload(tmp_path: Path) -> None:
    registry, _ = setup(tmp_path, a=playbook_yaml("one"))
    os.mkfifo(registry.rules_dir / "pipe.yaml")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading a FIFO blocked the reload"))
    signal.alarm(20)
    try:
        registry.reload()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert list(registry.playbooks) == ["one"] and registry.health()["state"] == "ok"
