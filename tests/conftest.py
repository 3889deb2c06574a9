"""Shared test helpers: run the real CLI in a child process, build events without the validator."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# fixtures: `demo` and `coder_engine` (real engine processes with demo agents), `browser` (headless chromium)
pytest_plugins = ["process_harness", "browser_harness"]

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "bin" / "aios-engine")]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[str]:
    """`aios-engine ARGS` as a user runs it (in `env`, default this process's environment); returns the
    finished process (never raises on exit code)."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def make_event(event_id: str, ts: str, type_: str = "agent.heartbeat", agent: str | None = "coder",
               **data: Any) -> dict[str, Any]:
    """A stored-form event (as the validator would produce it)."""
    event = {"id": event_id, "ts": ts, "type": type_, "source": "test", "host": "h", "severity": "info",
             "data": data}
    if agent:
        event["agent"] = agent
    return event


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
