"""The single writer of the event store: group commit, crash repair, dedup, late events.

Every append goes through one thread. It takes all the requests waiting (up to `max_batch_events`),
writes each day's lines with one `write`, fsyncs each file once, records the ids, and only then
completes the requests: many concurrent appends share one fsync, and an append returns only when its
events are durable. A failed write (disk full, I/O error) truncates every file back to where the
commit started, so a refused batch leaves nothing half-written, and the next commit simply tries again.

Once a batch's lines are fsynced it is acknowledged, whatever fails after: ids the dedup index could not
record wait in a bounded in-memory backlog that `seen` consults too, until a commit records them. On a
full disk the reserve (`space.py`) is given up for the engine's own events and outside ones are refused.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import gzip
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.osutil.files import atomic_write, fsync_dir
from engine.store.dedup import DedupIndex
from engine.store.layout import Layout, iter_lines
from engine.store.lock import DataLock
from engine.store.retention import CompactReport, compact
from engine.store.space import SpaceGuard, is_full

log = logging.getLogger("aios.store")
_MAX_OPEN_FILES = 8
_EXPIRE_EVERY_S = 60.0
BACKLOG_MAX = 100_000  # ids durable but not yet in the index: ~10 MB at most


class StoreWriteError(OSError):
    """The store could not make a batch durable; nothing of it was written."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Per input event, in order: its id and whether it was written (False: a repeat in the window)."""

    ids: list[str]
    stored: list[bool]


@dataclass(slots=True)
class WriterStats:
    commits: int = 0
    events_written: int = 0
    duplicates: int = 0
    failed_commits: int = 0
    last_fsync_s: float = 0.0
    last_error: str | None = None  # the last commit failed (nothing of it written); None once one succeeds
    index_error: str | None = None  # the dedup index failed after a commit; None once it records again
    index_dropped: int = 0  # engine ids left out of a full backlog (never retried, so never repeated)
    refused_outside: int = 0  # outside batches refused while short of space or with the backlog full
    repaired: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    events: Sequence[dict[str, Any]]
    future: concurrent.futures.Future[AppendResult]
    external: bool


_STOP = object()
_POLL = object()


