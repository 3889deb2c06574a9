"""Torn lines, the single-writer lock, concurrent readers, dedup and late events, on real files."""
from __future__ import annotations

import gzip
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import make_event, run_cli

from engine.events import EventValidator, format_ts
from engine.store.lock import DataDirLocked
from engine.store.reader import read_events
from engine.store.writer import EventWriter

T0 = datetime(2026, 2, 24, 12, 0, tzinfo=timezone.utc).timestamp()


def _events(n: int, prefix: str = "e", ts: float = T0) -> list[dict]:
    return [make_event(f"{prefix}{i:05d}", format_ts(ts + i), n=i) for i in range(n)]


def test_torn_last_line_is_skipped_by_readers_and_repaired_by_the_writer(data_dir: Path):
    with EventWriter(data_dir) as writer:
        writer.append(_events(50))
    raw = data_dir / "events" / "2026-02-24.jsonl"
    torn = b'{"id":"torn","ts":"2026-02-24T12:30:00.000000Z","type":"agent.he'
    with open(raw, "ab") as handle:
        handle.write(torn)

    assert [e["id"] for e in read_events(data_dir / "events")] == [f"e{i:05d}" for i in range(50)]

    with EventWriter(data_dir) as writer:
        assert len(writer.stats.repaired) == 1 and str(raw) in writer.stats.repaired[0]
        assert raw.read_bytes().endswith(b"\n")
        quarantined = list((data_dir / "events" / "corrupt").iterdir())
        assert [p.read_bytes() for p in quarantined] == [torn]
        writer.append(_events(5, prefix="f", ts=T0 + 100))
    assert len(list(read_events(data_dir / "events"))) == 55


def test_readers_never_see_partial_lines_while_the_writer_appends(data_dir: Path):
    errors: list[BaseException] = []
    seen_counts: list[int] = []
    with EventWriter(data_dir) as writer:
        writer.append(_events(1))
        done = threading.Event()

        def read_loop() -> None:
            try:
                while not done.is_set():
                    events = list(read_events(data_dir / "events"))
                    assert all(e["type"] == "agent.heartbeat" for e in events)
                    seen_counts.append(len(events))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        reader = threading.Thread(target=read_loop)
        reader.start()
        for batch in range(40):
            writer.append([make_event(f"b{batch}-{i}", format_ts(T0 + batch), pad="p" * 3000) for i in range(50)])
        done.set()
        reader.join()
    assert not errors
    assert seen_counts == sorted(seen_counts) and seen_counts[-1] <= 2001


def test_a_second_writer_on_the_same_data_dir_is_refused_clearly(data_dir: Path):
    with EventWriter(data_dir):
        with pytest.raises(DataDirLocked, match=f"in use by pid {os.getpid()}"):
            EventWriter(data_dir).open()
        result = run_cli("emit", "agent.error", "--agent", "coder", "--data", str(data_dir))
        assert result.returncode == 1
        assert f"data directory {data_dir} is in use by pid {os.getpid()}" in result.stderr
        assert "Traceback" not in result.stderr
    result = run_cli("emit", "agent.error", "--agent", "coder", "--data", str(data_dir))
    assert result.returncode == 0, result.stderr


def test_duplicate_ids_are_stored_once_within_a_batch_across_batches_and_after_restart(data_dir: Path):
    now = [T0]
    first = make_event("dup-1", format_ts(T0))
    with EventWriter(data_dir, clock=lambda: now[0]) as writer:
        assert writer.append([first, first, make_event("other", format_ts(T0))]).stored == [True, False, True]
        assert writer.append([first]).stored == [False]
    now[0] += 3600
    with EventWriter(data_dir, clock=lambda: now[0]) as writer:
        result = writer.append([first])
        assert result.ids == ["dup-1"] and result.stored == [False]
    (data_dir / "state" / "dedup.sqlite3").unlink()  # lost index: rebuilt from the window's files
    with EventWriter(data_dir, clock=lambda: now[0]) as writer:
        assert writer.append([first]).stored == [False]
    assert [e["id"] for e in read_events(data_dir / "events")].count("dup-1") == 1


def test_an_id_may_be_stored_again_once_the_window_since_it_was_stored_has_passed(data_dir: Path):
    now = [T0]
    event = make_event("again", format_ts(T0))
    with EventWriter(data_dir, clock=lambda: now[0], dedup_window_s=86400) as writer:
        writer.append([event])
        now[0] += 86400 - 1
        assert writer.append([event]).stored == [False]
    now[0] += 2
    os.utime(data_dir / "events" / "2026-02-24.jsonl", (T0, T0))  # the file was last written at T0
    with EventWriter(data_dir, clock=lambda: now[0], dedup_window_s=86400) as writer:
        assert writer.append([event]).stored == [True]


def test_events_made_durable_just_before_a_crash_still_count_for_dedup(data_dir: Path):
    with EventWriter(data_dir) as writer:
        writer.append(_events(3))
    raw = data_dir / "events" / "2026-02-24.jsonl"
    with open(raw, "ab") as handle:  # durable in the file, never recorded in the index (crash between)
        handle.write(b'{"id":"late-crash","ts":"2026-02-24T13:00:00.000000Z","type":"a.b","source":"t",'
                     b'"host":"h","severity":"info","data":{}}\n')
    with EventWriter(data_dir) as writer:
        assert writer.append([make_event("late-crash", format_ts(T0))]).stored == [False]


