"""`aios-engine runs` and `aios-engine rollback` on real files, through the real CLI."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import run_cli

from engine.reactor.records import Attempt, RunRecord, RunStore, StepRecord
from engine.reactor.snapshot import Snapshot
from engine.store.lock import DataLock

FIRST, SECOND, RUNNING = "01KAAAAAAAAAAAAAAAAAAAAAAA", "01KBBBBBBBBBBBBBBBBBBBBBBB", "01KCCCCCCCCCCCCCCCCCCCCCCC"


def fake_run(data_dir: Path, run_id: str, site: Path, status: str = "succeeded") -> None:
    """What the runner does: snapshot, change the files (a write_file step), seal, save the record."""
    snap = Snapshot.create(data_dir, run_id)
    snap.capture([site / "agent.yaml", site / "conf.d"])
    snap.capture([site / "new.yaml"])  # a write_file target, captured just before it is written
    (site / "agent.yaml").write_text("threads: 8\n")
    os.chmod(site / "agent.yaml", 0o644)
    (site / "new.yaml").write_text("created\n")
    (site / "conf.d" / "extra.conf").write_text("created\n")
    record = RunRecord(run_id, "tune-agent", "01CAUSE", "resource.cpu_spike", "2026-03-10T08:00:00.000000Z",
                       agent="coder", priority="P1", status=status)
    record.steps.append(StepRecord("write", "write_file", "ok", [
        Attempt("2026-03-10T08:00:00.100000Z", "2026-03-10T08:00:00.150000Z", 50, True,
                detail={"path": str(site / "agent.yaml")})]))
    record.steps.append(StepRecord("reload", "shell", "ok", [
        Attempt("2026-03-10T08:00:00.200000Z", "2026-03-10T08:00:01.200000Z", 1000, False, 3,
                {"argv": ["aios-agentctl", "reload", "coder"]}, stderr="busy, try again\n", error="exit 3"),
        Attempt("2026-03-10T08:00:03.200000Z", "2026-03-10T08:00:03.300000Z", 100, True, 0,
                {"argv": ["aios-agentctl", "reload", "coder"]}, stdout="reloaded coder\n")]))
    if status != "running":
        snap.seal()
        record.finished = "2026-03-10T08:00:04.000000Z"
    record.snapshot = snap.info()
    RunStore(data_dir).save(record)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "etc"
    (root / "conf.d").mkdir(parents=True)
    (root / "agent.yaml").write_text("threads: 2\n")
    os.chmod(root / "agent.yaml", 0o600)
    (root / "conf.d" / "base.conf").write_text("base\n")
    return root


def test_runs_lists_newest_first_and_shows_one_run(data_dir: Path, site: Path) -> None:
    fake_run(data_dir, FIRST, site)
    fake_run(data_dir, SECOND, site, status="failed")
    listing = run_cli("runs", "--data", str(data_dir))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("RUN") and [line.split()[0] for line in lines[1:]] == [SECOND, FIRST]
    assert "tune-agent" in lines[1] and "failed" in lines[1] and "4.0s" in lines[1]

    shown = run_cli("runs", FIRST, "--data", str(data_dir))
    assert shown.returncode == 0, shown.stderr
    assert 'argv: ["aios-agentctl","reload","coder"]' in shown.stdout
    assert "exit 3" in shown.stdout and "| busy, try again" in shown.stdout and "| reloaded coder" in shown.stdout
    assert f"path: {site / 'agent.yaml'}" in shown.stdout

    as_json = run_cli("runs", "--data", str(data_dir), "--format", "json", "--status", "failed")
    assert [json.loads(line)["run_id"] for line in as_json.stdout.splitlines()] == [SECOND]

    missing = run_cli("runs", "NOPE", "--data", str(data_dir))
    assert missing.returncode == 1 and missing.stderr.strip() == f"aios-engine runs: no run NOPE in {data_dir / 'runs'}"


def test_rollback_refused_when_files_changed_since_accepted_with_force(data_dir: Path, site: Path) -> None:
    fake_run(data_dir, FIRST, site)
    (site / "conf.d" / "by-hand.conf").write_text("an operator fixed it by hand\n")

    refused = run_cli("rollback", FIRST, "--data", str(data_dir))
    assert refused.returncode == 1 and refused.stdout == ""
    assert str(site / "conf.d" / "by-hand.conf") in refused.stderr and "--force" in refused.stderr
    assert (site / "agent.yaml").read_text() == "threads: 8\n"

    forced = run_cli("rollback", FIRST, "--force", "--data", str(data_dir))
    assert forced.returncode == 0, forced.stderr
    assert (site / "agent.yaml").read_text() == "threads: 2\n"
    assert stat.S_IMODE(os.stat(site / "agent.yaml").st_mode) == 0o600
    assert not (site / "new.yaml").exists() and not (site / "conf.d" / "extra.conf").exists()
    assert not (site / "conf.d" / "by-hand.conf").exists()
    assert forced.stdout.splitlines()[0] == f"run {FIRST} rolled back (forced): 4 path(s) restored"
    assert f"  {site / 'new.yaml'}" in forced.stdout.splitlines()
    history = RunStore(data_dir).get(FIRST).rollbacks
    assert len(history) == 1 and history[0].forced and str(site / "agent.yaml") in history[0].paths


def test_rollback_of_an_unchanged_run_then_again(data_dir: Path, site: Path) -> None:
    fake_run(data_dir, FIRST, site)
    done = run_cli("rollback", FIRST, "--data", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert f"run {FIRST} rolled back: 3 path(s) restored" in done.stdout
    again = run_cli("rollback", FIRST, "--data", str(data_dir))
    assert again.returncode == 1 and "already rolled back" in again.stderr


def test_rollback_refusals_are_one_clear_line(data_dir: Path, site: Path) -> None:
    fake_run(data_dir, RUNNING, site, status="running")
    running = run_cli("rollback", RUNNING, "--data", str(data_dir))
    assert running.returncode == 1 and "still running" in running.stderr
    unknown = run_cli("rollback", "NOPE", "--data", str(data_dir))
    assert unknown.returncode == 1 and unknown.stderr == f"aios-engine rollback: no run NOPE in {data_dir / 'runs'}\n"
    with DataLock(data_dir):
        locked = run_cli("rollback", RUNNING, "--data", str(data_dir))
    assert locked.returncode == 1 and "is in use by pid" in locked.stderr and len(locked.stderr.splitlines()) == 1
