"""disk-full: the engine's data directory, on a small filesystem of its own (a tmpfs, say), is filled until
writes fail, with old days present. The store gives up its reserve for the engine's own events and answers
outside events 503 + Retry-After; `resource.disk_full` still reaches the matcher; the shipped playbook runs
retention (`compact`), which archives the old days; the store takes its reserve back and intake resumes by
itself. Nothing acknowledged is lost and no file is damaged (the runner audits the store).

Refused unless the data directory's filesystem is small (`MAX_FS_BYTES`) and its reserve small beside it:
this fills the filesystem for real."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Any

from engine.chaos.engine_api import ChaosError
from engine.chaos.scenarios.base import Scenario
from engine.events import format_ts

MAX_FS_BYTES = 2 << 30
FULL_TRIES = 40  # batches posted after the fill, at most, to see intake refuse
OLD_SHARE = 0.3  # of the filesystem, in events of an old day: what retention frees (the alert clears below 85%)
OLD_AGE_DAYS = 10  # archived, not kept raw, by the default retention (7-29 days)
PAD = "x" * 900
BATCH = 500
CHUNK = 1 << 20


class DiskFull(Scenario):
    name = "disk-full"
    kinds = ("disk-full",)
    deadline_s = 180.0
    summary = "fill the data directory's small filesystem; the engine must free space and take events again"

    async def prepare(self) -> None:
        data = self.options.data_dir
        if data is None:
            raise ChaosError("disk-full needs --data DIR, the engine's data directory (on a small filesystem)")
        if not (data / "events").is_dir():
            raise ChaosError(f"{data} is not an engine's data directory (no events/ in it)")
        fs = os.statvfs(data)
        self.fs_bytes = fs.f_blocks * fs.f_frsize
        if self.fs_bytes > MAX_FS_BYTES:
            raise ChaosError(f"{data} is on a filesystem of {self.fs_bytes >> 20} MiB: disk-full fills it for real, "
                             f"so it must be at most {MAX_FS_BYTES >> 20} MiB (mount -t tmpfs -o size=64m tmpfs DIR)")
        reserve = data / ".reserve"
        self.reserve_bytes = reserve.stat().st_size if reserve.exists() else 0
        if self.reserve_bytes > 0.05 * self.fs_bytes:
            raise ChaosError(f"the {self.reserve_bytes >> 20} MiB reserve is over 5% of the {self.fs_bytes >> 20} MiB "
                             "filesystem: released, it would end the alert by itself (set store.reserve_mb lower)")
        self.filler = data / "chaos-filler"
        self.data = data

    def subject(self) -> dict[str, Any]:
        return {}  # disk-full problems are the host's

    async def inject(self) -> dict[str, Any]:
        old = await self._old_days()
        filled = await asyncio.to_thread(self._fill)
        written, answer = await self._until_refused()
        return {"filesystem_mb": self.fs_bytes >> 20, "old_events": old, "old_day": OLD_AGE_DAYS,
                "filler_mb": round(filled / 2**20, 1), "reserve_mb": round(self.reserve_bytes / 2**20, 1),
                "taken_while_full": written, "refused_with": answer}

    async def _until_refused(self) -> tuple[int, int | None]:
        """Post events until intake refuses them: the disk is full only once the last pages the store's files
        had begun are used up too (appends fit in them), and a slow probe may not get there before the engine
        frees space. (events taken meanwhile, the status that refused: 503; None when none did)."""
        written = 0
        for _ in range(FULL_TRIES):
            batch = [{"type": "chaos.fill", "source": "chaos.disk_full", "data": {"pad": PAD}}] * BATCH
            status, _ = await self.api.post_events(batch)
            if status != 202:
                return written, status
            written += BATCH
        return written, None

    async def _old_days(self) -> int:
        """Events of an old day worth `OLD_SHARE` of the filesystem: what retention can free."""
        ts = format_ts(time.time() - OLD_AGE_DAYS * 86400)
        count = int(self.fs_bytes * OLD_SHARE) // (len(PAD) + 200)
        for start in range(0, count, BATCH):
            batch = [{"type": "chaos.old", "source": "chaos.disk_full", "ts": ts, "data": {"n": n, "pad": PAD}}
                     for n in range(start, min(count, start + BATCH))]
            status, body = await self.api.post_events(batch)
            if status != 202:
                raise ChaosError(f"the engine refused the old day's events (HTTP {status}): {body}")
        return count

    def _fill(self) -> int:
        """Write the filler until the filesystem refuses, but never more than was free when it began: space
        the engine frees meanwhile (it may already be compacting) is left free, as after a real burst."""
        written, planned = 0, _free(self.data)
        chunk = b"\0" * CHUNK
        with open(self.filler, "wb", buffering=0) as file:  # unbuffered: a refused write is not retried at close
            try:  # all at once where the filesystem can (tmpfs): a sensor scan cannot land halfway and compact
                os.posix_fallocate(file.fileno(), 0, planned)  # first, so the disk never fills at all
                written = planned
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            while written < planned:
                try:
                    written += file.write(chunk[: max(4096, min(CHUNK, planned - written))]) or 0
                    os.fsync(file.fileno())
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return written

    async def verify(self) -> str | None:
        status, body = await self.api.post_events([{"type": "chaos.after", "source": "chaos.disk_full"}])
        if status != 202:
            return f"intake still refuses events after the problem resolved (HTTP {status}: {body})"
        return None

    async def cleanup(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.filler.unlink()


def _free(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize
