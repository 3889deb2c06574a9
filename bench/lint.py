"""Benchmark: `aios-engine lint` on 100, 1,000 and 5,000 playbooks, start-up included.

Baseline, measured in the same run on the same files: a plain script that parses each file with
libyaml (`yaml.load(..., CSafeLoader)`) and validates it with jsonschema against the same schema (no
positions, no duplicate-key detection, no semantic checks). The goal: 1,000 playbooks in under 1 s.
Run: `python bench/lint.py` (add `--sizes 100,1000` to choose sizes).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("resource.cpu_spike", "resource.memory_high", "resource.disk_full", "agent.down", "score.degraded")
PLAYBOOK = """\
id: bench-{i:05d}
description: Generated playbook {i}
"on": {type}
when:
  agent: {{in: [coder, analyst, monitor]}}
  data.n: {{gte: {i}}}
sustained: {{count: 2, within: 60s}}
throttle: {{within: 5m, key: [agent]}}
confidence: 0.{conf}
labels: {{team: platform}}
steps:
  - id: restart
    action: restart_agent
    with: {{agent: "{{agent}}"}}
  - id: verify
    needs: [restart]
    action: wait_for
    with: {{type: agent.heartbeat, where: {{agent: "{{agent}}"}}, within: 20s}}
  - id: note
    needs: [verify]
    action: emit
    with: {{type: ops.notification, data: {{cause: "{{id}}", verified: "{{steps.verify.exit_code}}"}}}}
"""
BASELINE = """\
import sys, pathlib, yaml, jsonschema, json
schema = json.loads(pathlib.Path(sys.argv[1]).read_text())
validator = jsonschema.Draft202012Validator(schema)
errors = 0
for path in sorted(pathlib.Path(sys.argv[2]).glob("*.yaml")):
    errors += len(list(validator.iter_errors(yaml.load(path.read_text(), Loader=yaml.CSafeLoader))))
sys.exit(1 if errors else 0)
"""


def write_playbooks(folder: Path, count: int) -> None:
    for i in range(count):
        text = PLAYBOOK.format(i=i, type=TYPES[i % len(TYPES)], conf=i % 9 + 1)
        (folder / f"pb-{i:05d}.yaml").write_text(text)


def timed(argv: list[str], repeat: int) -> float:
    """Median wall time of `argv` as a fresh process; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv[:3]} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lint = [sys.executable, str(ROOT / "bin" / "aios-engine"), "lint", "--format", "json"]
    baseline = [sys.executable, "-c", BASELINE, str(ROOT / "schemas" / "playbook.schema.json")]
    print(f"{'playbooks':>9}  {'lint, all CPUs':>14}  {'per playbook':>12}  {'lint, 1 process':>15}  "
          f"{'baseline':>9}  {'ratio':>6}")
    for size in (int(n) for n in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_playbooks(folder, size)
            ours = timed([*lint, str(folder)], args.repeat)
            serial = timed([*lint, "--jobs", "1", str(folder)], args.repeat)
            base = timed([*baseline, str(folder)], args.repeat)
        print(f"{size:>9}  {ours:>13.3f}s  {ours / size * 1000:>10.2f}ms  {serial:>14.3f}s  {base:>8.3f}s  "
              f"{ours / base:>5.2f}x")
    print(f"start-up included in every figure (a fresh process per run); median of {args.repeat} runs; "
          f"{os.cpu_count()} CPUs; ratio = lint, all CPUs / baseline; goal: 1,000 playbooks < 1 s")


if __name__ == "__main__":
    main()
