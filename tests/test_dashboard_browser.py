"""The dashboard (`/`) in a real headless chromium against a real engine with the demo agent coder: posted
events show up within one batch, a rollback clicked in the page restores a file on disk, and a filter set in
the page is honoured by the server (docs/dashboard.md)."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from browser_harness import open_page, screenshot
from process_harness import EngineProcess

WRITER = """id: write-site-config
description: Write the site config (a file the dashboard's rollback must restore)
on: demo.write_config
confidence: 0.9
steps:
  - id: write
    action: write_file
    with: {{path: "{path}", content: "new content\\n"}}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site" / "app.conf"
    path.parent.mkdir()
    path.write_text("old content\n")
    return path


@pytest.fixture
def engine(coder_engine, site: Path) -> EngineProcess:
    return coder_engine(rules={"write_config.yaml": WRITER.format(path=site)})


@pytest.fixture
def page(browser, engine: EngineProcess):
    page = open_page(browser, engine.url + "/", "window.dashboard.connected && window.dashboard.frames >= 1",
                     height=1000)
    yield page
    page.close()


def show_only(page, types: str, min_severity: str = "") -> None:
    """Set the filter through the form, as a user does, and wait for the engine's acknowledgement."""
    page.fill("#f-types", types)
    page.select_option("#f-severity", min_severity)
    page.click("#f-apply")
    page.wait_for_selector("#filter-status:has-text('filter on')", timeout=5000)


def shown_ticks(page) -> list[int]:
    return page.evaluate("window.dashboard.events.filter(e => e.type.startsWith('demo.')).map(e => e.data.n)")


def test_posted_events_appear_within_one_batch_and_the_agents_table_shows_coder(page, engine: EngineProcess):
    page.wait_for_selector("#agents tr[data-agent=coder]", timeout=10000)
    show_only(page, "demo.*")  # coder's own events (a heartbeat a second) would otherwise share the batches
    posted = time.monotonic()
    engine.post("/api/events", [{"type": "demo.tick", "data": {"n": n}} for n in range(10)])
    page.wait_for_function("document.querySelectorAll('#events td.data').length >= 10 && "
                           "[...document.querySelectorAll('#events tr')].filter(r => r.children[1].textContent"
                           " === 'demo.tick').length === 10", timeout=5000)
    assert time.monotonic() - posted < 3  # ten events make a batch at once; the 5 s wait is not needed
    assert shown_ticks(page) == list(range(9, -1, -1))  # newest first
    assert page.locator("#agents tr[data-agent=coder] th").inner_text() == "coder"
    assert page.locator("#conn").get_attribute("data-state") == "open"
    screenshot(page, "dashboard-events")

    epoch, seq = page.evaluate("[window.dashboard.epoch, window.dashboard.seq]")
    page.evaluate("window.dashboard.ws.close()")  # the connection drops: the page reconnects and resumes
    page.wait_for_function("!window.dashboard.connected", timeout=2000)
    page.wait_for_function("window.dashboard.connected", timeout=5000)
    engine.post("/api/events", [{"type": "demo.tick", "data": {"n": n}} for n in range(10, 20)])
    page.wait_for_function("window.dashboard.events.filter(e => e.type === 'demo.tick').length >= 20", timeout=5000)
    assert shown_ticks(page) == list(range(19, -1, -1))  # nothing lost, nothing twice
    resumed = page.evaluate("[window.dashboard.epoch, window.dashboard.seq]")
    assert resumed[0] == epoch and resumed[1] > seq  # the same stream (and its filter), its numbering continued


def test_a_rollback_clicked_in_the_page_restores_the_file(page, engine: EngineProcess, site: Path):
    engine.post("/api/events", {"type": "demo.write_config", "data": {}})
    run = engine.wait_for(lambda: next((r for r in engine.get("/api/runs")["runs"]
                                        if r["playbook"] == "write-site-config" and r["status"] != "running"), None),
                          15, "the write-site-config run")
    assert run["status"] == "succeeded", run
    assert site.read_text() == "new content\n"
    page.evaluate("window.dashboard.reloadRuns()")
    button = page.locator(f"button.rollback[data-run='{run['run_id']}']")
    button.click(timeout=5000)
    page.wait_for_selector("#rollback-answer", timeout=5000)
    assert page.locator("#rollback-answer").get_attribute("data-status") == "200"
    assert site.read_text() == "old content\n"
    screenshot(page, "dashboard-rollback")
    button.click()  # the same run again: its files no longer match the seal, so the engine refuses
    page.wait_for_selector("#rollback-answer[data-status='409']", timeout=5000)
    assert "refused" in page.locator("#rollback-answer").inner_text()
    assert site.read_text() == "old content\n"


def test_a_filter_set_in_the_page_is_honoured(page, engine: EngineProcess):
    show_only(page, "demo.keep*", "warning")
    events = [{"type": "demo.keep", "severity": "error", "data": {"n": n}} for n in range(5)]
    events += [{"type": "demo.drop", "severity": "error", "data": {"n": 100 + n}} for n in range(5)]
    events += [{"type": "demo.keep", "severity": "info", "data": {"n": 200 + n}} for n in range(5)]
    engine.post("/api/events", events)
    engine.post("/api/events", [{"type": "demo.keep", "severity": "error", "data": {"n": 999}}] * 5)  # the batch of ten
    page.wait_for_function("window.dashboard.events.some(e => e.data && e.data.n === 999)", timeout=8000)
    later = page.evaluate("window.dashboard.events.filter(e => e.type.startsWith('demo.') && e.data.n !== 999)"
                          ".map(e => [e.type, e.data.n])")  # frames come in order: anything shown came by now
    assert sorted(later) == [["demo.keep", n] for n in range(5)]
    screenshot(page, "dashboard-filter")

    page.click("#pause")  # paused: events still arrive, the list stands still until resumed
    engine.post("/api/events", [{"type": "demo.keep", "severity": "error", "data": {"n": n}} for n in range(5, 15)])
    page.wait_for_function("window.dashboard.events.filter(e => e.type === 'demo.keep').length >= 20", timeout=5000)
    keep_rows = page.locator("#events tr", has_text="demo.keep")
    assert keep_rows.count() == 10  # five kept and five markers
    page.click("#pause")
    assert keep_rows.count() == 20


def test_an_open_problem_shows_its_timeline_when_clicked(page, engine: EngineProcess):
    engine.post("/api/events", {"type": "agent.down", "agent": "ghost", "data": {"exit_code": 1}})
    problem = page.wait_for_function("Object.values(window.dashboard.state.problems || {})"
                                     ".find(p => p.kind === 'agent-down' && p.status === 'open')", timeout=10000)
    problem_id = problem.json_value()["id"]
    engine.wait_for(lambda: any(t["type"] == "scheduler.decision"
                                for t in engine.get(f"/api/problems/{problem_id}")["timeline"]), 10, "a decision")
    page.locator("#problems button", has_text=problem_id).click()
    detail = page.locator("#problem-detail")
    detail.locator("h3", has_text=problem_id).wait_for(timeout=5000)
    entries = detail.locator("li").all_inner_texts()
    assert any("agent.down" in e and "what=opened" in e for e in entries), entries
    decision = next(e for e in entries if "scheduler.decision" in e)
    assert "playbook=restart-down-agent" in decision and "outcome=" in decision, entries
    screenshot(page, "dashboard-problem")


TOKEN = "s3cret-token-for-tests"


def test_with_a_token_the_page_works_after_login_and_not_before(browser, coder_engine):
    """What a dashboard off loopback needs (contract §5): every request carries the token, a browser through the
    `aios_token` cookie that `/login` sets; the page's own API calls and its socket use it."""
    engine = coder_engine(config=f"server: {{token: {TOKEN}}}\n")
    page = browser.new_page()
    refused = page.goto(engine.url + "/")
    assert refused.status == 401 and "log in at /login" in refused.text()
    page.goto(engine.url + "/login?token=wrong-token-wrong-token")
    assert "wrong token" in page.content()
    page.goto(engine.url + f"/login?token={TOKEN}")
    assert page.url == engine.url + "/"  # redirected to the dashboard
    page.wait_for_function("window.dashboard.connected && window.dashboard.frames >= 1", timeout=10_000)
    page.wait_for_selector("#agents tr[data-agent=coder]", timeout=10_000)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read the token
    request = urllib.request.Request(engine.url + "/api/events", method="POST",
                                     data=json.dumps({"type": "demo.tick", "data": {"n": 7}}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202
    page.wait_for_function("window.dashboard.events.some(e => e.type === 'demo.tick')", timeout=10_000)
    page.wait_for_function("document.getElementById('rules-health').textContent.includes('rule files load')",
                           timeout=10_000)  # an API call from the page, with the cookie
    page.close()


HOSTILE = ["__proto__", "constructor", "<img src=x onerror=window.pwned=1>", "a,b"]


def test_agents_named_like_object_members_or_markup_are_shown_as_names(page, engine: EngineProcess, browser):
    """Agent names come from outside: `__proto__` must not poison the page's maps, markup must stay text,
    and a name with a comma is one name when the office links to it."""
    engine.post("/api/events", [{"type": "agent.task_done", "agent": name, "data": {"ok": True, "duration_ms": 5}}
                                for name in HOSTILE])
    rows = f"{HOSTILE!r}.every(n => document.querySelector(`#agents tr[data-agent='${{CSS.escape(n)}}']`))"
    page.wait_for_function(rows, timeout=15_000)
    assert page.evaluate("({}).score === undefined && window.pwned === undefined")
    assert page.evaluate("window.dashboard.connected")
    office = browser.new_page()
    office.goto(engine.url + "/office")
    office.wait_for_function(f"{HOSTILE!r}.every(n => window.office.agents[n] && window.office.agents[n].seat)",
                             timeout=15_000)
    assert office.evaluate("({}).score === undefined && window.pwned === undefined")
    assert all(name in office.locator("#list").inner_text() for name in HOSTILE)
    office.goto(engine.url + "/?agent=" + urllib.parse.quote("a,b"))
    office.wait_for_selector("#filter-status:has-text('filter on')", timeout=10_000)
    assert '"agents":["a,b"]' in office.locator("#filter-status").inner_text()
    office.close()
