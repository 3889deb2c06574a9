"""What `run` refuses before it starts, and how its periodic jobs are set up."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import load_config
from engine.service.app import Engine, StartupError


def test_a_blank_token_in_aios_yaml_is_refused_at_start_even_on_loopback(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    (tmp_path / "aios.yaml").write_text("server: {token: '                    '}\n")  # 20 spaces: long, but blank
    with pytest.raises(StartupError, match="blank"):
        Engine(load_config(tmp_path / "aios.yaml"), port=0)


def test_a_short_aios_token_is_refused_at_start(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AIOS_TOKEN", "short-token")
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")
    with pytest.raises(StartupError, match="at least 16"):
        Engine(load_config(tmp_path / "aios.yaml"), port=0, host="0.0.0.0")


def test_the_daily_retention_runs_however_late_the_engine_gets_to_it(tmp_path: Path):
    """APScheduler's default misfire grace is 1 s: a stall at 00:10 would skip a whole day of retention."""
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")

    async def scenario():
        engine = Engine(load_config(tmp_path / "aios.yaml"), port=0)
        await engine.start()
        try:
            return {job.id: job.misfire_grace_time for job in engine._jobs.get_jobs()}
        finally:
            await engine.stop(grace_s=1)

    grace = asyncio.run(scenario())
    assert grace["retention"] is None and grace["weekly_tuning"] is None


def test_a_failing_periodic_job_is_counted_in_metrics(tmp_path: Path):
    (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\n")

    async def scenario():
        engine = Engine(load_config(tmp_path / "aios.yaml"), port=0)
        await engine.start()
        try:
            async def broken() -> None:
                raise RuntimeError("job bug")

            engine._jobs.add_job(broken, "interval", seconds=0.05, id="broken")
            for _ in range(100):
                await asyncio.sleep(0.05)
                body = engine.render_metrics()[0].decode()
                if 'aios_background_failures_total{task="job:broken"}' in body:
                    return True
            return False
        finally:
            await engine.stop(grace_s=1)

    assert asyncio.run(scenario())
