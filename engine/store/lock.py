"""One writer per data directory: an advisory `flock` on `data/.lock`.

The kernel drops the lock when the holder dies (even by SIGKILL), so a crash never leaves a stale lock.
The holder writes its pid and command into the file so a refused writer can say who holds it.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path


class DataDirLocked(RuntimeError):
    """Another process writes to this data directory."""


class DataLock:
    """Exclusive lock on a data directory; use as a context manager or call acquire/release."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> DataLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.data_dir} is in use by {holder}; "
                "stop that process, or talk to a running engine with --url"
            ) from None
        os.ftruncate(fd, 0)
        command = " ".join(os.path.basename(a) for a in sys.argv[:2]) or "python"
        os.pwrite(fd, f"pid {os.getpid()} ({command}, since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})\n"
                  .encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DataLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
