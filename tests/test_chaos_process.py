"""`aios-engine chaos` against a real engine with a demo agent: each scenario injects its fault for real,
follows the problem, and exits 0 only once the engine healed it by a playbook run, with no acknowledged
event lost (docs/chaos.md). Short deadlines; the reports go to test-artifacts/chaos-*.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from process_harness import ROOT, EngineProcess, demo_workers
from test_service_api import small_filesystem

ARTIFACTS = ROOT / "test-artifacts"
sys.path.append(str(ROOT / "bench"))
from chaos import scaled  # noqa: E402  the bench's config and scaled-down rules: one source for both


def start(tmp_path: Path, data: Path) -> EngineProcess:
    engine = EngineProcess("--config", str(scaled(tmp_path)), "--data", str(data), cwd=tmp_path)
    engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder running")
    engine.wait_for(lambda: any(a["name"] == "coder" and a.get("last_heartbeat") for a in engine.get("/api/agents")
                                ["agents"]), 30, "coder's first heartbeat")
    return engine


def stop(engine: EngineProcess) -> None:
    engine.proc.kill()
    engine.proc.wait()
    for worker in demo_workers(engine.url):
        worker.kill()


def chaos(engine: EngineProcess, scenario: str, *extra: str) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bin" / "aios-engine"), "chaos", scenario, "--url", engine.url,
               "--seed", "7", *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in done.stderr and done.stdout, done.stderr
    report = json.loads(done.stdout)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"chaos-{scenario}.json").write_text(done.stdout)
    assert done.returncode == 0 and report["ok"], (done.stderr, report)
    assert done.stderr.strip().splitlines()[-1].startswith(f"chaos {scenario}")
    assert report["events"]["lost"] == 0 and report["events"]["acked"] > 0
    assert report["problem"]["status"] == "resolved" and report["problem"]["run_id"]
    assert 0 <= report["time_to_detect_s"] <= report["time_to_heal_s"]
    return report


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> EngineProcess:
    tmp = tmp_path_factory.mktemp("chaos")
    engine = start(tmp, tmp / "data")
    yield engine
    stop(engine)


def test_kill_heals_by_a_restart_and_a_new_heartbeat(engine: EngineProcess):
    before = engine.agent_pids()["coder"]
    report = chaos(engine, "kill", "--target", "coder", "--deadline", "60s")
    assert report["fault"] == {"signal": "SIGKILL", "pid": before}
    assert report["problem"]["kind"] == "agent-down"
    assert engine.agent_pids()["coder"] != before


def test_latency_slows_the_agent_until_the_engine_restarts_it(engine: EngineProcess):
    before = engine.agent_pids()["coder"]
    report = chaos(engine, "latency", "--target", "coder", "--deadline", "120s", "--duration", "120s")
    assert report["fault"]["stopped_share"] == 0.95 and report["fault"]["network_delay_ms"] == 200
    assert report["problem"]["kind"] in ("score-degraded", "agent-down")
    coder = psutil.Process(engine.agent_pids()["coder"])
    assert coder.pid != before and coder.status() != psutil.STATUS_STOPPED
    route = Path(coder.environ()["AIOS_URL_FILE"]).read_text().strip()
    assert route == engine.url  # routed back to the engine, not left on the proxy


def test_cpu_spike_burners_under_the_agent_are_stopped_by_its_restart(engine: EngineProcess):
    report = chaos(engine, "cpu-spike", "--target", "coder", "--deadline", "120s")
    burners = report["fault"]["burners"]
    assert len(burners) == os.cpu_count() and not any(psutil.pid_exists(pid) and
                                                       psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                                                       for pid in burners)
    assert report["problem"]["kind"] == "cpu-spike"


def test_a_bad_target_is_refused_before_anything_is_done(engine: EngineProcess):
    before = engine.agent_pids()["coder"]
    for args, says in ((["kill", "--target", "ghost"], "no agent 'ghost'"),
                       (["disk-full"], "disk-full needs --data DIR")):
        done = subprocess.run([sys.executable, str(ROOT / "bin" / "aios-engine"), "chaos", *args, "--url", engine.url],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        report = json.loads(done.stdout)
        assert done.returncode == 1 and not report["ok"] and says in report["reason"] and report["fault"] == {}
        assert "Traceback" not in done.stderr and done.stderr.strip().endswith(report["reason"])
    assert engine.agent_pids()["coder"] == before  # nothing was killed


def test_random_runs_a_seeded_mix_and_ends_with_a_table(engine: EngineProcess):
    command = [sys.executable, str(ROOT / "bin" / "aios-engine"), "chaos", "random", "--url", engine.url,
               "--seed", "11", "--duration", "1s", "--scenarios", "kill", "--deadline", "60s"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"] and report["seed"] == 11
    runs = len(report["runs"])  # at least one, however short the duration
    assert runs >= 1 and all(run["scenario"] == "kill" and run["ok"] for run in report["runs"])
    assert f"| kill | {runs} | {runs} |" in done.stderr


def test_disk_full_refuses_intake_then_frees_space_and_loses_nothing(tmp_path: Path):
    data = tmp_path / "data"
    with small_filesystem(data, "48m") as mounted:
        if not mounted:
            if os.environ.get("CI"):
                pytest.fail("CI runs as root and must be able to mount a tmpfs")
            pytest.skip("needs root to mount a tmpfs")
        engine = start(tmp_path, data)
        try:
            report = chaos(engine, "disk-full", "--data", str(data), "--deadline", "120s")
        finally:
            stop(engine)
    assert report["problem"]["kind"] == "disk-full"
    assert report["fault"]["refused_with"] == 503, report["fault"]  # intake answered 503 while the disk was full
    assert report["events"]["damaged_lines"] == 0 and report["events"]["stored_twice"] == 0
