"""`/ws` over a real aiohttp server on 127.0.0.1, fed by a real Bus (contract §5). The hub's clock is fake:
batches that wait 5 s are flushed by advancing it, never by sleeping."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.bus import Bus
from engine.live.hub import Hub
from engine.live.patch import apply
from engine.live.ws import HUB, feed, websocket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Live:
    """A hub behind a real server, a bus feeding it, and a state document the test changes."""

    def __init__(self, client: TestClient, hub: Hub, bus: Bus, clock: Clock, doc: dict) -> None:
        self.client, self.hub, self.bus, self.clock, self.doc = client, hub, bus, clock, doc
        self.sent = 0

    async def connect(self, query: str = "") -> aiohttp.ClientWebSocketResponse:
        return await self.client.ws_connect("/ws" + query)

    async def post(self, count: int, size: int = 0, type_: str = "agent.heartbeat",
                   severity: str = "info") -> list[str]:
        """Events on the bus, as intake publishes them after storing them."""
        ids = []
        for _ in range(count):
            self.sent += 1
            ids.append(f"E{self.sent:06d}")
            await self.bus.publish({"id": ids[-1], "type": type_, "agent": "coder", "severity": severity,
                                    "data": {"pad": "x" * size}})
        while self.hub.counts["events"] < self.sent:  # the feed task has handed them to the hub
            await asyncio.sleep(0)
        return ids


def run(body: Callable[[Live], Awaitable[None]], **hub_options) -> None:
    async def scenario() -> None:
        clock = Clock()
        doc = {"agents": {"coder": {"state": "idle", "score": 0.9}}, "queue": {"depth": 0}}
        hub = Hub(lambda: doc, clock, "run1", **{"state_every_s": 0.0, **hub_options})  # the state at once
        bus = Bus()
        app = web.Application()
        app[HUB] = hub
        app.router.add_get("/ws", websocket)
        consumer = asyncio.create_task(feed(hub, bus.subscribe("live", "*", maxsize=100_000)))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            try:
                await asyncio.wait_for(body(Live(client, hub, bus, clock, doc)), 20)
            finally:
                hub.close()
                consumer.cancel()

    asyncio.run(scenario())


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict:
    return await ws.receive_json(timeout=timeout)


def ids(frame_: dict) -> list[str]:
    return [e["id"] for e in frame_["events"]]


def test_a_snapshot_first_then_patches_with_continuous_seq_and_filters():
    async def body(live: Live) -> None:
        ws = await live.connect()
        first = await frame(ws)
        assert first["epoch"].startswith("run1.") and first["seq"] == 1 and first["snapshot"] is True
        assert first["state"] == live.doc and first["events"] == []
        sent = await live.post(10)
        second = await frame(ws)  # the 10th event sends the frame at once, no tick needed
        assert (second["seq"], second["snapshot"], ids(second), second["state"]) == (2, False, sent, {})
        live.doc["agents"]["coder"]["state"] = "running"
        lone = await live.post(1)
        live.clock.now += 5
        live.hub.flush_due()
        third = await frame(ws)
        assert (third["seq"], ids(third), third["state"]) == (3, lone, {"agents": {"coder": {"state": "running"}}})
        assert third["epoch"] == first["epoch"]

        await ws.send_json({"filter": {"types": ["agent.*"], "min_severity": "bogus"}})
        assert await frame(ws) == {"error": "unknown severity 'bogus' (one of debug, info, warning, error, critical)",
                                   "pointer": "/filter/min_severity"}
        await ws.send_str("not json")
        assert "invalid JSON" in (await frame(ws))["error"]
        await ws.send_json({"filter": {"min_severity": "warning"}})
        assert (await frame(ws))["filter"]["min_severity"] == "warning"
        await live.post(10)  # info: hidden now
        warned = await live.post(1, type_="agent.error", severity="error")
        live.clock.now += 5
        live.hub.flush_due()
        fourth = await frame(ws)  # the connection survived the bad messages; seq did not skip
        assert (fourth["seq"], ids(fourth)) == (4, warned)

    run(body)


def test_resume_within_the_ring_replays_the_missed_frames_with_their_seq():
    async def body(live: Live) -> None:
        ws = await live.connect()
        epoch = (await frame(ws))["epoch"]
        await live.post(10)
        assert (await frame(ws))["seq"] == 2
        await ws.close()
        await asyncio.sleep(0)
        missed = await live.post(25)  # frames 3 and 4 are built while the client is away; 5 pending
        live.doc["queue"]["depth"] = 7
        again = await live.connect(f"?resume={epoch}:2")
        replayed = [await frame(again), await frame(again)]
        assert [(f["seq"], f["snapshot"], f["epoch"]) for f in replayed] == [(3, False, epoch), (4, False, epoch)]
        assert ids(replayed[0]) + ids(replayed[1]) == missed[:20]
        more = await live.post(5)
        fifth = await frame(again)
        assert (fifth["seq"], ids(fifth), fifth["state"]) == (5, missed[20:] + more, {"queue": {"depth": 7}})

    run(body)


def test_resume_with_a_stale_epoch_or_past_the_ring_gets_a_snapshot_numbered_after_it():
    async def body(live: Live) -> None:
        stale = await live.connect("?resume=run0.0123456789abcdef:41")
        snap = await frame(stale)
        assert (snap["seq"], snap["snapshot"], snap["state"]) == (42, True, live.doc)
        assert snap["epoch"].startswith("run1.")
        bad = await live.connect("?resume=garbage")
        assert (await frame(bad))["error"].startswith("resume='garbage': expected EPOCH:SEQ")
        assert (await frame(bad))["seq"] == 1

        ws = await live.connect()
        epoch = (await frame(ws))["epoch"]
        await ws.close()
        await asyncio.sleep(0)
        for _ in range(6):  # 60 events, one frame each 10 s: the ring keeps 20 events or 15 s
            await live.post(10)
            live.clock.now += 10
        again = await live.connect(f"?resume={epoch}:1")
        snap = await frame(again)
        assert (snap["seq"], snap["snapshot"], snap["epoch"]) == (8, True, epoch)

    run(body, ring_events=20, ring_seconds=15, ring_cap_events=40)


def test_a_slow_client_does_not_delay_a_fast_one_and_later_gets_a_snapshot():
    async def body(live: Live) -> None:
        slow = await live.connect()  # never reads until the end
        fast = await live.connect()
        assert (await frame(fast))["seq"] == 1
        seqs, worst = [], 0.0
        while live.hub.counts["overflows"] == 0:
            assert len(seqs) < 2000, "the slow client's buffer never filled"
            live.doc["queue"]["depth"] = len(seqs)
            started = time.monotonic()
            sent = await live.post(10, size=16_000)
            got = await frame(fast)
            worst = max(worst, time.monotonic() - started)
            assert ids(got) == sent and got["snapshot"] is False
            seqs.append(got["seq"])
        assert seqs == list(range(2, len(seqs) + 2)) and worst < 1.0
        await live.post(10)  # one more frame after the snapshot
        frames = []
        while not frames or frames[-1]["seq"] <= seqs[-1]:
            frames.append(await frame(slow))
        numbers = [f["seq"] for f in frames]
        resync = next(i for i, f in enumerate(frames) if f["snapshot"] and i > 0)
        assert numbers[:resync] == list(range(1, resync + 1))  # what it had before falling behind, in order
        assert numbers[resync] > numbers[resync - 1] + 1  # its backlog was dropped: a gap, then the snapshot
        assert numbers[resync:] == list(range(numbers[resync], numbers[-1] + 1))
        state = frames[resync]["state"]
        for later in frames[resync + 1:]:
            state = apply(state, later["state"])
        assert state == live.doc and live.hub.counts["dropped_frames"] >= 1

    run(body, client_buffer=4)


def test_past_max_clients_a_client_is_told_and_closed_and_shutdown_closes_the_rest():
    async def body(live: Live) -> None:
        ws = await live.connect()
        assert (await frame(ws))["seq"] == 1
        extra = await live.connect()
        assert (await frame(extra))["error"].startswith("too many live clients (at most 1)")
        assert (await extra.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE and extra.close_code == 1013
        live.hub.close()
        assert (await ws.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1001

    run(body, max_clients=1)
