"""The pixel office (`/office`) in a real headless chromium against a real engine with the demo agent coder:
with animation frozen, coder's sprite area shows idle/working pixels, then smoke once failing tasks drive its
score below 0.3, then an empty desk once it is killed, then a person again once the shipped playbook restarts
it (docs/office.md)."""
from __future__ import annotations

import os
import signal

import pytest
from browser_harness import approve_first, open_page, screenshot


@pytest.fixture
def page(browser, coder_engine):
    engine = coder_engine()
    page = browser.new_page(viewport={"width": 1800, "height": 900})
    page.goto(engine.url + "/office")
    page.wait_for_function("window.office && window.office.agents.coder", timeout=20_000)
    page.evaluate("window.office.freeze(true)")
    yield page, engine
    page.close()


def frozen_office(browser, engine):
    """/office once coder is up, animation frozen (sprites stand still where their state puts them)."""
    page = open_page(browser, engine.url + "/office",
                     "window.office.agents.coder && window.office.agents.coder.state !== 'down'")
    page.evaluate("window.office.freeze(true)")
    return page


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

    pid = engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder running")  # its P0 restart may be
    os.kill(pid, signal.SIGKILL)                                                            # under way
    down = wait_state(page, "down")
    assert down.get("s", 0) == 0 and down.get("f", 0) == 0 and down.get("d", 0) > 0, down  # an empty desk
    screenshot(page, "office-down")

    page.wait_for_function("window.office.agents.coder.state !== 'down'", timeout=40_000)
    back = signature(page)
    assert back.get("s", 0) > 0 and back != down, back
    screenshot(page, "office-restarted")


SLOW_FIX = """id: slow-fix
description: A remediation that takes a while (the office shows the agent it acts on as busy)
on: demo.slow
confidence: 0.9
steps:
  - id: wait
    action: shell
    with: {argv: [sleep, "12"]}
"""


def test_a_run_on_coder_shows_it_busy_with_a_bubble_and_in_the_text_view(browser, coder_engine):
    engine = coder_engine(rules={"slow_fix.yaml": SLOW_FIX})
    page = frozen_office(browser, engine)
    engine.post("/api/events", [{"type": "demo.slow", "agent": "coder"}])
    page.wait_for_function("window.office.agents.coder.bubble === 'slow-fix…'", timeout=10_000)
    coder = page.evaluate("window.office.agents.coder")
    assert coder["state"] == "running", coder  # a run acting on it counts as work
    assert "run slow-fix" in page.locator("#list").inner_text()  # the text view says the same
    screenshot(page, "office-run")
    page.wait_for_function("window.office.agents.coder.bubble === ''", timeout=20_000)  # the run ended
    page.close()


def test_two_agents_on_one_pipeline_meet_then_go_back_and_hover_and_click_lead_to_the_dashboard(page):
    page, engine = page
    started = [{"type": "agent.task_started", "agent": name, "data": {"task": "release", "pipeline": "rel-42"}}
               for name in ("alpha", "beta")]
    engine.post("/api/events", started)
    page.wait_for_function("['alpha', 'beta'].every(n => window.office.agents[n] && "
                           "window.office.agents[n].meeting === 'pipeline rel-42')", timeout=10_000)
    where = page.evaluate("['alpha', 'beta'].map(n => window.office.agents[n])"
                          ".map(s => ({x: s.x, y: s.y, seat: s.seat, state: s.state}))")
    room = page.evaluate("window.office.plan.rooms.meeting")
    for spot in where:
        assert room["x"] <= spot["x"] < room["x"] + room["w"] and room["y"] <= spot["y"] < room["y"] + room["h"]
        assert (spot["x"], spot["y"]) != (spot["seat"]["x"], spot["seat"]["y"]) and spot["state"] == "running"
    assert where[0]["x"] != where[1]["x"] or where[0]["y"] != where[1]["y"]  # two places at the table
    assert "meeting on pipeline rel-42" in page.locator("#list").inner_text()
    screenshot(page, "office-meeting")

    engine.post("/api/events", [{"type": "agent.task_done", "agent": name, "data": {"ok": True, "duration_ms": 5}}
                                for name in ("alpha", "beta")])
    page.wait_for_function("['alpha', 'beta'].every(n => !window.office.agents[n].meeting && "
                           "window.office.agents[n].x === window.office.agents[n].seat.x && "
                           "window.office.agents[n].y === window.office.agents[n].seat.y)", timeout=10_000)

    point = page.evaluate("window.office.center('coder')")
    page.mouse.move(point["x"], point["y"])
    tip = page.locator("#tip")
    assert tip.is_visible() and tip.inner_text().startswith("coder · ")
    assert "score" in tip.inner_text()
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url("**/?agent=coder", timeout=5_000)
    page.wait_for_selector("#filter-status:has-text('filter on')", timeout=10_000)  # the engine took the filter
    assert page.locator("#f-agents").input_value() == "coder"
    engine.post("/api/events", [{"type": "demo.tick", "agent": other, "data": {"n": 1}}
                                for other in ("alpha", "coder")])
    page.wait_for_function("window.dashboard.events.some(e => e.type === 'demo.tick')", timeout=10_000)
    ticks = page.evaluate("window.dashboard.events.filter(e => e.type === 'demo.tick').map(e => e.agent)")
    assert set(ticks) == {"coder"}


def test_the_office_resumes_its_stream_after_the_socket_drops(page):
    page, engine = page
    epoch, seq = page.evaluate("[window.office.epoch, window.office.seq]")
    page.evaluate("window.office.ws.close()")
    page.wait_for_function("document.getElementById('conn').textContent === 'reconnecting…'", timeout=5_000)
    page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=5_000)
    engine.post("/api/events", [{"type": "agent.task_started", "agent": "gamma", "data": {"task": "t"}}])
    page.wait_for_function("window.office.agents.gamma !== undefined", timeout=10_000)
    assert page.evaluate("window.office.epoch") == epoch and page.evaluate("window.office.seq") > seq




def test_a_run_waiting_for_approval_shows_coder_waiting_with_a_bubble_until_answered(browser, coder_engine):
    engine = coder_engine(rules={"ask_first.yaml": approve_first("demo.ask", "Restart {agent}'s cache?")})
    page = frozen_office(browser, engine)
    assert signature(page).get("o", 0) == 0  # no hourglass on the desk yet
    engine.post("/api/events", [{"type": "demo.ask", "agent": "coder"}])
    page.wait_for_function("window.office.agents.coder.bubble === 'waiting for approval'", timeout=15_000)
    waiting = signature(page)
    assert page.evaluate("window.office.agents.coder.state") == "waiting"
    assert waiting.get("s", 0) > 0 and waiting.get("o", 0) > 0, waiting  # a person sitting by an hourglass
    text = page.locator("#list").inner_text()
    assert "run approve-first waits for approval: Restart coder's cache?" in text and "(waiting for approval)" in text
    screenshot(page, "office-approval")

    [asked] = engine.get("/api/approvals")["approvals"]
    engine.post(f"/api/runs/{asked['run_id']}/deny", {"reason": "not today"})
    page.wait_for_function("window.office.agents.coder.bubble !== 'waiting for approval'", timeout=15_000)
    assert "waiting for approval" not in page.locator("#list").inner_text()
    page.close()
