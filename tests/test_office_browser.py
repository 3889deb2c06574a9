"""The pixel office (`/office`) in a real headless chromium against a real engine with the demo agent coder:
with animation frozen, coder's sprite area shows idle/working pixels, then smoke once failing tasks drive its
score below 0.3, then an empty desk once it is killed, then a person again once the shipped playbook restarts
it (docs/office.md)."""
from __future__ import annotations

import os
import signal

import pytest
from browser_harness import screenshot


@pytest.fixture
def page(browser, coder_engine):
    engine = coder_engine()
    page = browser.new_page(viewport={"width": 1800, "height": 900})
    page.goto(engine.url + "/office")
    page.wait_for_function("window.office && window.office.agents.coder", timeout=20_000)
    page.evaluate("window.office.freeze(true)")
    yield page, engine
    page.close()


def signature(page) -> dict[str, int]:
    text = page.evaluate("window.office.signature('coder')")
    return {k: int(v) for k, v in (part.split(":") for part in text.split())}


def wait_state(page, state: str) -> dict[str, int]:
    page.wait_for_function(f"window.office.agents.coder.state === '{state}'", timeout=30_000)
    return signature(page)


def test_coder_sprite_goes_idle_degraded_down_and_back(page):
    page, engine = page
    page.wait_for_function("['idle', 'running'].includes(window.office.agents.coder.state)", timeout=20_000)
    alive = signature(page)
    assert alive.get("s", 0) > 0 and alive.get("f", 0) == 0, alive  # a person (skin), no smoke
    screenshot(page, "office-alive")

    failing = [{"type": "agent.task_done", "agent": "coder", "data": {"ok": False, "duration_ms": 60_000}}
               for _ in range(12)]
    errors = [{"type": "agent.error", "agent": "coder", "data": {"message": "boom"}} for _ in range(12)]
    hot = {"type": "resource.agent_cpu", "agent": "coder", "severity": "warning", "data": {"cpu_pct": 400.0}}
    engine.post("/api/events", [hot, *failing, *errors])
    degraded = wait_state(page, "degraded")
    assert degraded.get("f", 0) > 0 and degraded.get("s", 0) > 0, degraded  # smoke over a person
    screenshot(page, "office-degraded")

    os.kill(engine.agent_pids()["coder"], signal.SIGKILL)
    down = wait_state(page, "down")
    assert down.get("s", 0) == 0 and down.get("f", 0) == 0 and down.get("d", 0) > 0, down  # an empty desk
    screenshot(page, "office-down")

    page.wait_for_function("window.office.agents.coder.state !== 'down'", timeout=40_000)
    back = signature(page)
    assert back.get("s", 0) > 0 and back != down, back
    screenshot(page, "office-restarted")
