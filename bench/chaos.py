"""Time to heal, per chaos scenario, over repeated runs.

`python bench/chaos.py [--minutes 4] [--seed 5] [--disk-runs 3]`.

A real engine with the demo agent coder (heartbeat 1 s) and the shipped rules, with the minute-long windows
scaled down as in tests/test_chaos_process.py (score half-life 20 s, degraded below 0.45, restart throttle
5 s, sensors every second, a restart budget of 100 an hour instead of 5). `aios-engine chaos random` runs
kill, latency and cpu-spike for `--minutes`;
then, where a tmpfs can be mounted (root), disk-full three times on an engine whose data directory is a
48 MiB tmpfs. Prints the per-scenario table (runs, healed, time to detect and to heal p50/p95, events lost).

Baseline in the same run: time to detect. Healing cannot be faster than noticing; the ratio heal / detect is
what the remediation itself costs (a restart and its verification, a compaction).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.chaos.runner import Report, table  # noqa: E402

CONFIG = """data_dir: data
rules_dir: rules
sensors:
  interval: 1s
  cpu: {high: 80, clear: 60, for_scans: 2, repeat: 2s}
  memory: {enabled: false}
  disk: {high: 90, clear: 85, for_scans: 1, repeat: 5s}
score: {half_life: 20s, update_every: 1s, degraded_below: 0.45, recovered_above: 0.55,
        agents: {coder: {latency_target_ms: 4000}}}
store: {reserve_mb: 1}
reactor: {budget: {max_runs: 100, window: 1h}}  # every run restarts coder: the default 5 an hour would be spent
agents:
  coder:
    command: [python, -m, engine.demo.worker, --role, coder, --heartbeat, 1s, --pace, "0.02", --seed, "3"]
    heartbeat: {interval: 1s, misses: 3}
"""
SCALED = {"agent_down.yaml": ("throttle: {within: 2m", "throttle: {within: 5s"),
          "score_degraded.yaml": ("throttle: {within: 15m", "throttle: {within: 20s"),
          "cpu_spike.yaml": ("throttle: {within: 10m", "throttle: {within: 20s"),
          "disk_full.yaml": ("throttle: {within: 30m", "throttle: {within: 20s")}


def scaled(tmp: Path) -> Path:
    """The shipped rules with their throttles scaled down, and the config above, in `tmp`; the config's path.
    tests/test_chaos_process.py runs its engine from the same."""
    shutil.copytree(ROOT / "rules", tmp / "rules", dirs_exist_ok=True)
    for name, (old, new) in SCALED.items():
        path = tmp / "rules" / name
        path.write_text(path.read_text().replace(old, new))
    (tmp / "aios.yaml").write_text(CONFIG)
    return tmp / "aios.yaml"


def engine(tmp: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    scaled(tmp)
    proc = subprocess.Popen([sys.executable, str(ROOT / "bin" / "aios-engine"), "run", "--port", str(port),
                             "--config", str(tmp / "aios.yaml"), "--data", str(data)], cwd=tmp,
                            stderr=subprocess.DEVNULL, env={**os.environ, "AIOS_LOG_LEVEL": "WARNING"})
    time.sleep(6)  # started, coder running and heard from
    return proc


def chaos(url: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "bin" / "aios-engine"), "chaos", *args, "--url", url],
                          capture_output=True, text=True)
    print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "(no output)", file=sys.stderr)
    return json.loads(done.stdout)


def as_report(run: dict[str, Any]) -> Report:
    from engine.events import parse_ts
    at = {k: parse_ts(run[k]).timestamp() if run[k] else None for k in ("injected_at", "detected_at", "healed_at")}
    return Report(scenario=run["scenario"], seed=run["seed"], target=run["target"], events=run["events"],
                  ok=run["ok"], reason=run["reason"], **at)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    subprocess.run(["pkill", "-f", "engine.demo.worker --role coder --heartbeat 1s --pace 0.02"], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--disk-runs", type=int, default=3, help="disk-full repetitions, each on a fresh tmpfs")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aios-chaos-") as tmp:
        proc = engine(Path(tmp), Path(tmp) / "data", 18931)
        try:
            out = chaos("http://127.0.0.1:18931", "random", "--seed", str(args.seed), "--duration",
                        f"{int(args.minutes * 60)}s", "--target", "coder", "--deadline", "120s")
            runs += out["runs"]
        finally:
            stop(proc)
    for n in range(args.disk_runs):
        with tempfile.TemporaryDirectory(prefix="aios-chaos-disk-") as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)],
                              capture_output=True).returncode != 0:
                print("disk-full skipped: cannot mount a tmpfs here (needs root)", file=sys.stderr)
                break
            try:
                proc = engine(Path(tmp), data, 18932 + n)
                try:
                    runs.append(chaos(f"http://127.0.0.1:{18932 + n}", "disk-full", "--data", str(data),
                                      "--deadline", "120s", "--seed", str(args.seed + n)))
                finally:
                    stop(proc)
            finally:
                subprocess.run(["umount", "-l", str(data)], check=False)
    reports = [as_report(run) for run in runs]
    print(f"\nbench/chaos.py: {len(reports)} runs, seed {args.seed}\n")
    print(table(reports))
    detect = [r.seconds(r.detected_at) for r in reports if r.detected_at]
    heal = [r.seconds(r.healed_at) for r in reports if r.ok]
    if detect and heal:
        print(f"\nbaseline (time to detect), mean {sum(detect) / len(detect):.1f} s; time to heal, mean "
              f"{sum(heal) / len(heal):.1f} s; ratio {sum(heal) / len(heal) / (sum(detect) / len(detect)):.1f}")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
