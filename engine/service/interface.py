"""What the HTTP API uses of the engine, and nothing more.

The API depends on this protocol, not on `engine.service.app.Engine`: the engine can be rebuilt inside
without touching the edge, and the edge is tested against a small fake.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.config import Config
    from engine.controls.gate import Controls
    from engine.controls.manual import ManualActions
    from engine.intake import Intake
    from engine.live.hub import Hub
    from engine.reactor.controls import RunControls
    from engine.reactor.records import RunStore
    from engine.service.metrics import Metrics


class EngineAPI(Protocol):
    """Read by the handlers per request; `host` and `config.raw["server"]` are read once, at `build_app`."""

    host: str  # the bind address: a loopback bind turns the Host-header (DNS-rebinding) guard on
    token: str | None
    config: Config
    stopping: bool
    intake: Intake
    metrics: Metrics
    events_dir: Path
    runs: RunStore
    run_controls: RunControls  # cancel, rerun, approve/deny (engine/reactor/controls.py)
    hub: Hub  # the /ws fan-out (engine/live)
    controls: Controls  # silences, pause, runtime disables, maintenance windows (engine/controls)
    manual: ManualActions  # manual restarts and triggers, budget and breaker resets

    def overloaded(self) -> tuple[str, int] | None:
        """(why, retry after seconds) while more events wait to be decided than `server.max_undecided`;
        the engine counts the refusal (`aios_events_refused_total{reason="overload"}`)."""

    def health(self) -> dict[str, Any]: ...

    def agents_view(self) -> list[dict[str, Any]]: ...

    def playbooks_view(self) -> dict[str, Any]: ...

    def problems_view(self, open_only: bool) -> list[dict[str, Any]]:
        """Problem summaries, newest first (docs/problems.md)."""

    def problem(self, problem_id: str) -> dict[str, Any] | None:
        """One problem with its timeline; None when unknown."""

    def score_view(self, agent: str | None) -> list[dict[str, Any]]:
        """Each agent's score, components, weights and trend (docs/score.md); only `agent` when given."""

    async def feedback(self, body: Any) -> dict[str, Any]:
        """Store an operator's label; FeedbackError (with a JSON pointer) for bad input."""

    async def tune(self, dry_run: bool, revert: bool) -> dict[str, Any]:
        """A weight tuning run (or the revert of the last one) and its report."""

    def render_metrics(self) -> tuple[bytes, str]:
        """The Prometheus text and its content type."""

    async def reload(self) -> dict[str, Any]: ...

    async def rollback(self, run_id: str, force: bool) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200, 404, 409 or 422."""

    async def compact(self, dry_run: bool) -> dict[str, Any]:
        """The compaction report; with `dry_run`, what would be done, with nothing changed."""
