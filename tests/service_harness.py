"""An engine running in this process on an ephemeral port of 127.0.0.1, and a client for it."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from engine.config import load_config
from engine.service.app import Engine

PLAYBOOK = """
- id: note-errors
  on: agent.error
  steps:
    - {id: note, action: emit, with: {type: ops.noted, data: {seen: "{id}"}}}
"""


def write_config(tmp_path: Path, extra: str = "") -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "notes.yaml").write_text(PLAYBOOK)
    config = tmp_path / "aios.yaml"
    config.write_text(f"data_dir: data\nrules_dir: rules\nsensors: {{interval: 1h}}\n{extra}")
    return config


def run_engine(tmp_path: Path, body: Callable[[Engine, aiohttp.ClientSession], Awaitable[Any]],
               extra: str = "", data_dir: Path | None = None) -> Any:
    async def scenario() -> Any:
        engine = Engine(load_config(write_config(tmp_path, extra)), port=0, data_dir=data_dir)
        await engine.start()
        try:
            jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for 127.0.0.1, as a browser does
            async with aiohttp.ClientSession(base_url=engine.url, cookie_jar=jar) as http:
                return await body(engine, http)
        finally:
            await engine.stop(grace_s=2)

    return asyncio.run(scenario())


async def wait_for_event(engine: Engine, predicate: Callable[[dict[str, Any]], bool],
                         timeout: float = 10.0) -> dict[str, Any]:
    """The first stored event (already stored or arriving) for which `predicate` holds."""
    from engine.store.reader import read_events

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for event in read_events(engine.events_dir):
            if predicate(event):
                return event
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no such event arrived")
        await asyncio.sleep(0.05)
