"""The one way actions start processes (`shell`, `python`): never a shell, output capped, the tree killed.

The child starts in its own session with `AIOS_RUN_MARK=<run_id>/<step>/<attempt>` in its environment;
every descendant inherits the mark, so when the runner's timeout cancels the step, the whole tree dies
with it: the child, its descendants, its process group and any marked runaway that called `setsid()`
(see `engine.osutil.proctree`). The same mark lets the runner kill leftovers after a crash.

Output is pushed to a protocol rather than pulled from streams: up to OUTPUT_LIMIT bytes of each stream
are kept, the rest is read and dropped, so a chatty child never blocks on a full pipe. When the child
exits but a background process it left still holds the pipes open, the step does not wait for it: it
ends after DRAIN_S and our ends of the pipes are closed.
"""
from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions.base import OUTPUT_LIMIT, RunInfo, Services, StepResult
from engine.osutil import proctree

DRAIN_S = 0.5  # after the child exits, how long its output may take to reach end-of-file
_EXIT_WAIT_S = 1.0  # after a kill, how long to wait for the child watcher to notice the exit


def run_mark(run: RunInfo) -> str:
    """The marker every process of this try of the step carries (the runner journals it)."""
    return f"{run.run_id}/{run.step}/{run.attempt}"


def not_started(exc: OSError, program: str, detail: dict[str, Any]) -> StepResult:
    """The failed step of a process that could not start (missing program or cwd, no permission)."""
    where = f": {exc.filename}" if exc.filename else ""
    return StepResult(ok=False, error=f"cannot start {program!r}: {exc.strerror}{where}", detail=detail)


@dataclass(frozen=True, slots=True)
class Completed:
    """A child that exited: its code (negative: the signal that killed it), output and timing."""

    pid: int
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    truncated: tuple[str, ...] = ()  # the streams cut at OUTPUT_LIMIT
    held: bool = False  # a background process still held the output pipes when the child exited

    @property
    def failure(self) -> str | None:
        """Why the exit counts as a failure, or None for exit code 0."""
        if self.exit_code == 0:
            return None
        if self.exit_code < 0:
            return f"killed by {signal.Signals(-self.exit_code).name}"
        return f"exit code {self.exit_code}"

    def detail(self) -> dict[str, Any]:
        """What the run record shows about the process; the optional keys only when they happened."""
        out: dict[str, Any] = {"pid": self.pid, "exit_code": self.exit_code, "duration_ms": self.duration_ms}
        if self.exit_code < 0:
            out["signal"] = signal.Signals(-self.exit_code).name
        if self.truncated:
            out["truncated"] = list(self.truncated)
        if self.held:
            out["output_held"] = True
        return out


class _Capture(asyncio.SubprocessProtocol):
    """Keeps the first OUTPUT_LIMIT bytes of stdout (fd 1) and stderr (fd 2) and notes the exit."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kept = {1: bytearray(), 2: bytearray()}
        self.cut: set[int] = set()
        self.exited = loop.create_future()  # the child exited (the watcher reaped it)
        self.closed = loop.create_future()  # ... and every pipe reached end-of-file

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.kept[fd]
        room = OUTPUT_LIMIT - len(kept)
        if len(data) > room:
            self.cut.add(fd)
        if room > 0:
            kept += data[:room]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self, fd: int) -> str:
        return self.kept[fd].decode("utf-8", "replace")


async def run_process(argv: Sequence[str], run: RunInfo, services: Services, *,
                      env: Mapping[str, str] | None = None, cwd: str | None = None,
                      stdin: bytes | None = None, grace_s: float = proctree.KILL_GRACE_S) -> Completed:
    """Run `argv` (no shell) to its exit; `env` is laid over the engine's environment.

    OSError when it cannot start (missing program or cwd). On cancellation or any other exception the
    whole tree is killed (SIGTERM, SIGKILL after `grace_s`) before the exception propagates.
    """
    mark = run_mark(run)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    transport, capture = await loop.subprocess_exec(
        lambda: _Capture(loop), *argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {}), proctree.MARK_ENV: mark}, cwd=cwd, start_new_session=True)
    pid = transport.get_pid()
    known: dict | None = None
    try:
        # The create_time that tells our child from a later holder of its pid (read off the event loop).
        known = await asyncio.to_thread(proctree.describe, pid)
        services.track(pid)
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            pipe.write(stdin)
            pipe.close()
        await capture.exited
        done, _ = await asyncio.wait({capture.closed}, timeout=DRAIN_S)
    except BaseException:
        kill = (functools.partial(proctree.kill_tree, pid, mark, grace_s, known["create_time"]) if known
                else functools.partial(proctree.kill_marked, mark, grace_s))
        await asyncio.to_thread(kill)
        # Closing the transport before the watcher has reaped the child would reap it behind its back.
        await asyncio.wait({capture.exited}, timeout=_EXIT_WAIT_S)
        raise
    finally:
        transport.close()
    return Completed(
        pid=pid,
        exit_code=transport.get_returncode(),
        stdout=capture.text(1).removesuffix("\n"),
        stderr=capture.text(2),
        duration_ms=round((time.monotonic() - started) * 1000),
        truncated=tuple(name for fd, name in ((1, "stdout"), (2, "stderr")) if fd in capture.cut),
        held=not done,
    )
