"""Service benchmark: `python bench/service.py [--events N]`.

Runs `aios-engine run` as a real process on 127.0.0.1 and loads it from this process with aiohttp:
- ingest events/s: single-event POSTs (the baseline) and 100-event batches, from 16 concurrent clients;
- end-to-end POST → `scheduler.decision` latency (p50/p99), from the client's send to the decision's ts;
- RSS: a bare interpreter and the engine's imports (the cost of loading), the engine idle, and after N
  ingested events (growth), against v0.5's way of keeping every event in memory (measured here on a
  tenth of N and scaled: it grows linearly).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
RULES = """
- id: bench-probe
  on: bench.probe
  steps:
    - {id: note, action: emit, with: {type: bench.noted}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def child_rss(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code + "\nimport psutil, os\n"
                          "print(psutil.Process(os.getpid()).memory_info().rss / 2**20)"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.split()[-1])


async def blast(url: str, bodies: list[bytes], clients: int) -> float:
    """POST every body, `clients` at a time; returns seconds taken."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(f"{url}/api/events", data=body,
                                     headers={"Content-Type": "application/json"}) as response:
                    if response.status != 202:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started


def bodies(count: int, per_body: int) -> list[bytes]:
    event = {"type": "agent.task_done", "agent": "coder", "data": {"ok": True, "duration_ms": 412, "task": "t"}}
    one = orjson.dumps([event] * per_body) if per_body > 1 else orjson.dumps(event)
    return [one] * (count // per_body)


async def probe_latency(url: str, count: int) -> list[float]:
    """Probes spread over time while nothing else loads the engine; latency = decision ts − send time."""
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        for n in range(count):
            event_id = f"probe-{n:05d}-{os.getpid()}"
            sent[event_id] = time.time()
            async with http.post(f"{url}/api/events", json={"id": event_id, "type": "bench.probe"}) as response:
                await response.read()
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        latencies = []
        after = None
        while True:
            params = {"type": "scheduler.decision", "limit": "1000", **({"after": after} if after else {})}
            async with http.get(f"{url}/api/events", params=params) as response:
                page = await response.json()
            for event in page["events"]:
                cause = event["data"].get("cause")
                if cause in sent:
                    decided = time.mktime(time.strptime(event["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
                        + float("0." + event["ts"][20:26])
                    latencies.append(decided - sent[cause])
            if page["next"] is None:
                break
            after = page["next"]
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events ingested for the RSS growth figure")
    args = parser.parse_args()
    bare = child_rss("pass")
    imports = child_rss("import engine.service.app")
    v05_n = max(args.events // 10, 1000)
    v05 = child_rss("import orjson\nevent = {'type': 'agent.task_done', 'agent': 'coder', "
                    "'data': {'ok': True, 'duration_ms': 412, 'task': 't'}}\n"
                    f"history = [orjson.loads(orjson.dumps(event)) for _ in range({v05_n})]") - child_rss("import orjson")
    v05_growth = v05 * args.events / v05_n

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "rules").mkdir()
        (tmp / "rules" / "bench.yaml").write_text(RULES)
        (tmp / "aios.yaml").write_text("sensors: {interval: 1h}\n")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        engine = subprocess.Popen([sys.executable, str(ROOT / "bin" / "aios-engine"), "run", "--port", str(port),
                                   "--config", str(tmp / "aios.yaml")], cwd=tmp, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "AIOS_LOG_LEVEL": "WARNING"})
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline or engine.poll() is not None:
                        raise SystemExit(f"engine did not start: {engine.stderr.read() if engine.stderr else ''}") from None
                    time.sleep(0.1)
            time.sleep(2.0)
            idle = rss_mb(engine.pid)
            single_n = 20_000
            single_s = asyncio.run(blast(url, bodies(single_n, 1), 16))
            batch_n = 200_000
            batch_s = asyncio.run(blast(url, bodies(batch_n, 100), 16))
            latencies = asyncio.run(probe_latency(url, 200))
            before = rss_mb(engine.pid)
            remaining = args.events - single_n - batch_n
            chunk = 200_000
            while remaining > 0:
                asyncio.run(blast(url, bodies(min(chunk, remaining), 100), 16))
                remaining -= chunk
            time.sleep(1.0)
            after = rss_mb(engine.pid)
        finally:
            engine.terminate()
            engine.wait(timeout=60)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print(f"\nService benchmark ({os.cpu_count()} CPUs; engine and load generator share them)\n")
    print(f"| {'measure':<70} | {'value':>10} | {'unit':<8} | {'vs baseline':>12} |")
    print(f"|{'-' * 72}|{'-' * 12}|{'-' * 10}|{'-' * 14}|")
    single_rate, batch_rate = single_n / single_s, batch_n / batch_s
    print(f"| {'ingest, single-event POSTs, 16 clients (baseline)':<70} | {single_rate:>10,.0f} | events/s | "
          f"{'1.0x':>12} |")
    print(f"| {'ingest, 100-event batches, 16 clients (goal >= 20k)':<70} | {batch_rate:>10,.0f} | events/s | "
          f"{batch_rate / single_rate:>11.1f}x |")
    print(f"| {'POST -> scheduler.decision p50 (' + str(len(latencies)) + ' probes)':<70} | {pct(0.5):>10.2f} | "
          f"{'ms':<8} | {'':>12} |")
    print(f"| {'POST -> scheduler.decision p99 (goal < 20 ms)':<70} | {pct(0.99):>10.2f} | {'ms':<8} | {'':>12} |")
    print(f"| {'RSS, bare python interpreter':<70} | {bare:>10.1f} | {'MB':<8} | {'':>12} |")
    print(f"| {'RSS, python + the engine imports (no work)':<70} | {imports:>10.1f} | {'MB':<8} | "
          f"{'+' + format(imports - bare, '.1f'):>12} |")
    print(f"| {'RSS, engine idle (goal < 60)':<70} | {idle:>10.1f} | {'MB':<8} | {'':>12} |")
    print(f"| {'RSS growth after ' + format(args.events, ',') + ' ingested events (goal < 5)':<70} | "
          f"{after - before:>10.1f} | {'MB':<8} | {'':>12} |")
    print(f"| {'RSS growth, v0.5 keeping every event in memory (same count, scaled)':<70} | {v05_growth:>10.1f} | "
          f"{'MB':<8} | {v05_growth / max(after - before, 0.1):>11.0f}x |")


if __name__ == "__main__":
    main()
