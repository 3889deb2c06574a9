"""`score`, `feedback`, `tune` over the files (`--data`), as an operator runs them (docs/score.md)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import make_event, run_cli

from engine.events import format_ts

NOW = time.time()
DAY = time.strftime("%Y-%m-%d", time.gmtime(NOW))
COMPONENTS = {"success_rate": 0.1, "latency": 1.0, "stability": 1.0, "resource": 1.0}


def store(data: Path) -> None:
    events = [make_event(f"t{n:02d}", format_ts(NOW - 600 + n), "agent.task_done", "coder", ok=n < 2,
                         duration_ms=400) for n in range(12)]
    events.append(make_event("upd1", format_ts(NOW - 300), "score.updated", "coder", score=0.6,
                             components={**COMPONENTS, "success_rate": 0.5}))
    events.append(make_event("deg1", format_ts(NOW - 200), "score.degraded", "coder", score=0.28,
                             components=COMPONENTS))
    (data / "events").mkdir(parents=True)
    (data / "events" / f"{DAY}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_score_from_the_files_shows_the_components_and_weights(tmp_path: Path):
    store(tmp_path)
    out = run_cli("score", "--data", str(tmp_path), "--format", "json").stdout
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["agent"] == "coder" and abs(row["components"]["success_rate"] - 3 / 13) < 0.01  # 2 ok of 12
    assert row["weights"] == {"success_rate": 0.4, "latency": 0.2, "stability": 0.2, "resource": 0.2}
    assert abs(row["score"] - (0.4 * 3 / 13 + 0.6)) < 0.01 and not row["degraded"]  # failures alone: 0.69
    text = run_cli("score", "--data", str(tmp_path), "--agent", "coder").stdout
    assert "coder" in text and " 0.69 " in text and "success=0.40" in text
    assert "no score for ghost" in run_cli("score", "--data", str(tmp_path), "--agent", "ghost").stdout


def test_feedback_labels_an_event_or_a_missed_moment_and_refuses_what_is_not_there(tmp_path: Path):
    store(tmp_path)
    done = run_cli("feedback", "deg1", "--label", "false", "--data", str(tmp_path))
    assert done.returncode == 0 and "false alarm" in done.stdout, done.stderr
    missed = run_cli("feedback", "--agent", "coder", "--at", format_ts(NOW - 250), "--label", "true",
                     "--data", str(tmp_path))
    assert missed.returncode == 0, missed.stderr
    labels = [json.loads(line) for line in (tmp_path / "score" / "labels.jsonl").read_text().splitlines()]
    assert [(label["event"], label["label"], label["components"]["success_rate"]) for label in labels] == \
        [("deg1", False, 0.1), (None, True, 0.5)]  # the missed one has the components of the last score before
    for args, said in ((("nope", "--label", "true"), "no score.degraded event nope"),
                       (("--agent", "coder", "--at", format_ts(NOW - 3000), "--label", "true"), "no score of coder"),
                       (("--agent", "coder", "--at", "yesterday-ish", "--label", "true"), "at:"),
                       (("deg1", "--agent", "coder", "--label", "true"), "either EVENT_ID")):
        refused = run_cli("feedback", *args, "--data", str(tmp_path))
        assert refused.returncode == 1 and said in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_tune_prints_every_agents_weights_before_and_after_and_says_why_nothing_changed(tmp_path: Path):
    store(tmp_path)
    run_cli("feedback", "deg1", "--label", "true", "--data", str(tmp_path))
    out = run_cli("tune", "--data", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "1 labels" in out.stdout and "1 labels, 10 needed" in out.stdout
    assert "before success=0.40 latency=0.20 stability=0.20 resource=0.20" in out.stdout
    assert "after  success=0.40 latency=0.20 stability=0.20 resource=0.20" in out.stdout
    assert "nothing to revert" in run_cli("tune", "--revert", "--data", str(tmp_path)).stdout
