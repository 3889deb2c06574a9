"""Notifications in a whole engine (in process, port 0): a problem is announced to a loopback HTTP sink when
it opens and when it resolves, while the remediation's `notify` step to a target that is down still lets
the run succeed; the failure is stored, retried, given up, and counted in /metrics."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from service_harness import run_engine, wait_for_event
from test_notify import HttpSink, closed_port

from engine.service.app import Engine

KINDS = """
- kind: service-broken
  opened_by: ops.broken
  key: [data.service]
  resolved_by: [ops.fixed]
"""
PLAYBOOK = """
- id: fix-service
  on: ops.broken
  steps:
    - {id: page, action: notify, with: {target: pager, title: "fixing {data.service}", level: warning}}
    - {id: fix, action: emit, needs: [page], with: {type: ops.fixed, data: {service: "{data.service}"}}}
"""


def test_problem_messages_arrive_and_a_down_target_never_fails_the_run(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "service.problems.yaml").write_text(KINDS)
    (rules / "fix.yaml").write_text(PLAYBOOK)

    async def main() -> None:
        async with HttpSink() as sink:
            extra = (f"notifications:\n  targets:\n    team: {{urls: ['{sink.url()}']}}\n"
                     f"    pager: {{urls: ['json://127.0.0.1:{closed_port()}/page'], events: []}}\n"
                     "  group_window: 0s\n  retry: {attempts: 1, backoff: 100ms}\n")
            await asyncio.to_thread(run_engine, tmp_path, lambda engine, http: scenario(engine, http, sink), extra)

    asyncio.run(main())


async def scenario(engine: Engine, http: aiohttp.ClientSession, sink: HttpSink) -> None:
    response = await http.post("/api/events", json={"type": "ops.broken", "source": "test", "data": {"service": "db"}})
    assert response.status == 202
    run = await wait_for_event(engine, lambda e: e["type"].startswith("reactor.") and e["type"] != "reactor.started"
                               and e["data"].get("playbook") == "fix-service")
    assert run["type"] == "reactor.succeeded"  # the pager is down; the fix went ahead all the same
    given_up = await wait_for_event(engine, lambda e: e["type"] == "notification.failed" and e["data"]["final"])
    assert given_up["data"]["target"] == "pager" and given_up["data"]["attempt"] == 2
    assert "Connection error" in given_up["data"]["error"]
    await wait_for_event(engine, lambda e: e["type"] == "problem.resolved")
    sent = await wait_for(lambda: len(sink.posts) >= 2)
    assert sent and [p["title"] for p in sink.posts] == ['[opened] service-broken {"data.service":"db"}',
                                                         '[resolved] service-broken {"data.service":"db"}']
    assert "by run" in sink.posts[1]["message"]
    await wait_for_event(engine, lambda e: e["type"] == "notification.sent" and "resolved" in e["data"]["title"])
    metrics = await (await http.get("/metrics")).text()
    assert 'aios_notifications_total{outcome="sent",target="team"} 2.0' in metrics
    assert 'aios_notifications_total{outcome="gave_up",target="pager"} 1.0' in metrics


async def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_a_reload_applies_new_targets_and_refuses_a_url_it_cannot_use(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("AIOS_TEST_NO_SUCH_VAR", raising=False)

    async def body(engine: Engine, http: aiohttp.ClientSession) -> None:
        assert engine.notifier.targets == {}
        config = tmp_path / "aios.yaml"
        config.write_text(config.read_text()
                          + "notifications:\n  targets:\n    team: {urls: ['json://127.0.0.1:9/x']}\n")
        result = await engine.reload()
        assert result["config"] == "reloaded" and "notifications" not in result["restart_needed_for"]
        assert list(engine.notifier.targets) == ["team"]
        config.write_text(config.read_text().replace("json://127.0.0.1:9/x", "json://${AIOS_TEST_NO_SUCH_VAR}/x"))
        result = await engine.reload()
        assert result["config"] == "rejected" and "AIOS_TEST_NO_SUCH_VAR is not set" in result["errors"][0]
        assert list(engine.notifier.targets) == ["team"] and "${" not in str(engine.config.raw["notifications"])

    run_engine(tmp_path, body)
