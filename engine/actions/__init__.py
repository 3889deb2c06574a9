"""The action kinds (contract §2), one module each; `ACTIONS` maps a playbook's `action:` to its instance.

The registry is built on first use (PEP 562 `__getattr__`) rather than at import: every `python` step
runs `python -m engine.actions.python_child`, which imports this package, and should not pay for
aiohttp and psutil. Actions hold no state, so one instance of each serves every run.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.actions.base import Action

KINDS = ("shell", "http", "emit", "restart_agent", "signal", "wait_for", "write_file", "compact", "python")


@functools.cache
def _registry() -> dict[str, Action]:
    from engine.actions import compact, emit, http, python, restart_agent, shell, signal, wait_for, write_file

    actions = (shell.Shell(), http.Http(), emit.Emit(), restart_agent.RestartAgent(), signal.Signal(),
               wait_for.WaitFor(), write_file.WriteFile(), compact.Compact(), python.Python())
    return {action.kind: action for action in actions}


def __getattr__(name: str) -> Any:
    if name == "ACTIONS":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_action(kind: str) -> Action:
    """The action for `kind`; ActionError naming the known kinds otherwise."""
    from engine.actions.base import ActionError

    try:
        return _registry()[kind]
    except KeyError:
        raise ActionError(f"unknown action {kind!r} (known: {', '.join(KINDS)})") from None
