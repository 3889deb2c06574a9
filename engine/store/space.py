"""Disk space for the event store: a reserve file, and whether outside events are taken (contract §1, §5).

When the disk fills, the engine must still record what it does about it (`resource.disk_full`, the runs
and decisions that free space), while outside events get 503 + Retry-After. So the writer keeps
`data/.reserve` (`store.reserve_mb` MiB, allocated and fsynced at open). On ENOSPC it deletes the reserve:
the engine's own events use the space it held, outside events are refused. Once the free space is back
above `resume_bytes` (twice the reserve, at least 1 MiB) the reserve is allocated again and outside intake
resumes, without a new write being needed to notice (`EventWriter.poll_space`).
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from engine.osutil.files import fsync_dir

log = logging.getLogger("aios.store")
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_MIB = 1 << 20
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


def is_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk or quota is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


class SpaceGuard:
    """The reserve file and the `short` state (outside events refused) of one data directory.

    `reserve_mb=None` leaves an existing reserve alone (tools such as `emit --data` that hold the lock
    briefly); 0 means no reserve (a leftover one is deleted).
    """

    def __init__(self, data_dir: Path, reserve_mb: int | None) -> None:
        self.path = data_dir / ".reserve"
        self._data_dir = data_dir
        self.size = (reserve_mb or 0) * _MIB
        self._managed = reserve_mb is not None
        self.held = False
        self.short = False
        self.error: str | None = None
        self.resume_bytes = max(2 * self.size, _MIB)

    @property
    def reserve(self) -> str:
        """`held`, `released` (given up to a full disk) or `none` (no reserve configured)."""
        return "none" if not self.size else ("held" if self.held else "released")

    def open(self) -> None:
        """Allocate the reserve; a disk already too full for it starts `short`."""
        if not self._managed:
            return
        if not self.size:
            self.path.unlink(missing_ok=True)
            return
        try:
            stat = self.path.stat()
            if stat.st_size == self.size and stat.st_blocks * 512 >= self.size:
                self.held = True
                return
            self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            self._allocate()
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            self._go_short(f"no space for the {self.size >> 20} MiB reserve at open: {exc.strerror}")

    def on_full(self, exc: BaseException) -> bool:
        """A write hit ENOSPC: release the reserve for the engine's own events. True if it was held."""
        released = self.held
        if released:
            self.path.unlink(missing_ok=True)
            self.held = False
        self._go_short(f"disk full ({exc}); the reserve is {self.reserve}")
        return released

    def check(self) -> bool:
        """While short: when free space is back above `resume_bytes`, re-allocate the reserve and end the
        short state. Returns True when it ended now. A statvfs call: cheap enough for every commit."""
        if not self.short:
            return False
        free = self.free_bytes()
        if free < self.resume_bytes:
            return False
        if self.size and not self.held:
            try:
                self._allocate()
            except OSError as exc:
                if exc.errno not in FULL_ERRNOS:
                    raise
                return False
        self.short = False
        self.error = None
        log.warning("event store has space again (%d bytes free): outside events are taken again", free)
        return True

    def free_bytes(self) -> int:
        try:
            info = os.statvfs(self._data_dir)
        except OSError:
            return 0
        return info.f_bavail * info.f_frsize

    def _go_short(self, why: str) -> None:
        if not self.short:
            log.error("event store short of space: %s; outside events refused until %d bytes are free",
                      why, self.resume_bytes)
        self.short = True
        self.error = f"{why}; outside events are refused until {self.resume_bytes} bytes are free " \
                     f"({self.free_bytes()} now)"

    def _allocate(self) -> None:
        """Write the reserve for real (fallocate, else zeros) and fsync it; nothing is left on failure."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in _NO_FALLOCATE:
                    raise
                zeros = bytes(_MIB)
                for _ in range(0, self.size, _MIB):
                    os.write(fd, zeros)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        fsync_dir(self.path.parent)
        self.held = True
