"""Notifications (docs/notifications.md): problem events and `notify` steps turned into messages to people.

`base.py` is the target kind interface; one file per kind (`apprise_target.py`); `settings.py` reads the
config section; `notifier.py` groups, delivers, retries and records; `outbox.py` keeps what is undelivered
across a restart. `build_targets` maps a target's `kind:` in aios.yaml to its class.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from engine.notify.base import NotifyError, Target


def _kinds() -> dict[str, type[Target]]:
    from engine.notify.apprise_target import AppriseTarget  # noqa: PLC0415 - Apprise costs 0.1 s to import

    return {AppriseTarget.kind: AppriseTarget}


def target_problems(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON pointer in the section, message) for each target part its kind could not use (config check)."""
    if not section.get("targets"):
        return []
    kinds, out = _kinds(), []
    for name, spec in section["targets"].items():
        kind = kinds.get(spec.get("kind"))  # the schema refuses an unknown kind
        if kind is not None:
            out += [(f"/targets/{name}{pointer}", message) for pointer, message in kind.spec_problems(spec)]
    return out


def build_targets(section: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Target]:
    """The configured targets, built (URLs parsed, `${VAR}` expanded); NotifyError naming the first bad one."""
    if not section["targets"]:
        return {}
    kinds = _kinds()
    env = os.environ if environ is None else environ
    out = {}
    for name, spec in section["targets"].items():
        kind = kinds.get(spec["kind"])
        if kind is None:
            raise NotifyError(f"notifications.targets.{name}: unknown kind {spec['kind']!r}")
        out[name] = kind(name, spec, env)
    return out
