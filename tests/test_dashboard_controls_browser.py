"""The dashboard's operator controls (docs/dashboard.md, docs/controls.md) in a real headless chromium against
a real engine with the demo agent coder: pause and resume with the banner, a silence added and expired from
the page, an approval answered from the page, a run cancelled and re-run, and refusals shown as the engine
said them. Every control goes through the page's own buttons and dialog, as a person clicks them."""
from __future__ import annotations

import pytest
from browser_harness import approve_first, open_page, screenshot
from process_harness import EngineProcess

SLOW_FIX = """id: slow-fix
description: A remediation that takes a while (long enough to cancel it from the page)
on: demo.slow
confidence: 0.9
steps:
  - id: wait
    action: shell
    with: {argv: [sleep, "60"]}
"""

WINDOW = """maintenance:
  nightly-backup:
    schedule: "30 23 * * *"
    duration: 2h
    timezone: America/New_York
    match: {agent: "analyst*"}
    reason: nightly backup
"""


@pytest.fixture
def engine(coder_engine) -> EngineProcess:
    approve = approve_first("demo.approve", "Restart the cache of {agent}?")
    return coder_engine(config=WINDOW, rules={"approve_fix.yaml": approve, "slow_fix.yaml": SLOW_FIX})


@pytest.fixture
def page(browser, engine: EngineProcess):
    page = open_page(browser, engine.url + "/", "window.dashboard.connected && window.dashboard.state.controls",
                     height=1100)
    yield page
    page.close()


def answer(page, **fields: str) -> None:
    """Fill the page's dialog (reason, for…) and press OK, as a person does."""
    page.wait_for_selector("dialog#ask[open]", timeout=5_000)
    for name, value in fields.items():
        page.fill(f"#ask-{name}", value)
    page.click("#ask-ok")
    page.wait_for_selector("dialog#ask", state="hidden", timeout=5_000)


def said(page, ok: bool) -> str:
    """What the page said about the last control (waits for its answer to be there)."""
    page.wait_for_selector(f"#control-said[data-ok='{str(ok).lower()}']", timeout=10_000)
    return page.locator("#control-said").inner_text()


def by_of(engine: EngineProcess, type_: str) -> list[str]:
    return [e["data"]["by"] for e in engine.events(type_)]


def test_pause_shows_a_banner_until_resumed_and_the_events_name_the_dashboard(page, engine: EngineProcess):
    assert page.locator("#paused-banner").is_hidden()
    assert page.locator("#maintenance tr[data-window='nightly-backup']").inner_text().count("next") == 1
    page.click("#ctl-pause")
    answer(page, reason="change freeze", **{"for": "5x"})  # a bad duration: the engine's own words, nothing changes
    refused = said(page, False)
    assert "pause refused (400)" in refused and "5x" in refused and "/for" in refused, refused
    assert engine.get("/api/controls")["paused"] is None

    page.click("#ctl-pause")
    answer(page, reason="change freeze", **{"for": "2h"})
    said(page, True)
    banner = page.locator("#paused-banner")
    banner.wait_for(state="visible", timeout=10_000)
    text = banner.inner_text()
    assert "Automation paused by dashboard via 127.0.0.1" in text and "change freeze" in text and "until " in text
    assert page.locator("#ctl-resume").is_visible() and page.locator("#ctl-pause").is_hidden()
    assert by_of(engine, "control.paused") == ["dashboard via 127.0.0.1"]
    screenshot(page, "dashboard-paused")

    page.click("#ctl-resume")
    answer(page, reason="freeze over")
    said(page, True)
    banner.wait_for(state="hidden", timeout=10_000)
    assert page.locator("#pause-state").inner_text() == "on"
    assert by_of(engine, "control.resumed") == ["dashboard via 127.0.0.1"]
    assert engine.events("control.resumed")[0]["data"]["reason"] == "freeze over"


def test_a_silence_on_coder_is_added_and_expired_from_the_page(page, engine: EngineProcess):
    page.fill("#s-agent", "coder")
    page.fill("#s-for", "2h")
    page.fill("#s-reason", "disk swap on <b>coder</b>'s host")
    page.click("#s-add")
    said(page, True)
    row = page.locator("#silences tr", has_text="agent=coder")
    row.wait_for(timeout=10_000)
    assert "disk swap on <b>coder</b>'s host" in row.inner_text()  # markup in a reason stays text
    assert "dashboard via 127.0.0.1" in row.inner_text() and "active" in row.inner_text()
    [silence] = engine.get("/api/silences")["silences"]
    assert silence["agent"] == "coder" and silence["by"] == "dashboard via 127.0.0.1"
    screenshot(page, "dashboard-silence")

    row.locator("button.expire").click()
    answer(page, reason="done early")
    assert silence["id"] in said(page, True)
    page.wait_for_function("![...document.querySelectorAll('#silences tr')].some(r => "
                           "r.textContent.includes('agent=coder') && r.querySelector('button.expire'))",
                           timeout=10_000)
    assert all(s["state"] != "active" for s in engine.get("/api/silences")["silences"])
    assert [e["data"]["reason"] for e in engine.events("control.silence_expired")] == ["done early"]

    page.fill("#s-reason", "no matcher")  # the engine refuses a silence on nothing: the page says why
    page.click("#s-add")
    assert "at least one of agent, playbook, type, labels" in said(page, False)


