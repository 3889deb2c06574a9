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
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

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


async def blast(url: str, bodies: list[bytes], clients: int) -> tuple[float, float, int]:
    """POST every body, `clients` at a time over one pooled session; returns seconds taken, CPU seconds
    this process spent (how much of the two cores the load generator took) and how many POSTs got 503."""
    refused = [0]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as http:
        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(f"{url}/api/events", data=body, headers=headers) as response:
                    if response.status == 503:  # overloaded: the body goes again once the engine asks for it
                        refused[0] += 1
                        queue.put_nowait(body)
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    elif response.status != 202:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                    await response.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, time.process_time() - cpu, refused[0]


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


@contextlib.contextmanager
def running_engine(tmp: Path, rules: str, config: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`aios-engine run` on a free port with `rules` and `config` in `tmp`; (process, url) once it listens."""
    (tmp / "rules").mkdir()
    (tmp / "rules" / "bench.yaml").write_text(rules)
    (tmp / "aios.yaml").write_text(config)
    port = free_port()
    engine = subprocess.Popen([sys.executable, os.environ.get("BENCH_ENGINE", str(ROOT / "bin" / "aios-engine")), "run", "--port", str(port),
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
        yield engine, f"http://127.0.0.1:{port}"
    finally:
        engine.terminate()
        try:
            engine.wait(timeout=120)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()


def profiled(pid: int, out: str | None, seconds: float) -> subprocess.Popen[bytes] | None:
    """`--py-spy OUT`: sample the engine (all threads, GIL holders marked) while the batches go in."""
    if not out:
        return None
    fmt = "raw" if out.endswith(".txt") else "flamegraph"
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                             "--format", fmt, "--threads", "--gil", "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- overload -------------------------------------------------------------------------------------------
# Every event wants its own 50 ms fix (the throttle key is the event's own sequence number), so runs queue
# far faster than 5 slots run them: the scheduler's queue fills and the decision loop falls behind until
# the edge refuses with 503. Clients wait as Retry-After says, as the engine's own agents do
# (--overload-ignore-retry-after: the worst case, clients that hammer). 100-event POSTs by default: with
# single events (or 10) 16 clients do not outrun the decision loop on two cores, so nothing is refused.
OVERLOAD_RULES = """
- id: bench-overload
  on: bench.load
  exclusive: true
  throttle: {within: 1h, key: [data.seq]}
  steps:
    - {id: work, action: shell, with: {argv: [sleep, "0.05"]}}
"""


@dataclass
class Overload:
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # statuses other than 202/503, errors, hung requests
    acknowledged: list[str] = field(default_factory=list)
    refused_events: int = 0
    started_at: float = 0.0
    health: list[tuple[float, int]] = field(default_factory=list)  # (seconds, status) of each poll
    decisions_per_s: list[int] = field(default_factory=list)
    lost: int = 0
    repeated: int = 0
    unacknowledged_stored: int = 0
    commit_buckets: list[str] = field(default_factory=list)  # the store's group commit times (/metrics)


async def overload_clients(url: str, seconds: float, clients: int, per_post: int, honor_retry_after: bool,
                           result: Overload) -> None:
    timeout = aiohttp.ClientTimeout(total=30)  # longer than this is a hung request: a failure
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as http:
        async def client(number: int) -> None:
            sent = 0
            while time.monotonic() < end:
                body = orjson.dumps([{"type": "bench.load", "data": {"seq": f"{number}-{sent + i}"}}
                                     for i in range(per_post)])
                sent += per_post
                try:
                    async with http.post(f"{url}/api/events", data=body, headers=headers) as response:
                        payload = await response.read()
                        result.statuses[response.status] += 1
                        if response.status == 202:
                            result.acknowledged.extend(orjson.loads(payload)["ids"])
                        elif response.status == 503:
                            result.refused_events += per_post
                            if honor_retry_after:  # as the engine's own agents do (engine/demo/worker.py)
                                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        else:
                            result.failures.append(f"{response.status}: {payload[:200]!r}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    result.failures.append(f"{type(exc).__name__}: {exc}")

        result.started_at = time.time()
        end = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        result.seconds = time.perf_counter() - started


def poll_health(port: int, stop: Any, out: Any) -> None:
    """In its own process (the clients' loop must not delay it): GET /api/health every 100 ms."""
    polls: list[tuple[float, int]] = []
    connection = HTTPConnection("127.0.0.1", port, timeout=30)
    tick = time.monotonic()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            connection.request("GET", "/api/health")
            response = connection.getresponse()
            response.read()
            polls.append((time.perf_counter() - started, response.status))
        except (OSError, HTTPException):
            polls.append((time.perf_counter() - started, 0))
            connection.close()
            connection = HTTPConnection("127.0.0.1", port, timeout=30)
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
    out.send(polls)


def stored(data_dir: Path, event_type: str) -> list[dict[str, Any]]:
    """Every stored event of `event_type`, as `aios-engine events --format json` prints them."""
    out = subprocess.run([sys.executable, str(ROOT / "bin" / "aios-engine"), "events", "--data", str(data_dir),
                          "--type", event_type, "--since", "2000-01-01T00:00:00Z", "--format", "json"],
                         capture_output=True, check=True)
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run_overload(seconds: float, clients: int, per_post: int, honor_retry_after: bool) -> Overload:
    result = Overload()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = "sensors: {interval: 1h}\nreactor: {shutdown_grace_s: 1}\n"
        with running_engine(tmp, OVERLOAD_RULES, config) as (_, url):
            port = int(url.rsplit(":", 1)[1])
            context = multiprocessing.get_context("fork")
            stop, (receive, send) = context.Event(), context.Pipe(duplex=False)
            poller = context.Process(target=poll_health, args=(port, stop, send))
            poller.start()
            asyncio.run(overload_clients(url, seconds, clients, per_post, honor_retry_after, result))
            stop.set()
            result.health = receive.recv()
            poller.join()
            with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
                result.commit_buckets = [line.decode() for line in response.read().splitlines()
                                         if line.startswith(b"aios_store_commit_seconds_bucket")]
        data_dir = tmp / "data"
        counts = Counter(event["id"] for event in stored(data_dir, "bench.load"))
        acknowledged = set(result.acknowledged)
        result.lost = sum(1 for event_id in acknowledged if counts[event_id] == 0)
        result.repeated = sum(1 for event_id in acknowledged if counts[event_id] > 1) + \
            len(result.acknowledged) - len(acknowledged)
        result.unacknowledged_stored = sum(1 for event_id in counts if event_id not in acknowledged)
        per_second = Counter(int(epoch(event["ts"]) - result.started_at)
                             for event in stored(data_dir, "scheduler.decision"))
        result.decisions_per_s = [per_second[s] for s in range(int(result.seconds))]  # whole seconds of the burst
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events ingested for the RSS growth figure")
    parser.add_argument("--overload-s", type=float, default=30.0, help="length of the overload burst (0: skip it)")
    parser.add_argument("--overload-batch", type=int, default=100, help="events per POST in the overload burst")
    parser.add_argument("--overload-ignore-retry-after", action="store_true",
                        help="overload clients post again at once after a 503 (the worst case)")
    parser.add_argument("--py-spy", metavar="OUT", help="profile the engine during the batches (.svg, or .txt: raw)")
    parser.add_argument("--only-ingest", action="store_true", help="only the two ingest figures (for profiling)")
    args = parser.parse_args()
    bare = child_rss("pass")
    imports = child_rss("import engine.service.app")
    v05_n = max(args.events // 10, 1000)
    v05 = child_rss("import orjson\nevent = {'type': 'agent.task_done', 'agent': 'coder', "
                    "'data': {'ok': True, 'duration_ms': 412, 'task': 't'}}\n"
                    f"history = [orjson.loads(orjson.dumps(event)) for _ in range({v05_n})]") - child_rss("import orjson")
    v05_growth = v05 * args.events / v05_n

    with tempfile.TemporaryDirectory() as name:
        with running_engine(Path(name), RULES, "sensors: {interval: 1h}\n") as (engine, url):
            idle = rss_mb(engine.pid)
            single_n = 20_000
            single_s, _, single_503 = asyncio.run(blast(url, bodies(single_n, 1), 16))
            batch_n = 200_000
            spy = profiled(engine.pid, args.py_spy, 6)
            batch_s, batch_cpu, batch_503 = asyncio.run(blast(url, bodies(batch_n, 100), 16))
            if spy is not None:
                spy.wait()
            latencies = [0.0] if args.only_ingest else asyncio.run(probe_latency(url, 200))
            before = rss_mb(engine.pid)
            remaining = 0 if args.only_ingest else args.events - single_n - batch_n
            chunk = 200_000
            while remaining > 0:
                asyncio.run(blast(url, bodies(min(chunk, remaining), 100), 16))
                remaining -= chunk
            time.sleep(1.0)
            after = rss_mb(engine.pid)
    load = run_overload(args.overload_s, 16, args.overload_batch,
                                                    not args.overload_ignore_retry_after) if args.overload_s > 0 and not args.only_ingest \
        else None

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def row(measure: str, value: str, unit: str = "", versus: str = "") -> None:
        print(f"| {measure:<70} | {value:>10} | {unit:<8} | {versus:>12} |")

    print(f"\nService benchmark ({os.cpu_count()} CPUs; engine and load generator share them)\n")
    row("measure", "value", "unit", "vs baseline")
    print(f"|{'-' * 72}|{'-' * 12}|{'-' * 10}|{'-' * 14}|")
    single_rate, batch_rate = single_n / single_s, batch_n / batch_s
    row("ingest, single-event POSTs, 16 clients (baseline)", f"{single_rate:,.0f}", "events/s", "1.0x")
    row("ingest, 100-event batches, 16 clients (goal >= 50k)", f"{batch_rate:,.0f}", "events/s",
        f"{batch_rate / single_rate:.1f}x")
    row("  load generator's CPU during the batches (of 2 cores)", f"{batch_cpu / batch_s:.2f}", "cores")
    row("  POSTs refused with 503 (overloaded) and sent again: single / batches", f"{single_503}/{batch_503}",
        "requests")
    row(f"POST -> scheduler.decision p50 ({len(latencies)} probes)", f"{pct(latencies, 0.5):.2f}", "ms")
    row("POST -> scheduler.decision p99 (goal < 20 ms)", f"{pct(latencies, 0.99):.2f}", "ms")
    row("RSS, bare python interpreter", f"{bare:.1f}", "MB")
    row("RSS, python + the engine imports (no work)", f"{imports:.1f}", "MB", f"+{imports - bare:.1f}")
    row("RSS, engine idle (goal < 60)", f"{idle:.1f}", "MB")
    row(f"RSS growth after {args.events:,} ingested events (goal < 5)", f"{after - before:.1f}", "MB")
    row("RSS growth, v0.5 keeping every event in memory (same count, scaled)", f"{v05_growth:.1f}", "MB",
        f"{v05_growth / max(after - before, 0.1):.0f}x")
    if load is None:
        return
    health = sorted(seconds for seconds, _ in load.health)
    health_ok = sum(1 for _, status in load.health if status == 200)
    per_s = sorted(load.decisions_per_s) or [0]
    waits = "no wait on 503" if args.overload_ignore_retry_after else "Retry-After kept"
    row(f"overload: {load.seconds:.0f} s, 16 clients x {args.overload_batch}-event POSTs, {waits}, 50 ms runs"[:70], "")
    row("  POSTs answered 202 / 503 / other or hung (goal: other = 0)",
        f"{load.statuses[202]}/{load.statuses[503]}/{len(load.failures)}",
        "requests")
    row("  accepted", f"{len(load.acknowledged) / load.seconds:,.0f}", "events/s",
        f"{len(load.acknowledged) / load.seconds / single_rate:.2f}x")
    row("  refused (503)", f"{load.refused_events / load.seconds:,.0f}", "events/s")
    row("  acknowledged events lost / stored twice (goal 0 / 0)", f"{load.lost}/{load.repeated}", "events")
    row("  stored but not acknowledged (a client gave up on the answer)", f"{load.unacknowledged_stored}", "events")
    row("  scheduler.decision per second, min / median", f"{per_s[0]}/{per_s[len(per_s) // 2]}", "per s")
    row("  GET /api/health p50 / p99 (goal p99 < 100 ms)", f"{pct(health, 0.5):.0f}/{pct(health, 0.99):.0f}", "ms")
    row("  GET /api/health max", f"{pct(health, 1.0):.0f}", "ms")
    row("  GET /api/health answered 200 / 503 / other", f"{health_ok}/"
        f"{sum(1 for _, s in load.health if s == 503)}/{sum(1 for _, s in load.health if s not in (200, 503))}",
        "polls")
    slow = [line for line in load.commit_buckets if 'le="0.1"' in line or 'le="+Inf"' in line]
    if len(slow) == 2:  # a stall of the disk shows as a second without decisions: dispatches wait on it
        over = float(slow[1].split()[-1]) - float(slow[0].split()[-1])
        row("  group commits (write + fsync) slower than 100 ms during the burst", f"{over:.0f}", "commits")
    for failure in load.failures[:20]:
        print(f"  failure: {failure}")


if __name__ == "__main__":
    main()
