"""`signal`: send a signal to an agent's process. Names are accepted as `TERM`, `SIGTERM` or `term`
and checked against the platform's signals before anything is sent."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.osutil.proctree import signal_from_name


class Signal(Action):
    kind = "signal"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        agent = get_arg(args, "agent", str)
        try:
            sig = signal_from_name(get_arg(args, "signal", str, "TERM"))
        except ValueError as exc:
            raise ActionError(str(exc)) from None
        if not services.agents.known(agent):
            raise ActionError(f"agent {agent!r} is not declared in the config")
        detail = {"agent": agent, "signal": sig.name}
        try:
            outcome = await services.agents.signal(agent, sig.name)
        except OSError as exc:
            return StepResult(ok=False, error=f"cannot signal agent {agent!r}: {exc}", detail=detail)
        return StepResult(ok=True, detail={**detail, **outcome})
