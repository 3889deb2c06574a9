"""Faults after the bytes reach the disk: a failing dedup index, a full disk (real tmpfs) and the reserve."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import make_event

from engine.bus import Bus
from engine.events import EventValidator, format_ts
from engine.intake import Intake
from engine.store.dedup import DedupIndex
from engine.store.reader import read_events
from engine.store.writer import EventWriter, StoreWriteError

T0 = datetime(2026, 2, 24, 12, 0, tzinfo=timezone.utc).timestamp()


def _events(n: int, prefix: str, pad: int = 0) -> list[dict]:
    return [make_event(f"{prefix}{i:05d}", format_ts(T0 + i), pad="x" * pad) for i in range(n)]


def _stored_ids(data_dir: Path) -> list[str]:
    return [e["id"] for e in read_events(data_dir / "events")]


def _break_index(writer: EventWriter, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make the dedup index fail as on a full disk (after the fsync); returns what heals it."""
    def full(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(writer._dedup, "record", full)  # the fault goes into the real index
    return lambda: monkeypatch.undo()


def _wait(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the writer thread to act on a poll (it runs asynchronously by design)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the writer did not get there"
        time.sleep(0.01)


def test_sqlite_full_raises_the_full_error_not_a_failed_rollback(tmp_path: Path):
    index = DedupIndex(tmp_path / "dedup.sqlite3", 86400)
    index.record([("first", T0)], {})
    index._db.execute(f"PRAGMA max_page_count = {index._db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(Exception, match="database or disk is full"):
        index.record([(f"id-{i:06d}" * 4, T0) for i in range(5000)], {})
    assert index.count() == 1  # nothing half-recorded


def test_a_batch_is_acknowledged_once_fsynced_though_the_index_fails_and_a_retry_is_not_stored_again(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    with EventWriter(data_dir, clock=lambda: T0) as writer:
        writer.append(_events(1, "warm"))
        heal = _break_index(writer, monkeypatch)
        first = writer.append(_events(20, "batch-with-a-rather-long-id-"))
        assert first.stored == [True] * 20  # acknowledged: the lines are fsynced
        health = writer.health()
        assert health["state"] == "degraded" and health["index_backlog"] == 20
        assert "database or disk is full" in health["last_error"]

        retry = writer.append(_events(20, "batch-with-a-rather-long-id-"))
        assert retry.stored == [False] * 20  # the backlog answers for the index
        assert len(_stored_ids(data_dir)) == 21

        heal()  # the index recovers: the next poll writes the backlog
        writer.poll_space()
        _wait(lambda: writer.health()["state"] == "ok")
        assert writer.health()["index_backlog"] == 0 and writer.health()["last_error"] is None
        assert writer._dedup.seen([f"batch-with-a-rather-long-id-{i:05d}" for i in range(20)]) \
            == {f"batch-with-a-rather-long-id-{i:05d}" for i in range(20)}
    with EventWriter(data_dir, clock=lambda: T0) as writer:  # and it persisted
        assert writer.append(_events(20, "batch-with-a-rather-long-id-")).stored == [False] * 20
    assert len(_stored_ids(data_dir)) == 21


def test_ids_the_index_never_recorded_are_caught_up_from_the_files_at_the_next_open(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    with EventWriter(data_dir, clock=lambda: T0) as writer:
        writer.append(_events(1, "warm"))
        _break_index(writer, monkeypatch)
        assert writer.append(_events(30, "lost-in-the-index-")).stored == [True] * 30
        assert writer.health()["index_backlog"] == 30  # still failing at close: the backlog is gone
    with EventWriter(data_dir, clock=lambda: T0) as writer:
        assert writer.append(_events(30, "lost-in-the-index-")).stored == [False] * 30
    assert len(_stored_ids(data_dir)) == 31


def test_intake_acknowledges_and_publishes_once_when_the_index_fails(data_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    async def scenario() -> int:
        bus = Bus()
        seen = bus.subscribe("t", "*", policy="lossless")
        with EventWriter(data_dir) as writer:
            intake = Intake(EventValidator(), writer, bus)
            await intake.submit([{"type": "agent.heartbeat", "id": "warm"}])
            _break_index(writer, monkeypatch)
            batch = [{"type": "agent.error", "id": f"retry-me-please-{i:03d}"} for i in range(20)]
            assert (await intake.submit(batch)).stored == [True] * 20
            assert (await intake.submit(batch)).stored == [False] * 20
        return seen.queue.qsize()

    assert asyncio.run(scenario()) == 21


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)


def test_a_full_disk_keeps_the_engines_own_events_refuses_outside_ones_and_heals_by_itself(tmp_path: Path):
    data = tmp_path / "data"
    with tmpfs(data, "6m"), EventWriter(data, clock=lambda: T0, reserve_mb=1) as writer:
        reserve = data / ".reserve"
        assert reserve.stat().st_size == 1 << 20 and writer.health()["reserve"] == "held"
        writer.append(_events(5, "before"))
        _fill(data / "filler")

        own = writer.append(_events(3, "engine-disk-full-", pad=8000), external=False)
        assert own.stored == [True] * 3  # written into the space the reserve gave up
        assert not reserve.exists()
        with pytest.raises(StoreWriteError, match="only the engine's own events"):
            writer.append(_events(2, "outside-", pad=8000))
        health = writer.health()
        assert health["state"] == "failing" and health["reserve"] == "released"
        assert health["outside_events"] == "refused" and "disk full" in health["last_error"]

        (data / "filler").unlink()
        writer.poll_space()  # the service's 1 s job: no write is needed to notice
        _wait(lambda: writer.health()["state"] == "ok")
        assert reserve.stat().st_size == 1 << 20 and writer.health()["reserve"] == "held"
        assert writer.append(_events(2, "outside-", pad=8000)).stored == [True, True]
        ids = _stored_ids(data)
        assert len(ids) == 10 and len([i for i in ids if i.startswith("outside-")]) == 2


def test_outside_intake_resumes_on_the_next_submit_once_space_is_back(tmp_path: Path):
    data = tmp_path / "data"
    with tmpfs(data, "6m"), EventWriter(data, clock=lambda: T0, reserve_mb=1) as writer:
        _fill(data / "filler")
        with pytest.raises(StoreWriteError):
            writer.append(_events(2, "outside-", pad=8000))
        assert writer.health()["outside_events"] == "refused"
        (data / "filler").unlink()
        assert writer.append(_events(2, "outside-", pad=8000)).stored == [True, True]
        assert writer.health()["state"] == "ok"


def test_a_disk_too_full_for_the_reserve_at_open_starts_refusing_outside_events(tmp_path: Path):
    data = tmp_path / "data"
    with tmpfs(data, "6m"):
        (data / "events").mkdir()
        _fill(data / "filler")
        (data / "filler").write_bytes(b"\0" * ((data / "filler").stat().st_size - (256 << 10)))
        with EventWriter(data, clock=lambda: T0, reserve_mb=1) as writer:
            assert writer.health()["reserve"] == "released" and writer.health()["state"] == "failing"
            assert writer.append(_events(1, "engine-"), external=False).stored == [True]
            with pytest.raises(StoreWriteError):
                writer.append(_events(1, "outside-"))


def test_the_writer_thread_survives_a_commit_that_fails_unexpectedly(tmp_path, monkeypatch):
    """A bug or an odd OSError in one commit refuses that batch; the next append is served (never a hang)."""
    import concurrent.futures

    from engine.store.writer import EventWriter, StoreWriteError

    with EventWriter(tmp_path / "data", reserve_mb=0) as writer:
        real = writer._commit_durably
        calls = {"n": 0}

        def flaky(batch):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("unexpected")
            return real(batch)

        monkeypatch.setattr(writer, "_commit_durably", flaky)
        first = writer.submit([{"id": "01A", "ts": "2026-12-02T00:00:00Z", "type": "a.b", "data": {}}])
        try:
            first.result(timeout=5)
            raise AssertionError("the failing commit was acknowledged")
        except StoreWriteError:
            pass
        second = writer.submit([{"id": "01B", "ts": "2026-12-02T00:00:00Z", "type": "a.b", "data": {}}])
        try:
            assert second.result(timeout=5).stored == [True]
        except concurrent.futures.TimeoutError:
            raise AssertionError("the writer thread died: the next append hangs") from None
