"""Which event ids were stored in the last 24 h, with memory bounded whatever the rate.

An in-memory set of a day's ids would grow with traffic (about 100 bytes per id), so the window lives
in SQLite (stdlib) under `data/state/`, whose page cache bounds memory. The event files stay the source
of truth: the index records how far into each day file it has seen, and at open it reads whatever the
files hold beyond that (events made durable just before a crash), or rebuilds itself from the files
of the window when its database is missing or damaged.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from engine.store.layout import Layout, iter_lines
from engine.store.reader import ReadStats, parse_lines

_CHUNK = 900  # below SQLite's default limit of host parameters
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY, stored_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ids_by_time ON ids(stored_at);
CREATE TABLE IF NOT EXISTS seen_files (path TEXT PRIMARY KEY, size INTEGER NOT NULL);
"""


class DedupIndex:
    """Ids stored within `window_s`; `seen` asks, `record` adds (after the events are durable)."""

    def __init__(self, path: Path, window_s: float, cache_kib: int = 2048) -> None:
        self.path = path
        self.window_s = window_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect(cache_kib)

    def _connect(self, cache_kib: int) -> sqlite3.Connection:
        for attempt in range(2):
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a power cut may forget the last commits, which can only let a repeat in again,
                # never lose an event (ids are recorded after the events are durable).
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(f"PRAGMA cache_size=-{cache_kib}")
                db.executescript(_SCHEMA)
                db.execute("SELECT count(*) FROM seen_files").fetchone()
                return db
            except sqlite3.DatabaseError as exc:
                if attempt or getattr(exc, "sqlite_errorcode", None) not in _DAMAGED:
                    raise  # a full disk or a permission problem is no reason to throw the index away
                for suffix in ("", "-wal", "-shm"):  # damaged: the files rebuild it
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def seen(self, ids: list[str]) -> set[str]:
        """The ids among `ids` already stored within the window."""
        found: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in self._db.execute(f"SELECT id FROM ids WHERE id IN ({marks})", chunk))
        return found

    def record(self, entries: Iterable[tuple[str, float]], file_sizes: dict[Path, int]) -> None:
        """Remember (id, stored_at) pairs made durable, and how far into each file they reach; one
        transaction. On failure nothing is recorded and the first error is raised: SQLite rolls back by
        itself on SQLITE_FULL, so a ROLLBACK with no transaction left must not replace it."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR IGNORE INTO ids VALUES (?, ?)", entries)
            db.executemany("INSERT OR REPLACE INTO seen_files VALUES (?, ?)",
                           ((str(p), size) for p, size in file_sizes.items()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def expire(self, now: float) -> int:
        """Forget ids stored before the window; returns how many."""
        return self._db.execute("DELETE FROM ids WHERE stored_at < ?", (now - self.window_s,)).rowcount

    def catch_up(self, layout: Layout, now: float) -> int:
        """Index events the files hold but the index has not seen (files touched within the window)."""
        known = dict(self._db.execute("SELECT path, size FROM seen_files").fetchall())
        added = 0
        for day in layout.days():
            for path in (layout.raw(day), layout.archive(day)):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if stat.st_mtime < now - self.window_s or known.get(str(path)) == stat.st_size:
                    continue
                if path.suffix == ".gz" and str(path) not in known and str(layout.raw(day)) in known:
                    # compaction turned an indexed raw day into this archive: same events, nothing new
                    self.record((), {path: stat.st_size})
                    continue
                offset = known.get(str(path), 0) if path.suffix == ".jsonl" else 0
                ids = list(_ids_in(path, offset))
                stored_at = min(stat.st_mtime, now)
                self.record(((i, stored_at) for i in ids), {path: stat.st_size})
                added += len(ids)
        return added

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM ids").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def _ids_in(path: Path, offset: int) -> Iterable[str]:
    for event in parse_lines(iter_lines(path, offset), ReadStats()):
        if isinstance(event.get("id"), str):
            yield event["id"]
