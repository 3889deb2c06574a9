"""`compact --url` asks a running engine, dry run first; the report reads as with `--data`."""
from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

from conftest import make_event, run_cli
from service_harness import run_engine


def test_compact_url_dry_run_reports_and_changes_nothing_then_the_real_run_deletes(tmp_path: Path):
    old = (date.today() - timedelta(days=40)).isoformat()  # the engine compacts as of its own clock
    events = tmp_path / "data" / "events"
    events.mkdir(parents=True)
    raw = events / f"{old}.jsonl"
    raw.write_text(json.dumps(make_event("old-1", f"{old}T12:00:00.000000Z")) + "\n")

    async def body(engine, http):
        dry = await asyncio.to_thread(run_cli, "compact", "--url", engine.url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "dry run, nothing changed: would archive 0 day(s), delete 1 day(s)" in dry.stdout
        assert f"  would delete  {old} (summary kept)" in dry.stdout
        assert raw.exists()
        real = await asyncio.to_thread(run_cli, "compact", "--url", engine.url)
        assert real.returncode == 0, real.stderr
        assert f"  deleted  {old} (summary kept)" in real.stdout
        assert not raw.exists() and (events / "summaries" / f"{old}.json").exists()

    run_engine(tmp_path, body)
