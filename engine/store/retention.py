"""Retention (contract §6): ages 0..raw_days-1 raw, then gzip archives, deleted at delete_days.

A day's age is counted in whole UTC days before `now`'s day. Every step writes a temporary file,
fsyncs it, renames it into place, and only then deletes the source, so a compaction stopped at any
point leaves the store readable and completes when run again (it is idempotent). A day's summary is
written before the day is archived and rewritten before it is deleted, so late events are counted.
"""
from __future__ import annotations

import contextlib
import gzip
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import ContextManager

import orjson

from engine.osutil.files import atomic_write, fsync_dir
from engine.store.layout import Layout, iter_lines
from engine.store.reader import ReadStats, parse_lines

Swap = Callable[[Sequence[Path]], ContextManager[None]]
_COPY_CHUNK = 1 << 20


@dataclass(slots=True)
class CompactReport:
    archived: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    summarized: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    dry_run: bool = False  # what would be done; nothing was changed

    def as_dict(self) -> dict[str, object]:
        return {"archived": self.archived, "deleted": self.deleted,
                "summarized": self.summarized, "cleaned": self.cleaned, "dry_run": self.dry_run}


@contextlib.contextmanager
def _no_swap_lock(paths: Sequence[Path]) -> Iterator[None]:
    yield


def age_days(day: str, now: datetime) -> int:
    """Whole UTC days between `day` and `now`'s UTC day."""
    today = now.astimezone(timezone.utc).date()
    return (today - date.fromisoformat(day)).days


def summarize(day: str, path: Path) -> dict[str, object]:
    """The §6 summary of one day file: counts by type, agent, severity, and the first/last ts."""
    by_type: Counter[str] = Counter()
    by_agent: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    first = last = None
    count = 0
    for event in parse_lines(iter_lines(path), ReadStats()):
        count += 1
        by_type[str(event.get("type"))] += 1
        by_severity[str(event.get("severity", "info"))] += 1
        if event.get("agent") is not None:
            by_agent[str(event["agent"])] += 1
        ts = event.get("ts")
        if isinstance(ts, str):
            first = ts if first is None or ts < first else first
            last = ts if last is None or ts > last else last
    return {"day": day, "count": count, "by_type": dict(sorted(by_type.items())),
            "by_agent": dict(sorted(by_agent.items())), "by_severity": dict(sorted(by_severity.items())),
            "first_ts": first, "last_ts": last}


def _write_summary(layout: Layout, day: str, source: Path) -> None:
    atomic_write(layout.summary(day), orjson.dumps(summarize(day, source), option=orjson.OPT_INDENT_2))


def _gzip_to_tmp(raw: Path, tmp: Path) -> int:
    """Compress the complete lines of `raw` into `tmp` (fsynced); returns the raw size it covered."""
    covered = 0
    with open(tmp, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as zipped:
            for line in iter_lines(raw):
                zipped.write(line + b"\n")
                covered += len(line) + 1
        out.flush()
        os.fsync(out.fileno())
    return covered


def compact(layout: Layout, now: datetime, raw_days: int = 7, delete_days: int = 30,
            swap: Swap = _no_swap_lock, dry_run: bool = False) -> CompactReport:
    """Apply retention to every day in the store as of `now` (`dry_run`: only report what it would do).

    `swap(paths)` is held while a day's files are replaced; the live writer passes one that pauses its
    commits and drops its handles on those paths, so appends may go on during the compression itself.
    """
    report = CompactReport(dry_run=dry_run)
    if not layout.events_dir.is_dir():
        return report
    for folder in (layout.archive_dir, layout.summaries_dir):
        if not dry_run:
            folder.mkdir(exist_ok=True)
        for name in os.listdir(folder) if folder.is_dir() else ():
            if name.endswith(".tmp"):  # left by an interrupted run; never a complete file
                if not dry_run:
                    (folder / name).unlink(missing_ok=True)
                report.cleaned.append(str(folder / name))
    for day in layout.days():
        age = age_days(day, now)
        raw, archive = layout.raw(day), layout.archive(day)
        if age >= delete_days:
            source = layout.source(day)
            if source is not None:
                report.summarized.append(day)
            report.deleted.append(day)
            if not dry_run:
                _delete_day(layout, day, source, swap)
        elif age >= raw_days and raw.exists():
            resumed = archive.exists()  # stopped after the rename: the archive already holds the raw lines
            if not resumed:
                report.summarized.append(day)
            report.archived.append(day)
            if dry_run:
                continue
            if resumed:
                with swap([raw, archive]):
                    raw.unlink()
                fsync_dir(layout.events_dir)
            else:
                _archive_day(layout, day, swap)
    return report


def _delete_day(layout: Layout, day: str, source: Path | None, swap: Swap) -> None:
    """Summarize (late events included), then delete the day's raw file and archive."""
    raw, archive = layout.raw(day), layout.archive(day)
    if source is not None:
        _write_summary(layout, day, source)
    with swap([raw, archive]):
        raw.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
    fsync_dir(layout.events_dir)
    fsync_dir(layout.archive_dir)


def _archive_day(layout: Layout, day: str, swap: Swap) -> None:
    raw, archive = layout.raw(day), layout.archive(day)
    tmp = archive.with_name(archive.name + ".tmp")
    _write_summary(layout, day, raw)
    for _ in range(3):  # a late event may land meanwhile: compress again so none is left behind
        covered = _gzip_to_tmp(raw, tmp)
        with swap([raw, archive]):
            if raw.stat().st_size == covered:
                os.replace(tmp, archive)
                fsync_dir(layout.archive_dir)
                raw.unlink()
                fsync_dir(layout.events_dir)
                return
    with swap([raw, archive]):  # still busy: finish with appends paused
        _gzip_to_tmp(raw, tmp)
        os.replace(tmp, archive)
        fsync_dir(layout.archive_dir)
        raw.unlink()
        fsync_dir(layout.events_dir)
