"""The action kinds (contract §2), one module each, named for the kind; `ACTIONS` maps a playbook's
`action:` to its instance. The kinds are the playbook schema's `$defs/action` enum: adding a kind is a
schema entry and a module `engine/actions/<kind>.py` whose Action class has `kind = "<kind>"`.

The registry is built on first use (PEP 562 `__getattr__`) rather than at import: every `python` step
runs `python -m engine.actions.python_child`, which imports this package, and should not pay for
aiohttp and psutil. Actions hold no state, so one instance of each serves every run.
"""
from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.actions.base import Action


@functools.cache
def kinds() -> tuple[str, ...]:
    """The action kinds, in the schema's order."""
    from engine.schemas import load_schema

    return tuple(load_schema("playbook")["$defs"]["action"]["enum"])


def _load(kind: str) -> Action:
    module = importlib.import_module(f"engine.actions.{kind}")
    return next(value() for value in vars(module).values()
                if isinstance(value, type) and value.__module__ == module.__name__ and getattr(value, "kind", None) == kind)


@functools.cache
def _registry() -> dict[str, Action]:
    return {kind: _load(kind) for kind in kinds()}


def __getattr__(name: str) -> Any:
    if name == "ACTIONS":
        return _registry()
    if name == "KINDS":
        return kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_action(kind: str) -> Action:
    """The action for `kind`; ActionError naming the known kinds otherwise."""
    from engine.actions.base import ActionError

    try:
        return _registry()[kind]
    except KeyError:
        raise ActionError(f"unknown action {kind!r} (known: {', '.join(kinds())})") from None
