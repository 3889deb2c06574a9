"""Issue 14: the CI's 60 s version of the soak (`bench/soak.py`, docs/soak.md). A real engine with the shipped
demo agents under a small steady load with seeded faults; the soak must pass (nothing lost or stored twice, fds
not growing, RSS within its bound, a clean exit) and leave its plot, its samples and its table. About 70 s."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_soak_60_s_passes_and_leaves_plot_and_table(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "60", "--rate", "100",
                           "--seed", "14", "--out", str(out)], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    assert "| figure | start (baseline) | end | max | end/start | max/start |" in done.stdout
    assert "| **soak** | **PASS** |" in done.stdout
    plot = (out / "soak.svg").read_text()
    assert plot.startswith("<svg") and plot.count("<polyline") == 3
    for label in ("RSS (MB)", "open fds", "event-loop lag", "time (s)"):
        assert label in plot
    report = json.loads((out / "soak.json").read_text())
    assert len(report["samples"]) >= 20 and report["faults"], "a sample every 2 s, faults from 6 s to 54 s"
    events = report["summary"]["events"]
    assert events["acked"] >= 5000 and events["lost"] == events["duplicated"] == 0