class EventWriter:
    """Owns `data/events/` for writing (holding the data-dir lock) until `close()`."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        dedup_window_s: float = 86400.0,
        max_batch_events: int = 10_000,
        raw_days: int = 7,
        delete_days: int = 30,
        lock: DataLock | None = None,
        on_commit: Callable[[int, float], None] | None = None,
        reserve_mb: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.layout = Layout.under(self.data_dir)
        self.stats = WriterStats()
        self._clock = clock
        self._dedup_window_s = dedup_window_s
        self._max_batch = max_batch_events
        self._raw_days = raw_days
        self._delete_days = delete_days
        self._lock = lock or DataLock(self.data_dir)
        self._owns_lock = lock is None
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._files: OrderedDict[Path, int] = OrderedDict()
        self._checked_archives: set[Path] = set()
        self._switch = threading.Lock()  # held while files are written, and by compaction to swap them
        self._thread: threading.Thread | None = None
        self._dedup: DedupIndex | None = None
        self._last_expire = 0.0
        self._backlog: OrderedDict[str, float] = OrderedDict()  # id -> stored_at, oldest first
        self.space = SpaceGuard(self.data_dir, reserve_mb)

    # -- life cycle -------------------------------------------------------------------------------
    def open(self) -> EventWriter:
        """Lock the data dir, repair torn tails, bring the dedup index up to date, start committing."""
        if self._owns_lock:
            self._lock.acquire()
        try:
            for folder in (self.layout.events_dir, self.layout.archive_dir, self.layout.summaries_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self.stats.repaired = self._repair_torn_tails()
            self.space.open()
            self._dedup = self._open_index()
            now = self._clock()
            self._dedup.expire(now)
            self._dedup.catch_up(self.layout, now)
        except BaseException:
            if self._owns_lock:
                self._lock.release()
            raise
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()
        return self

    def _open_index(self) -> DedupIndex:
        """The dedup index; on a disk too full to open it, give up the reserve first (its space is the
        engine's for exactly this) and start short of space."""
        path = self.data_dir / "state" / "dedup.sqlite3"
        try:
            return DedupIndex(path, self._dedup_window_s)
        except (sqlite3.Error, OSError) as exc:
            if not (is_full(exc) or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL):
                raise
            self.space.on_full(exc)
            return DedupIndex(path, self._dedup_window_s)

    def close(self) -> None:
        """Finish what was submitted, then release files and the lock."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
            if self._backlog:  # a last try; else the next open's catch-up reads them from the files
                self._record_ids({}, self._clock(), {})
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        if self._dedup is not None:
            self._dedup.close()
            self._dedup = None
        if self._owns_lock:
            self._lock.release()

    def __enter__(self) -> EventWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending --------------------------------------------------------------------------------
    def submit(self, events: Sequence[dict[str, Any]], external: bool = True) -> concurrent.futures.Future[AppendResult]:
        """Queue normalized events; the future completes once they are durable (or raises StoreWriteError).

        `external` (API, `emit`) events are refused while the disk is short of space; the engine's own
        (False) may use the reserve, so that it can still record what it does about the full disk.
        """
        if self._thread is None:
            raise RuntimeError("the event writer is not open")
        future: concurrent.futures.Future[AppendResult] = concurrent.futures.Future()
        self._queue.put(_Request(events, future, external))
        return future

    def append(self, events: Sequence[dict[str, Any]], external: bool = True) -> AppendResult:
        """Store events durably; returns once they are on disk."""
        return self.submit(events, external).result()

    async def append_async(self, events: Sequence[dict[str, Any]], external: bool = True) -> AppendResult:
        return await asyncio.wrap_future(self.submit(events, external))

    def poll_space(self) -> None:
        """Ask the writer thread to look again at free space and the index backlog (O(1), never blocks:
        the service calls it every second, so outside intake resumes without waiting for a write)."""
        if self._thread is not None:
            self._queue.put(_POLL)

    def health(self) -> dict[str, Any]:
        """The store's state for /api/health: `ok`; `degraded` (acknowledging, but the dedup index lags:
        ids wait in memory); `failing` (the last commit failed, or outside events are refused)."""
        stats, space = self.stats, self.space
        backlog_full = len(self._backlog) >= BACKLOG_MAX
        problem = stats.last_error or space.error or (
            f"dedup index backlog full ({BACKLOG_MAX} ids): {stats.index_error}" if backlog_full else None)
        state = "failing" if problem else "degraded" if stats.index_error or self._backlog else "ok"
        return {"state": state, "last_error": problem or stats.index_error, "free_bytes": space.free_bytes(),
                "reserve": space.reserve, "outside_events": "refused" if space.short or backlog_full else "taken",
                "commits": stats.commits, "events": stats.events_written, "failed_commits": stats.failed_commits,
                "index_backlog": len(self._backlog), "index_error": stats.index_error}

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _POLL:
                self._poll()
                continue
            batch, count, stop = [first], len(first.events), False
            while count < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                if more is not _POLL:  # a commit looks at the space anyway
                    batch.append(more)
                    count += len(more.events)
            try:
                self._commit(batch)
            except Exception as exc:  # the thread must outlive any one batch, or every later append hangs
                self._refuse(batch, exc)
            if stop:
                return

    def _refuse(self, batch: list[_Request], exc: Exception) -> None:
        """Fail a batch the commit could not handle (a bug, an unexpected OSError): logged once, counted."""
        log.exception("event store commit failed unexpectedly; the batch is refused")
        self.stats.failed_commits += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        error = StoreWriteError(getattr(exc, "errno", None) or errno.EIO, f"event store write failed: {exc}")
        for request in batch:
            _settle(request.future, error=error)

    def _poll(self) -> None:
        try:
            self.space.check()
        except OSError:
            log.exception("re-allocating the store reserve failed")
        if self._backlog or self.stats.index_error:
            self._record_ids({}, self._clock(), {})

    def _commit(self, batch: list[_Request], retry: bool = True) -> None:
        """Commit `batch`; outside requests are refused first while short of space (or the backlog is full).
        The first ENOSPC gives up the reserve and commits the engine's own requests again in its space."""
        try:
            self.space.check()
        except OSError:  # re-creating the reserve failed (EIO, a read-only remount): commit all the same
            log.exception("re-allocating the store reserve failed")
        if self.space.short or len(self._backlog) >= BACKLOG_MAX:
            batch = self._refuse_outside(batch)
            if not batch:
                return
        try:
            self._commit_durably(batch)
        except StoreWriteError as error:
            if retry and is_full(error) and self.space.on_full(error):
                self._commit(batch, retry=False)
                return
            for request in batch:
                _settle(request.future, error=error)

    def _refuse_outside(self, batch: list[_Request]) -> list[_Request]:
        """Fail the outside requests of `batch` (503 at the API); returns the engine's own."""
        outside = [r for r in batch if r.external]
        if outside:
            self.stats.refused_outside += len(outside)
            reason = self.space.error if self.space.short else \
                f"the dedup index cannot record ids ({len(self._backlog)} waiting): {self.stats.index_error}"
            error = StoreWriteError(errno.ENOSPC if self.space.short else errno.EIO,
                                    f"the event store takes only the engine's own events now: {reason}")
            for request in outside:
                _settle(request.future, error=error)
        return [r for r in batch if not r.external]

    def _commit_durably(self, batch: list[_Request]) -> None:
        """Write and fsync `batch`, then acknowledge it. Raises StoreWriteError when nothing was written;
        once the lines are fsynced nothing raises: an index failure leaves the ids in the backlog."""
        assert self._dedup is not None
        try:
            all_ids = [e["id"] for r in batch for e in r.events]
            known = self._dedup.seen(all_ids)
            if self._backlog:
                known.update(i for i in all_ids if i in self._backlog)
            fresh: dict[str, bool] = {}  # id -> whether an outside request brought it
            by_day: dict[str, list[bytes]] = {}
            results = []
            for request in batch:
                stored = []
                for event in request.events:
                    event_id = event["id"]
                    new = event_id not in known and event_id not in fresh
                    if new:
                        fresh[event_id] = request.external
                        by_day.setdefault(event["ts"][:10], []).append(orjson.dumps(event))
                    stored.append(new)
                results.append(AppendResult([e["id"] for e in request.events], stored))
            started = time.perf_counter()
            sizes = self._write_days(by_day) if by_day else {}
            elapsed = time.perf_counter() - started
        except Exception as exc:  # every request of the commit fails alike; nothing of it was written
            self.stats.failed_commits += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            raise exc if isinstance(exc, StoreWriteError) else StoreWriteError(
                getattr(exc, "errno", None) or errno.EIO, f"event store write failed: {exc}") from exc
        # Durable: from here on the batch is acknowledged whatever fails (contract §1).
        self._record_ids(fresh, self._clock(), sizes)
        self.stats.commits += 1
        self.stats.events_written += len(fresh)
        self.stats.duplicates += len(all_ids) - len(fresh)
        self.stats.last_fsync_s = elapsed
        self.stats.last_error = None
        if self._on_commit is not None:
            try:
                self._on_commit(len(fresh), elapsed)
            except Exception:  # a metrics hook must never stop the writer thread
                log.exception("on_commit hook failed")
        for request, result in zip(batch, results):
            _settle(request.future, result=result)

    def _record_ids(self, fresh: dict[str, bool], now: float, sizes: dict[Path, int]) -> None:
        """Index the ids of a durable commit together with the backlog, in one transaction. On failure
        they wait in the backlog: every outside id (outside requests are refused while it is full, so it
        exceeds BACKLOG_MAX by one commit at most); engine ids only while there is room (never retried)."""
        assert self._dedup is not None
        try:
            self._dedup.record([*self._backlog.items(), *((i, now) for i in fresh)], sizes)
        except (sqlite3.Error, OSError) as exc:
            if self.stats.index_error is None:
                log.error("dedup index write failed (ids kept in memory until it records again): %s", exc)
            self.stats.index_error = f"{type(exc).__name__}: {exc}"
            horizon = now - self._dedup_window_s
            while self._backlog and next(iter(self._backlog.values())) < horizon:
                self._backlog.popitem(last=False)  # out of the window: no longer a repeat
            for event_id, outside in fresh.items():
                if outside or len(self._backlog) < BACKLOG_MAX:
                    self._backlog[event_id] = now
                else:
                    self.stats.index_dropped += 1
            return
        if self.stats.index_error is not None:
            log.warning("dedup index records again (%d waiting ids written)", len(self._backlog))
        self._backlog.clear()
        self.stats.index_error = None
        if now - self._last_expire > _EXPIRE_EVERY_S:
            self._last_expire = now
            try:
                self._dedup.expire(now)
            except (sqlite3.Error, OSError) as exc:  # tried again in a minute; the index only grows meanwhile
                log.warning("dedup index expiry failed: %s", exc)

    def _write_days(self, by_day: dict[str, list[bytes]]) -> dict[Path, int]:
        """Append each day's lines, fsync, and return the new sizes; on failure undo every file."""
        written: list[tuple[Path, int, int]] = []
        new_dirs: set[Path] = set()
        with self._switch:
            try:
                for day, lines in sorted(by_day.items()):
                    path = self._target(day)
                    payload = b"\n".join(lines) + b"\n"
                    if path.suffix == ".gz":
                        payload = gzip.compress(payload, compresslevel=6, mtime=0)
                    fd, created = self._fd(path)
                    if created:
                        new_dirs.add(path.parent)
                    start = os.fstat(fd).st_size
                    written.append((path, fd, start))
                    view = memoryview(payload)
                    while view:
                        view = view[os.write(fd, view):]
                for _, fd, _ in written:
                    os.fsync(fd)
                for folder in new_dirs:
                    fsync_dir(folder)
            except OSError as exc:
                for _, fd, start in written:
                    try:
                        os.ftruncate(fd, start)
                        os.fsync(fd)
                    except OSError:
                        pass  # the torn tail is repaired at the next open
                raise StoreWriteError(exc.errno or errno.EIO, f"event store write failed: {exc.strerror or exc}") \
                    from exc
            sizes = {path: os.fstat(fd).st_size for path, fd, _ in written}
            while len(self._files) > _MAX_OPEN_FILES:  # only between commits: no fd in use is closed
                os.close(self._files.popitem(last=False)[1])
            return sizes

    def _target(self, day: str) -> Path:
        """A day's raw file; a late event for an archived day goes into that day's archive."""
        archive = self.layout.archive(day)
        if archive.exists() and not self.layout.raw(day).exists():
            if archive not in self._checked_archives:
                self._repair_archive(archive)
                self._checked_archives.add(archive)
            return archive
        return self.layout.raw(day)

    def _fd(self, path: Path) -> tuple[int, bool]:
        fd = self._files.get(path)
        if fd is not None:
            self._files.move_to_end(path)
            return fd, False
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._files[path] = fd
        return fd, created

    def _forget(self, paths: Sequence[Path]) -> None:
        """Close cached handles of files compaction replaces (called with the switch lock held)."""
        for path in paths:
            fd = self._files.pop(path, None)
            if fd is not None:
                os.close(fd)
            self._checked_archives.discard(path)

    # -- retention --------------------------------------------------------------------------------
    def compact(self, now: datetime, dry_run: bool = False) -> CompactReport:
        """Run retention while appends continue; each day's file swap happens between commits. A dry run
        only reports. Afterwards the writer looks at the space again: compaction is how a full disk heals."""

        @contextmanager
        def swapping(paths: Sequence[Path]) -> Iterator[None]:
            with self._switch:
                self._forget(paths)
                yield

        report = compact(self.layout, now, self._raw_days, self._delete_days, swapping, dry_run=dry_run)
        if not dry_run:
            self.poll_space()
        return report

    # -- repair -----------------------------------------------------------------------------------
    def _repair_torn_tails(self) -> list[str]:
        """Move a torn last line (no newline: a crash mid-write) of each raw day to `corrupt/`."""
        repaired = []
        for day in self.layout.days():
            path = self.layout.raw(day)
            if not path.exists():
                continue
            with open(path, "r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size == 0:
                    continue
                handle.seek(size - 1)
                if handle.read(1) == b"\n":
                    continue
                keep = _last_newline_end(handle, size)
                handle.seek(keep)
                torn = handle.read()
                self._quarantine(path.name, torn)
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
            repaired.append(f"{path}: moved a torn last line of {len(torn)} bytes to {self.layout.corrupt_dir}")
        return repaired

    def _repair_archive(self, path: Path) -> None:
        """Before appending to an archive, make sure its last member is whole (rewrite it if not)."""
        try:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
            return
        except (OSError, EOFError):
            pass
        good = b"".join(line + b"\n" for line in iter_lines(path))
        self._quarantine(path.name, path.read_bytes())
        atomic_write(path, gzip.compress(good, mtime=0))
        self.stats.repaired.append(f"{path}: damaged archive tail removed (original kept in corrupt/)")

    def _quarantine(self, name: str, payload: bytes) -> None:
        folder = self.layout.corrupt_dir
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.{int(self._clock() * 1000)}.torn"
        with open(target, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(folder)


def _settle(future: concurrent.futures.Future[AppendResult], result: AppendResult | None = None,
            error: BaseException | None = None) -> None:
    """Complete an append's future unless its caller gave up (a cancelled wait): the writer thread must
    outlive any one caller. The events of a cancelled append are durable all the same."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except concurrent.futures.InvalidStateError:
        pass


def _last_newline_end(handle: Any, size: int) -> int:
    """Offset just past the last newline before `size` (0 when there is none), reading backwards."""
    position = size
    while position > 0:
        step = min(position, 1 << 16)
        position -= step
        handle.seek(position)
        chunk = handle.read(step)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return position + index + 1
    return 0