def test_an_approval_waiting_is_approved_from_the_page(page, engine: EngineProcess):
    assert page.locator("#approvals-none").is_visible()
    engine.post("/api/events", {"type": "demo.approve", "agent": "coder"})
    row = page.locator("#approvals tr", has_text="Restart the cache of coder?")
    row.wait_for(timeout=15_000)
    run_id = row.get_attribute("data-run")
    assert "coder" in row.inner_text() and "approve-first" in row.inner_text()
    assert page.locator("#approvals-none").is_hidden()
    assert "waiting for approval" in page.locator(f"#running tr[data-run='{run_id}']").inner_text()
    screenshot(page, "dashboard-approval")

    row.locator("button.approve").click()
    answer(page, reason="looks right")
    assert "approve of " + run_id in said(page, True)
    run = engine.wait_for(lambda: next((r for r in engine.get("/api/runs")["runs"]
                                        if r["run_id"] == run_id and r["status"] != "running"), None),
                          15, "the approved run to finish")
    assert run["status"] == "succeeded", run
    [approved] = engine.events("reactor.approved")
    assert approved["data"]["by"] == "dashboard via 127.0.0.1" and approved["data"]["reason"] == "looks right"
    page.wait_for_selector(f"#approvals tr[data-run='{run_id}']", state="detached", timeout=10_000)
    assert page.locator("#approvals-none").is_visible()


def test_a_run_is_cancelled_then_re_run_from_the_page(page, engine: EngineProcess):
    engine.post("/api/events", {"type": "demo.slow", "agent": "coder"})
    running = page.locator("#running tr", has_text="slow-fix")
    running.wait_for(timeout=15_000)
    run_id = running.get_attribute("data-run")
    running.locator("button.cancel").click()
    answer(page, reason="not now")
    assert "cancel of " + run_id in said(page, True)
    assert engine.get(f"/api/runs/{run_id}")["status"] == "cancelled"
    [cancelled] = engine.events("reactor.cancelled")
    assert cancelled["data"]["by"] == "dashboard via 127.0.0.1" and cancelled["data"]["reason"] == "not now"

    page.evaluate("window.dashboard.reloadRuns()")
    page.locator(f"#runs button.rerun[data-run='{run_id}']").click(timeout=5_000)
    answer(page)
    text = said(page, True)
    assert "re-run of " + run_id in text, text
    rerun = engine.wait_for(lambda: next((r for r in engine.get("/api/runs")["runs"]
                                          if r["playbook"] == "slow-fix" and r["run_id"] != run_id), None),
                            15, "the re-run")
    assert rerun["run_id"] in text
    page.locator(f"#running tr[data-run='{rerun['run_id']}'] button.cancel").click(timeout=15_000)
    answer(page)
    said(page, True)


def test_a_playbook_is_disabled_and_enabled_and_a_refused_restart_says_why(page, engine: EngineProcess):
    page.locator("#playbooks button.disable[data-playbook='slow-fix']").click(timeout=10_000)
    answer(page, reason="makes it worse", **{"for": "1h"})
    said(page, True)
    row = page.locator("#disabled tr[data-playbook='slow-fix']")
    row.wait_for(timeout=10_000)
    assert "makes it worse" in row.inner_text()
    assert "disabled by dashboard" in page.locator("#playbooks tr[data-playbook='slow-fix']").inner_text()
    row.locator("button.enable").click()
    answer(page)
    said(page, True)
    row.wait_for(state="detached", timeout=10_000)
    assert engine.get("/api/controls")["disabled"] == {}

    page.locator("#agents button.budget[data-agent='coder']").click(timeout=10_000)
    answer(page, reason="fresh start")
    assert "no runs are counted against coder's budget" in said(page, False)  # 409, in the engine's words

    page.locator("#agents button.restart[data-agent='coder']").click()
    answer(page, reason="by hand")
    assert "restart of coder: done (run " in said(page, True)
    assert by_of(engine, "control.agent_restart") == ["dashboard via 127.0.0.1"]


def test_coder_is_stopped_and_started_from_the_page(page, engine: EngineProcess, browser):
    page.locator("#agents button.stop[data-agent='coder']").click(timeout=10_000)
    answer(page, reason="replacing its disk")
    said(page, True)
    start = page.locator("#agents button.start[data-agent='coder']")
    start.wait_for(timeout=10_000)  # the row now offers only Start
    assert page.locator("#agents button.restart[data-agent='coder']").count() == 0
    assert engine.get("/api/controls")["stopped"]["coder"]["by"] == "dashboard via 127.0.0.1"
    office = open_page(browser, engine.url + "/office", "window.office.agents.coder && "
                       "window.office.agents.coder.bubble === 'stopped by an operator'")  # the office says so too
    office.close()
    start.click()
    answer(page, reason="disk replaced")
    assert "start of coder: done (run " in said(page, True)
    engine.wait_for(lambda: engine.agent_pids().get("coder"), 30, "coder started again")
    assert by_of(engine, "control.agent_start") == ["dashboard via 127.0.0.1"]
