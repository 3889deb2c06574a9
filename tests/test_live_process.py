"""`/ws` on a real engine with a demo agent: the snapshot holds the live state, posted events arrive in one
batch, and another site's page cannot open it (docs/live.md)."""
from __future__ import annotations

import asyncio
import urllib.request

import aiohttp
import pytest
from process_harness import EngineProcess


@pytest.fixture
def engine(coder_engine):
    return coder_engine()


def test_a_client_gets_the_state_then_ten_posted_events_in_one_frame(engine: EngineProcess):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(engine.url + "/ws") as ws:
                first = await ws.receive_json(timeout=10)
                await ws.send_json({"filter": {"types": ["demo.*"]}})
                async with http.post(engine.url + "/api/events",
                                     json=[{"type": "demo.tick", "data": {"n": n}} for n in range(10)]) as answer:
                    assert answer.status == 202
                frames = []
                while not any(f.get("events") for f in frames):
                    frames.append(await ws.receive_json(timeout=10))
                async with http.get(engine.url + "/metrics") as answer:
                    metrics = await answer.text()
                return first, frames, metrics

    first, frames, metrics = asyncio.run(scenario())
    assert "aios_websocket_clients 1.0" in metrics  # the client is counted while it is connected
    frames_sent = next(line for line in metrics.splitlines()
                       if line.startswith('aios_live_since_start{count="frames"}'))
    assert float(frames_sent.split()[-1]) >= 2
    assert first["snapshot"] is True and first["seq"] == 1
    state = first["state"]
    assert "coder" in state["agents"] and state["agents"]["coder"]["declared"] is True
    assert set(state) >= {"engine", "agents", "problems", "queue", "runs", "playbooks"}
    assert "restart-down-agent" in state["playbooks"]
    events = next(f for f in frames if f.get("events"))
    assert [e["data"]["n"] for e in events["events"]] == list(range(10))  # one batch of ten, in order
    seqs = [f["seq"] for f in frames if "seq" in f]  # the filter's acknowledgement is no frame
    assert seqs == list(range(2, 2 + len(seqs)))
    assert [f["filter"]["types"] for f in frames if "filter" in f] == [["demo.*"]]  # the filter, acknowledged


def test_another_sites_page_cannot_open_the_socket(engine: EngineProcess):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(engine.url + "/ws", headers={"Origin": "http://evil.example"})
            return refused.value.status

    assert asyncio.run(scenario()) == 403


def test_the_pages_refuse_to_be_framed_by_another_site(engine: EngineProcess):
    for path in ("/", "/office", "/web/dashboard.js"):
        with urllib.request.urlopen(engine.url + path, timeout=10) as answer:
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
