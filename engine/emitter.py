"""The engine's own events: stored through intake like any other, with their causes in `chain`."""
from __future__ import annotations

from typing import Any

from engine.intake import Intake

CHAIN_LIMIT = 16  # the schema's bound: the most recent causes are kept


class EngineEmitter:
    """`emit(type, data, cause, severity)`: an engine event about `cause` (same agent, chain extended)."""

    def __init__(self, intake: Intake, source: str = "engine.reactor") -> None:
        self._intake = intake
        self._source = source

    async def emit(self, type_: str, data: dict[str, Any], cause: dict[str, Any] | None = None,
                   severity: str = "info", source: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"type": type_, "source": source or self._source, "severity": severity, "data": data}
        if cause is not None:
            if cause.get("agent"):
                event["agent"] = cause["agent"]
            chain = [*(cause.get("chain") or []), cause["id"]] if cause.get("id") else list(cause.get("chain") or [])
            if chain:
                event["chain"] = chain[-CHAIN_LIMIT:]
        stored = await self._intake.submit_one(event)
        return stored
