"""`compact`: run the event store's retention now (archive and delete old days) to free disk space."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, RunInfo, Services, StepResult


class Compact(Action):
    kind = "compact"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        return StepResult(ok=True, detail=await services.compact())
