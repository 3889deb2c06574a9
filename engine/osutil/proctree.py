"""Finding and killing everything a step (or an agent) started, including what tried to get away.

A process tree is not enough: a grandchild that calls `setsid()` leaves the process group, and when its
parent exits it is reparented to init and is no longer anyone's descendant. So every process the engine
starts carries a marker in its environment (`AIOS_RUN_MARK`), which all its descendants inherit; a scan of
`/proc` for that marker finds the runaways. Three nets together: psutil descendants, process-group
members, marked processes. The engine and its ancestors are never signalled, whatever the nets catch.

Pid reuse: a pid alone may name a newer, unrelated process; where the caller holds the create_time of the
process it started, the root is trusted only when the create_time still matches.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

MARK_ENV = "AIOS_RUN_MARK"
KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL
_REAP_WAIT_S = 1.0  # how long to wait for SIGKILLed processes to disappear
_POLL_S = 0.02


def _protected() -> set[int]:
    """The engine and its ancestors: no net may catch them (an engine started by a step carries a mark)."""
    me = psutil.Process()
    return {me.pid, *(parent.pid for parent in me.parents())}


def _root(pid: int, create_time: float | None) -> tuple[list[psutil.Process], bool]:
    """The root and its descendants, and whether the group with id `pid` is still the root's.

    When the process at `pid` has another create_time, the pid was reused: neither it nor its group is
    ours. When no process has the pid, a group with that id can only be the root's orphans (the kernel
    does not reuse a pid that still names a process group).
    """
    try:
        root = psutil.Process(pid)
        if create_time is not None and root.create_time() != create_time:
            return [], False
    except psutil.NoSuchProcess:
        return [], True
    except psutil.Error:
        return [], False
    try:
        return [root, *root.children(recursive=True)], True
    except psutil.Error:  # a zombie root has no readable children; its group and marks still count
        return [root], True


def _scan(group: int | None, marker: str | None) -> list[psutil.Process]:
    """Processes in process group `group` or carrying `marker`; unreadable processes are skipped."""
    found = []
    for proc in psutil.process_iter():
        try:
            if group is not None and os.getpgid(proc.pid) == group:
                found.append(proc)
            elif marker is not None and proc.environ().get(MARK_ENV) == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _unique(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """First of each pid, without the engine and its ancestors."""
    protected = _protected()
    seen: dict[int, psutil.Process] = {}
    for proc in procs:
        if proc.pid not in protected:
            seen.setdefault(proc.pid, proc)
    return list(seen.values())


def find_tree(pid: int, marker: str | None = None, create_time: float | None = None) -> list[psutil.Process]:
    """The process `pid`, its descendants, the members of its process group, and every marked process."""
    tree, own_group = _root(pid, create_time)
    return _unique([*tree, *_scan(pid if own_group else None, marker)])


def find_marked(marker: str) -> list[psutil.Process]:
    """Every process whose environment carries `marker`."""
    return _unique(_scan(None, marker))


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is dead; it only waits for its parent to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(procs: Iterable[psutil.Process], sig: int) -> set[int]:
    """Signal each live process (psutil refuses a pid that was reused); the pids actually signalled."""
    sent = set()
    for proc in procs:
        if not _alive(proc):
            continue
        try:
            proc.send_signal(sig)
            sent.add(proc.pid)
        except psutil.Error:
            continue
    return sent


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Poll until none of `procs` is alive or `timeout` passes. psutil.wait_procs is not used: it reaps
    the engine's own children behind asyncio's back and never sees a zombie as gone."""
    deadline = time.monotonic() + timeout
    while any(_alive(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(_POLL_S)


def _terminate(find: Callable[[], list[psutil.Process]], grace_s: float) -> list[int]:
    """SIGTERM (and SIGCONT, so a stopped process can act on it), then SIGKILL whatever is left after
    `grace_s`, found afresh so that processes forked meanwhile are caught too. Blocking: call it from a
    thread in async code."""
    procs = find()
    killed = _send(procs, signal.SIGTERM)
    _send(procs, signal.SIGCONT)
    _wait_dead(procs, grace_s)
    survivors = [proc for proc in find() if _alive(proc)]
    killed |= _send(survivors, signal.SIGKILL)
    _wait_dead(survivors, _REAP_WAIT_S)
    return sorted(killed)


def kill_tree(pid: int, marker: str | None = None, grace_s: float = KILL_GRACE_S,
              create_time: float | None = None) -> list[int]:
    """Kill everything `find_tree` finds; the pids signalled."""
    return _terminate(lambda: find_tree(pid, marker, create_time), grace_s)


def kill_marked(marker: str, grace_s: float = KILL_GRACE_S) -> list[int]:
    """Kill every process carrying `marker` (crash recovery: the runner journals markers); the pids signalled."""
    return _terminate(lambda: find_marked(marker), grace_s)


def describe(pid: int) -> dict[str, Any] | None:
    """`{pid, create_time, cmdline}` for the journal (create_time tells a reused pid apart); None if gone."""
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
    except psutil.Error:
        return None
    try:
        cmdline = proc.cmdline()
    except psutil.Error:  # a zombie keeps its create_time but no longer its command line
        cmdline = []
    return {"pid": pid, "create_time": created, "cmdline": cmdline}


def signal_from_name(name: str) -> signal.Signals:
    """`TERM`, `SIGTERM` or `term` → signal.SIGTERM; ValueError naming the accepted form otherwise."""
    text = name.strip().upper() if isinstance(name, str) else ""
    try:
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}: use a name such as TERM, HUP or KILL") from None
