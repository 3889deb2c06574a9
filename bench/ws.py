"""WebSocket fan-out benchmark: `python bench/ws.py [--clients 100] [--rate 2000] [--seconds 10]`.

A real `aios-engine run` takes `--rate` events/s (100-event POSTs) for `--seconds` while `--clients` `/ws`
clients read every frame (docs/live.md: a frame per 10 events or 5 s). Measured from outside:
- frames per client against events per client (the batching: ≈ events / 10);
- the engine's CPU per delivered event (event × client), net of the same load with no client connected;
- event-to-client latency p50/p99: from the event's stored `ts` to the moment the client has the frame, timed
  by 10 of the clients (all clients read and decode every frame);
- the engine's RSS with the clients connected.
Half the clients attach before the load and half during its first second, so their batches are out of phase
(each stream's frames fall due at different events, as with real dashboards that open at different times).
Baseline in the same run: the seed's way, one frame per event carrying the whole state, from a minimal
aiohttp server fed the same events, to 10 clients (its CPU per delivered event, its latency).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from service import free_port, running_engine  # bench/ is this script's directory, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.events import format_ts, parse_ts  # noqa: E402

RULES = "- {id: never, on: bench.never, steps: [{id: s, action: emit, with: {type: bench.noted}}]}\n"  # no run
CONFIG = "sensors: {interval: 1h}\nagents: {}\nserver: {max_undecided: 1000000}\n"
PER_POST = 100
TIMED = 10  # clients that time every event they get (the rest only count)

NAIVE = r'''
import asyncio, sys, orjson
from aiohttp import web
clients, state = set(), {"agents": {f"agent{n}": {"state": "running", "score": 0.9} for n in range(20)}}
async def ws(request):
    sock = web.WebSocketResponse(); await sock.prepare(request); clients.add(sock)
    try:
        async for _ in sock: pass
    finally: clients.discard(sock)
    return sock
async def events(request):
    for event in orjson.loads(await request.read()):
        frame = orjson.dumps({"events": [event], "state": state})
        for sock in list(clients): await sock.send_bytes(frame)
    return web.json_response({"ok": True})
app = web.Application(); app.router.add_get("/ws", ws); app.router.add_post("/events", events)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
'''


class Client:
    """One `/ws` reader: frames and events counted and, when `timed`, each event's latency from its `ts`.
    Only some clients time events: parsing 200,000 timestamps a second in this one process would measure this
    process's own backlog, not the engine's."""

    def __init__(self, timed: bool = True) -> None:
        self.timed = timed
        self.frames = 0
        self.events = 0
        self.latencies: list[float] = []

    async def read(self, http: aiohttp.ClientSession, url: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
        async with http.ws_connect(url, max_msg_size=0) as ws:
            ready.set()
            while not stop.is_set():
                try:
                    message = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                now = time.time()
                frame = orjson.loads(message.data)
                events = frame.get("events") or []
                self.frames += 1
                self.events += len(events)
                if self.timed:
                    self.latencies += [now - parse_ts(e["ts"]).timestamp() for e in events
                                       if e.get("type") == "bench.load" and "ts" in e]


async def load(post_url: str, rate: int, seconds: float) -> int:
    """`rate` events/s in PER_POST batches for `seconds`; returns how many were accepted."""
    sent = 0
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            ts = format_ts(time.time())
            body = orjson.dumps([{"type": "bench.load", "ts": ts, "data": {"n": sent + i}} for i in range(PER_POST)])
            async with http.post(post_url, data=body, headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
                if answer.status in (200, 202):
                    sent += PER_POST
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    return sent


async def measure(ws_url: str, post_url: str, pid: int, clients: int, rate: int, seconds: float) -> dict[str, Any]:
    readers = [Client(timed=n < TIMED) for n in range(clients)]
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readies = [asyncio.Event() for _ in readers]
        early = len(readers) // 2  # half attach before the load, half during its first second: out of phase
        tasks = [asyncio.create_task(r.read(http, ws_url, ready, stop))
                 for r, ready in zip(readers[:early], readies[:early])]
        await asyncio.gather(*(ready.wait() for ready in readies[:early]))
        await asyncio.sleep(1.0)  # snapshots out of the way
        proc = psutil.Process(pid)
        cpu = proc.cpu_times()
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # its own process: the clients take this one
            loading = asyncio.ensure_future(asyncio.to_thread(pool.apply, _load, (post_url, rate, seconds)))
            for reader, ready in zip(readers[early:], readies[early:]):
                tasks.append(asyncio.create_task(reader.read(http, ws_url, ready, stop)))
                await asyncio.sleep(1.0 / max(1, len(readers) - early))
            sent = await loading
        await asyncio.sleep(6.0)  # the last batch's 5 s
        after = proc.cpu_times()
        rss = proc.memory_info().rss / 2**20
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(x for r in readers for x in r.latencies)
    return {"sent": sent, "cpu_s": (after.user + after.system) - (cpu.user + cpu.system), "rss_mb": rss,
            "frames": statistics.mean(r.frames for r in readers) if readers else 0.0,
            "events": statistics.mean(r.events for r in readers) if readers else 0.0,
            "delivered": sum(r.events for r in readers), "latencies": latencies}


def _load(post_url: str, rate: int, seconds: float) -> int:
    return asyncio.run(load(post_url, rate, seconds))


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aios-ws-") as tmp:
        with running_engine(Path(tmp), RULES, CONFIG) as (engine, url):
            ws_url, post_url = url.replace("http", "ws") + "/ws", url + "/api/events"
            quiet = asyncio.run(measure(ws_url, post_url, engine.pid, 0, args.rate, args.seconds))
            ours = asyncio.run(measure(ws_url, post_url, engine.pid, args.clients, args.rate, args.seconds))
    port = free_port()
    naive = subprocess.Popen([sys.executable, "-c", NAIVE, str(port)])
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                time.sleep(0.1)
        base = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}/events", naive.pid, 10,
                                   args.rate, args.seconds))
    finally:
        naive.kill()
        naive.wait()
    push_cpu = max(0.0, ours["cpu_s"] - quiet["cpu_s"])
    ours_us = push_cpu / ours["delivered"] * 1e6 if ours["delivered"] else float("nan")
    base_us = base["cpu_s"] / base["delivered"] * 1e6 if base["delivered"] else float("nan")
    rows = [
        ("clients", f"{args.clients}", "10", ""),
        ("events posted", f"{ours['sent']}", f"{base['sent']}", ""),
        ("events per client", f"{ours['events']:.0f}", f"{base['events']:.0f}", ""),
        ("frames per client", f"{ours['frames']:.0f}", f"{base['frames']:.0f}",
         f"{base['frames'] / ours['frames']:.1f}x fewer" if ours["frames"] else "-"),
        ("events per frame", f"{ours['events'] / ours['frames']:.1f}" if ours["frames"] else "-",
         f"{base['events'] / base['frames']:.1f}" if base["frames"] else "-", "goal ≈ 10"),
        ("CPU per delivered event (µs)", f"{ours_us:.2f}", f"{base_us:.2f}",
         f"{base_us / ours_us:.1f}x less" if ours_us else "-"),
        ("latency p50 (ms)", f"{quantile(ours['latencies'], 0.5) * 1e3:.1f}",
         f"{quantile(base['latencies'], 0.5) * 1e3:.1f}", ""),
        ("latency p99 (ms)", f"{quantile(ours['latencies'], 0.99) * 1e3:.1f}",
         f"{quantile(base['latencies'], 0.99) * 1e3:.1f}", ""),
        ("server RSS (MB)", f"{ours['rss_mb']:.1f}", f"{base['rss_mb']:.1f}", ""),
        ("engine CPU, same load, no client (s)", f"{quiet['cpu_s']:.2f}", "", ""),
    ]
    print(f"\nbench/ws.py: {args.rate} events/s for {args.seconds:g} s\n")
    print(f"| {'figure':<38} | {'engine /ws (batched)':>20} | {'one frame per event':>20} | {'ratio':>14} |")
    print(f"|{'-' * 40}|{'-' * 21}:|{'-' * 21}:|{'-' * 15}:|")
    for name, ours_v, base_v, ratio in rows:
        print(f"| {name:<38} | {ours_v:>20} | {base_v:>20} | {ratio:>14} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