def test_late_events_for_an_archived_day_go_into_that_days_archive(data_dir: Path):
    archive = data_dir / "events" / "archive" / "2026-02-10.jsonl.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(gzip.compress(b'{"id":"old","ts":"2026-02-10T01:00:00.000000Z","type":"a.b"}\n'))
    with EventWriter(data_dir) as writer:
        writer.append([make_event("late", "2026-02-10T05:00:00.000000Z")])
    assert not (data_dir / "events" / "2026-02-10.jsonl").exists()
    assert [e["id"] for e in read_events(data_dir / "events")] == ["old", "late"]


def test_a_failed_write_leaves_nothing_half_written_and_the_next_commit_succeeds(data_dir: Path, monkeypatch):
    with EventWriter(data_dir) as writer:
        writer.append(_events(2))
        real_fsync = os.fsync
        calls = {"n": 0}

        def failing_fsync(fd: int) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(28, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space left"):
            writer.append([make_event("x1", format_ts(T0)), make_event("x2", format_ts(T0 + 86400))])
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert [e["id"] for e in read_events(data_dir / "events")] == ["e00000", "e00001"]
        assert writer.append([make_event("x1", format_ts(T0))]).stored == [True]
    assert [e["id"] for e in read_events(data_dir / "events")] == ["e00000", "e00001", "x1"]


def test_emit_stores_typed_values_and_events_filters_them(data_dir: Path):
    assert run_cli("emit", "agent.error", "--agent", "coder", "n=3", "ok=true", "msg=disk gone", "--data",
                   str(data_dir)).returncode == 0
    assert run_cli("emit", "resource.cpu_spike", "pct=97.5", "--data", str(data_dir)).returncode == 0
    out = run_cli("events", "--data", str(data_dir), "--format", "json", "--type", "agent.*").stdout
    events = [__import__("json").loads(line) for line in out.splitlines()]
    assert [e["data"] for e in events] == [{"n": 3, "ok": True, "msg": "disk gone"}]
    assert events[0]["source"] == "cli"
    refused = run_cli("emit", "reactor.succeeded", "--data", str(data_dir))
    assert refused.returncode == 1 and "reserved for the engine" in refused.stderr
    text = run_cli("events", "--data", str(data_dir), "--agent", "coder").stdout
    assert "agent.error" in text and "cpu_spike" not in text


def test_validator_and_writer_work_together_through_intake(data_dir: Path):
    import asyncio

    from engine.bus import Bus
    from engine.intake import Intake

    async def scenario() -> list[str]:
        bus = Bus()
        sub = bus.subscribe("test", "agent.*")
        with EventWriter(data_dir) as writer:
            intake = Intake(EventValidator(), writer, bus)
            result = await intake.submit([{"type": "agent.error", "id": "a1"}, {"type": "resource.cpu_spike"},
                                          {"type": "agent.error", "id": "a1"}])
            assert result.stored == [True, True, False]
        return [sub.queue.get_nowait()["id"] for _ in range(sub.queue.qsize())]

    assert asyncio.run(scenario()) == ["a1"]


def test_follow_prints_existing_then_new_events_across_a_new_day(data_dir: Path):
    from engine.store.reader import EventFilter, follow

    with EventWriter(data_dir) as writer:
        writer.append(_events(2))
        polls = {"n": 0}

        def on_poll(_: float) -> None:  # the injected sleep: the writer appends while the reader waits
            polls["n"] += 1
            if polls["n"] == 1:
                writer.append([make_event("next-day", format_ts(T0 + 86400), n=9),
                               make_event("other-agent", format_ts(T0 + 5), agent="analyst")])

        stream = follow(data_dir / "events", EventFilter(agent="coder"), stop=lambda: polls["n"] >= 2,
                        sleep=on_poll)
        assert [e["id"] for e in stream] == ["e00000", "e00001", "next-day"]


def test_an_append_whose_caller_gave_up_does_not_stop_the_writer(data_dir: Path):
    import asyncio

    async def scenario() -> list[bool]:
        with EventWriter(data_dir) as writer:
            waiting = asyncio.ensure_future(writer.append_async(_events(20_000, prefix="big")))
            await asyncio.sleep(0)
            waiting.cancel()  # a timed-out step, a shutdown: the caller stops waiting
            await asyncio.gather(waiting, return_exceptions=True)
            later = await asyncio.wait_for(writer.append_async(_events(1, prefix="after", ts=T0 + 50_000)), 10)
            return later.stored

    assert asyncio.run(scenario()) == [True]
    assert "after00000" in {e["id"] for e in read_events(data_dir / "events")}


def test_compaction_does_not_make_old_ids_count_again_after_a_restart(data_dir: Path):
    from datetime import datetime, timezone

    day_old = format_ts(T0 - 8 * 86400)  # a day that compaction archives
    with EventWriter(data_dir, clock=lambda: T0) as writer:
        writer.append([make_event("old-1", day_old)])
        writer.compact(datetime.fromtimestamp(T0, timezone.utc))
    assert (data_dir / "events" / "archive" / f"{day_old[:10]}.jsonl.gz").exists()
    later = T0 + 86400 + 60  # the id left the 24 h window since it was stored
    with EventWriter(data_dir, clock=lambda: later) as writer:
        assert writer.append([make_event("old-1", day_old)]).stored == [True]
