"""What every action kind is handed, and what it hands back.

An action is a small class, one file per kind, named by the kind (`shell.py` holds `shell`). The runner
renders the step's `with` templates first, so an action receives final values; it then calls the
action with two frozen context objects: `RunInfo` (which run, which step, the triggering event) and
`Services` (the only things an action may touch). Timeouts are the runner's: it cancels the action's
coroutine, and actions that start processes kill their whole tree on cancellation (see `process.py`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import orjson

OUTPUT_LIMIT = 1 << 20  # bytes of stdout/stderr kept per step; the record keeps a shorter tail


class AgentControl(Protocol):
    """How actions act on agents; the supervisor implements it (contract §7).

    `restart` and `signal` raise OSError when the process cannot be started or signalled (a command that
    does not exist, an agent that is not running); the actions turn that into a failed step.
    """

    def known(self, name: str) -> bool: ...

    async def restart(self, name: str) -> dict[str, Any]: ...

    async def signal(self, name: str, signal_name: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Which run and step this is; `event` is the event that started the run."""

    run_id: str
    playbook: str
    step: str
    attempt: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Services:
    """What an action may use. Everything with side effects on the engine goes through here."""

    data_dir: Path
    # emit(type, data, severity, agent) -> the stored event (chain and source filled in by the engine)
    emit: Callable[[str, dict[str, Any], str, str | None], Awaitable[dict[str, Any]]]
    agents: AgentControl
    # wait_for(type, where, within_s) -> the first matching event since the step started, or None
    wait_for: Callable[[str, dict[str, Any], float], Awaitable[dict[str, Any] | None]]
    # compact() -> retention report, run now
    compact: Callable[[], Awaitable[dict[str, Any]]]
    # track(pid): a process this step started, recorded so a crash or a timeout can kill its tree
    track: Callable[[int], None]
    clock: Callable[[], float]
    python: str = "python3"  # the engine's interpreter, for `python` steps
    # ask(message, timeout_s) -> {"approved", "by", "reason", "expires_at"}: a person's answer (`approve`)
    ask: Callable[[str, float], Awaitable[dict[str, Any]]] | None = None


@dataclass(slots=True)
class StepResult:
    """The outcome of one try of a step. `detail` holds what the run record shows (argv, url, status…)."""

    ok: bool
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class ActionError(Exception):
    """A step that cannot run as written (bad argument at run time); the step fails with this message."""


_REQUIRED: Any = object()


def get_arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """`args[name]`, checked against `kind` after rendering (a template may have produced anything).

    ActionError naming the field when it is absent and required, or of the wrong type; bool is never
    taken for an int.
    """
    if name not in args or args[name] is None:
        if default is _REQUIRED:
            raise ActionError(f"`{name}` is required")
        return default
    value = args[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ActionError(f"`{name}` must be a {wanted}, not {type(value).__name__} {value!r}")
    return value


def scalar_text(value: Any, where: str) -> str:
    """One argv element, env value or header: strings as they are, numbers and booleans as JSON
    (`3`, `true`); never null, a list or a mapping (one would have to be invented, split or joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return orjson.dumps(value).decode()
    raise ActionError(f"{where} must be a single value, not a {type(value).__name__}: {value!r}")


class Action(ABC):
    """One kind of step. `kind` is the name playbooks use in `action:`."""

    kind: ClassVar[str]
    # True for a step that waits for a person (`approve`): the runner applies no step timeout (the action
    # has its own) and no retries (an answer is final).
    asks_a_person: ClassVar[bool] = False

    @abstractmethod
    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        """Do the step once with rendered `args`; return its result (ok or not), or raise ActionError.

        Must be cancellable: on cancellation, undo nothing but stop everything it started.
        """
