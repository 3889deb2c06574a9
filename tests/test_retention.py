"""Retention on a synthetic 40-day store, through the CLI, including compactions killed mid-way."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import ROOT, make_event, run_cli

from engine.store.layout import Layout

NOW = "2026-03-10T08:00:00Z"
TODAY = date(2026, 3, 10)
TYPES = ("agent.heartbeat", "agent.error", "resource.cpu_spike")


def build_store(data_dir: Path, days: int = 40, per_day: int = 30) -> dict[str, list[dict]]:
    """Raw files for today and the 39 days before, as if no compaction had ever run."""
    layout = Layout.under(data_dir)
    layout.events_dir.mkdir(parents=True, exist_ok=True)
    by_day = {}
    for age in range(days):
        day = (TODAY - timedelta(days=age)).isoformat()
        events = [make_event(f"{day}-{i:03d}", f"{day}T{i % 24:02d}:00:00.000000Z", TYPES[i % 3],
                             agent=("coder", "analyst", None)[i % 3], n=i) for i in range(per_day)]
        layout.raw(day).write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        by_day[day] = events
    return by_day


def check_final_state(data_dir: Path, by_day: dict[str, list[dict]]) -> None:
    layout = Layout.under(data_dir)
    for day, events in by_day.items():
        age = (TODAY - date.fromisoformat(day)).days
        raw, archive, summary = layout.raw(day), layout.archive(day), layout.summary(day)
        if age < 7:
            assert raw.exists() and not archive.exists(), day
        elif age < 30:
            assert archive.exists() and not raw.exists(), day
            lines = gzip.decompress(archive.read_bytes()).splitlines()
            assert [json.loads(line)["id"] for line in lines] == [e["id"] for e in events]
        else:
            assert not raw.exists() and not archive.exists(), day
        if age >= 7:
            got = json.loads(summary.read_text())
            assert got == {
                "day": day, "count": len(events),
                "by_type": {t: sum(e["type"] == t for e in events) for t in sorted(TYPES)},
                "by_agent": {a: sum(e.get("agent") == a for e in events) for a in ("analyst", "coder")},
                "by_severity": {"info": len(events)},
                "first_ts": min(e["ts"] for e in events), "last_ts": max(e["ts"] for e in events),
            }
    leftovers = [p for p in data_dir.rglob("*.tmp")]
    assert not leftovers


def test_compact_keeps_raw_archives_and_deletes_by_age_and_events_reads_across_both(data_dir: Path):
    by_day = build_store(data_dir)
    result = run_cli("compact", "--now", NOW, "--data", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "archived 23 day(s), deleted 10 day(s)" in result.stdout
    check_final_state(data_dir, by_day)

    listing = run_cli("events", "--data", str(data_dir), "--format", "json")
    ids = [json.loads(line)["id"] for line in listing.stdout.splitlines()]
    expected = [e["id"] for day in sorted(by_day) for e in by_day[day]
                if (TODAY - date.fromisoformat(day)).days < 30]
    assert ids == expected
    window = run_cli("events", "--data", str(data_dir), "--format", "json", "--type", "agent.error",
                     "--since", "2026-02-25T00:00:00Z", "--until", "2026-03-05T00:00:00Z")
    got = [json.loads(line) for line in window.stdout.splitlines()]
    assert {e["ts"][:10] for e in got} == {(date(2026, 2, 25) + timedelta(days=i)).isoformat() for i in range(8)}
    assert all(e["type"] == "agent.error" for e in got)

    again = run_cli("compact", "--now", NOW, "--data", str(data_dir))  # idempotent
    assert "archived 0 day(s), deleted 0 day(s)" in again.stdout
    check_final_state(data_dir, by_day)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from datetime import datetime
    from engine.store import retention
    from engine.store.layout import Layout

    budget = [int(sys.argv[2])]
    def step(real):
        def wrapped(*args, **kwargs):
            budget[0] -= 1
            if budget[0] < 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return wrapped

    os.replace = step(os.replace)
    Path.unlink = step(Path.unlink)
    os.fsync = step(os.fsync)
    retention.compact(Layout.under(sys.argv[1]), datetime.fromisoformat({now!r}))
""")


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3, 5, 8, 13, 21, 34, 55])
def test_a_compaction_killed_at_any_step_completes_on_rerun(data_dir: Path, kill_after: int):
    by_day = build_store(data_dir, per_day=12)
    before = run_cli("events", "--data", str(data_dir), "--format", "json").stdout.splitlines()
    killed = subprocess.run([sys.executable, "-c", KILLER.format(root=str(ROOT), now=NOW), str(data_dir),
                             str(kill_after)], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()

    # whatever step it died at, readers see no event twice and none that should still be there is lost
    during = [json.loads(line)["id"] for line in
              run_cli("events", "--data", str(data_dir), "--format", "json").stdout.splitlines()]
    assert len(during) == len(set(during))
    young = {json.loads(line)["id"] for line in before if json.loads(line)["ts"] >= "2026-02-09"}
    assert young <= set(during)

    result = run_cli("compact", "--now", NOW, "--data", str(data_dir))
    assert result.returncode == 0, result.stderr
    check_final_state(data_dir, by_day)


def _tree(data_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(data_dir.rglob("*"))}


def test_dry_run_prints_what_compact_would_do_and_changes_nothing(data_dir: Path):
    build_store(data_dir)
    (Layout.under(data_dir).archive_dir / "2026-02-01.jsonl.gz.tmp").parent.mkdir(parents=True)
    (Layout.under(data_dir).archive_dir / "2026-02-01.jsonl.gz.tmp").write_bytes(b"left by a killed run")
    before = _tree(data_dir)
    dry = run_cli("compact", "--now", NOW, "--data", str(data_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert _tree(data_dir) == before
    assert "dry run, nothing changed: would archive 23 day(s), delete 10 day(s)" in dry.stdout
    assert "  would archive 2026-03-03\n" in dry.stdout and "  would delete  2026-02-08 (summary kept)" in dry.stdout

    real = run_cli("compact", "--now", NOW, "--data", str(data_dir))

    def days(output: str) -> list[tuple[str, str]]:
        return re.findall(r"^  (?:would )?(archive|delete)d? +(\S+)", output, re.MULTILINE)
    assert days(dry.stdout) == days(real.stdout) and len(days(real.stdout)) == 33  # the same days, one by one


def test_whatever_intake_accepts_survives_the_next_compaction(data_dir: Path):
    from datetime import datetime, timezone

    from engine.events import EventValidator
    from engine.store.reader import read_events
    from engine.store.writer import EventWriter

    late = datetime(2026, 3, 10, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    validator = EventValidator(clock=lambda: late, host="h", delete_days=30)
    oldest = validator.normalize({"type": "agent.heartbeat", "ts": "2026-02-10T00:00:00Z"})  # age 28, 29 at 00:10
    with EventWriter(data_dir, clock=lambda: late, raw_days=7, delete_days=30) as writer:
        writer.append([oldest])
        report = writer.compact(datetime(2026, 3, 11, 0, 10, tzinfo=timezone.utc))  # the daily job
    assert report.deleted == [] and report.archived == ["2026-02-10"]
    assert [e["id"] for e in read_events(data_dir / "events")] == [oldest["id"]]
