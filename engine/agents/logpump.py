"""The log pump: copies one agent's output from a pipe into `data/agents/<name>.log`, under a size cap.

Started by the engine beside each agent (see `engine/agents/local.py`) as
`python -I -S logpump.py MAX_BYTES KEEP LOG`, with the read end of the agent's stdout+stderr pipe as its
stdin, in a session of its own and with the agent's `AIOS_RUN_MARK`, so that it outlives the engine like
the agent does and dies with the agent's tree on a restart. The engine is never in the middle of the pipe:
an engine restart cannot give the agent EPIPE. The design is daemontools' multilog / runit's svlogd:

* a write that would take the log past MAX_BYTES first rotates it by rename (`LOG.1` → `LOG.2`…, at most
  KEEP old files, then `LOG` → `LOG.1`), cutting at the last newline that fits, so no file ever passes
  the cap and lines stay whole (but a line longer than CHUNK or than the cap, which is split);
* any error writing, rotating or opening (a full disk above all) empties the current file in place, drops
  output (counted) and writes one marker line when it can; it tries again at most once a second and writes
  again once the filesystem has `RESUME_CAPS` × MAX_BYTES free, with a marker line saying what was dropped;
* it blocks on the pipe (no polling), holds at most two chunks in memory, ignores SIGTERM, SIGINT and SIGHUP,
  and ends when the last writer of the pipe (the agent and whatever inherited its output) is gone, so an
  agent's last words on a restart are kept.

Standard library only and no engine import: it runs with `-I -S` (no site-packages, no PYTHON* variables).
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable

CHUNK = 65536  # the most read from the pipe at a time (the pipe's own default capacity)
RETRY_S = 1.0  # while failing: how often to look whether writing can resume
RESUME_CAPS = 2  # writing resumes once the filesystem has this many caps free
PARTIAL_S = 0.2  # how long an unfinished line waits for its end before it is written as it is
MODE = 0o644


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class LogFile:
    """`path` under `max_bytes`, rotated by rename into `keep` older files. Every method may raise OSError;
    `size` and `written` stay true whatever was written before an error."""

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.fd: int | None = None
        self.size = 0
        self.written = 0  # bytes written since the start, for the pump's drop count

    def open(self) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
            self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first whenever it would pass the cap: at its last newline that fits, or
        in the middle of a line longer than the whole cap."""
        self.open()
        pos = 0
        while pos < len(data):
            room = self.max_bytes - self.size
            end = len(data)
            if end - pos > room:
                newline = data.rfind(b"\n", pos, pos + room)
                if newline >= 0:
                    end = newline + 1
                elif self.size > 0:
                    self.rotate()
                    continue
                else:
                    end = pos + room
            pos = self._append(data, pos, end)
            if pos < len(data):
                self.rotate()

    def _append(self, data: bytes, pos: int, end: int) -> int:
        assert self.fd is not None
        while pos < end:
            count = os.write(self.fd, data[pos:end])  # a short write is followed by the error, if any
            pos += count
            self.size += count
            self.written += count
        return pos

    def rotate(self) -> None:
        """`LOG.k-1` → `LOG.k` … `LOG` → `LOG.1`, all by rename, then a fresh `LOG` (emptied in place when
        `keep` is 0)."""
        if self.keep == 0:
            self.empty()
            return
        for index in range(self.keep, 0, -1):
            try:
                os.replace(f"{self.path}.{index - 1}" if index > 1 else self.path, f"{self.path}.{index}")
            except FileNotFoundError:  # fewer old files so far, or someone removed the log
                pass
        self.close()
        self.open()

    def empty(self) -> int:
        """Truncate the current file in place (its space goes back to the disk); the bytes it held."""
        if self.fd is None:
            return 0
        held = self.size
        os.ftruncate(self.fd, 0)
        self.size = 0
        return held

    def free_bytes(self) -> int:
        self.open()
        assert self.fd is not None
        info = os.fstatvfs(self.fd)
        return info.f_bavail * info.f_frsize

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class Pump:
    """Feeds chunks into a LogFile and rides out its errors: output is dropped and counted, never queued.
    `clock` (monotonic seconds) times the retries."""

    def __init__(self, log: LogFile, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self.failing_since: str | None = None  # when the current failure began (UTC), for the marker line
        self.retry_at = 0.0
        self.dropped = 0  # bytes dropped in the current failure

    def feed(self, data: bytes) -> None:
        if self.failing_since is not None and not self._recovered():
            self.dropped += len(data)
            return
        before = self.log.written
        try:
            self.log.write(data)
        except OSError as exc:
            self.dropped += len(data) - (self.log.written - before)
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """Give the current file's space back and say so in it, when that much can be written."""
        if self.failing_since is None:
            self.failing_since = stamp()
        self.retry_at = self.clock() + RETRY_S
        try:
            emptied = self.log.empty()
            self.log.write(f"--- {self.failing_since} logpump: cannot write {os.path.basename(self.log.path)} "
                           f"({exc.strerror or exc}): emptied it ({emptied} bytes); dropping output until "
                           f"{RESUME_CAPS * self.log.max_bytes} bytes are free\n".encode())
        except OSError:
            pass

    def _recovered(self) -> bool:
        """At most once every RETRY_S: whether there is room again; if so, the marker line is written."""
        now = self.clock()
        if now < self.retry_at:
            return False
        self.retry_at = now + RETRY_S
        try:
            if self.log.free_bytes() < RESUME_CAPS * self.log.max_bytes:
                return False
            self.log.write(f"--- {stamp()} logpump: writing again; dropped {self.dropped} bytes since "
                           f"{self.failing_since}\n".encode())
        except OSError:
            return False
        self.failing_since, self.dropped = None, 0
        return True


def pump(source: int, log: LogFile, clock: Callable[[], float] = time.monotonic) -> None:
    """Copy `source` into `log` until end of file. An unfinished line shorter than CHUNK waits up to
    PARTIAL_S for its end, so that a line written in pieces is not split by a rotation."""
    feeder = Pump(log, clock)
    partial = b""
    while True:
        if partial and not select.select([source], [], [], PARTIAL_S)[0]:
            feeder.feed(partial)
            partial = b""
        data = os.read(source, CHUNK)
        if not data:
            break
        data = partial + data
        end = data.rfind(b"\n") + 1
        if len(data) - end >= CHUNK:
            end = len(data)
        partial = data[end:]
        if end:
            feeder.feed(data[:end])
    if partial:
        feeder.feed(partial)
    log.close()


def main(argv: list[str]) -> int:
    try:
        max_bytes, keep, path = int(argv[0]), int(argv[1]), argv[2]
        if max_bytes < 1 or keep < 0 or len(argv) != 3:
            raise ValueError
    except (IndexError, ValueError):
        print("usage: logpump.py MAX_BYTES KEEP LOG (MAX_BYTES >= 1, KEEP >= 0)", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pump(sys.stdin.fileno(), LogFile(path, max_bytes, keep))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
