"""`restart_agent`: kill an agent's whole process tree and start it again (through the supervisor's
AgentControl, so that restarts only ever come from playbooks)."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg


class RestartAgent(Action):
    kind = "restart_agent"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        agent = get_arg(args, "agent", str)
        if not services.agents.known(agent):
            raise ActionError(f"agent {agent!r} is not declared in the config")
        try:
            outcome = await services.agents.restart(agent)
        except OSError as exc:
            return StepResult(ok=False, error=f"cannot restart agent {agent!r}: {exc}", detail={"agent": agent})
        return StepResult(ok=True, detail={"agent": agent, **outcome})
