"""Event store benchmark: `python bench/store.py [--events N]`.

Prints one table; every figure has its baseline measured in the same run:
- durable appends: group commit (1,000-event batches, and 8 concurrent single-event appenders) against
  one fsync per event;
- validation per event: the compiled validator against jsonschema;
- scanning N stored events: RSS growth of the streaming reader against loading the file (v0.5);
- gzip ratio of a realistic day of events (goal ≥ 5×).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.events import EventValidator, format_ts  # noqa: E402
from engine.schemas import load_schema, validator  # noqa: E402
from engine.store.retention import _gzip_to_tmp  # noqa: E402
from engine.store.writer import EventWriter  # noqa: E402

AGENTS = ("coder", "analyst", "monitor", "researcher")
PROCS = ("python3", "node", "postgres", "chromium", "java", "aios-agent", "sshd", "systemd-journald")


def realistic_events(n: int, start: float, rng: random.Random, validator_: EventValidator) -> list[dict]:
    """A mix like a live fleet's: heartbeats, tasks, errors, resource alerts with top processes."""
    out = []
    for i in range(n):
        agent = rng.choice(AGENTS)
        roll = rng.random()
        ts = start + i * 0.05
        if roll < 0.45:
            raw = {"type": "agent.heartbeat", "agent": agent, "data": {"pid": 4000 + AGENTS.index(agent),
                                                                        "uptime_s": int(ts - start)}}
        elif roll < 0.85:
            ok = rng.random() > 0.1
            raw = {"type": "agent.task_done", "agent": agent, "severity": "info" if ok else "warning",
                   "data": {"task": f"task-{rng.randrange(10_000)}", "ok": ok,
                            "duration_ms": int(rng.lognormvariate(6, 1))}}
        elif roll < 0.95:
            raw = {"type": "agent.error", "agent": agent, "severity": "error",
                   "data": {"message": rng.choice(["timeout calling model", "rate limited", "tool crashed"]),
                            "code": rng.choice([429, 500, 503])}}
        else:
            top = [{"pid": rng.randrange(1, 60_000), "name": rng.choice(PROCS),
                    "cpu_pct": round(rng.uniform(0, 100), 1), "rss_mb": rng.randrange(10, 4000)}
                   for _ in range(5)]
            raw = {"type": "resource.cpu_spike", "source": "sensor.host", "severity": "warning",
                   "data": {"cpu_pct": round(rng.uniform(85, 100), 1), "threshold": 85, "top": top}}
        raw["ts"] = format_ts(ts)
        out.append(validator_.normalize(raw, source=f"agent.{agent}"))
    return out


def bench_appends(events: list[dict], tmp: Path) -> list[tuple[str, float, str]]:
    rows = []
    single = events[:2000]
    with EventWriter(tmp / "single") as writer:
        started = time.perf_counter()
        for event in single:
            writer.append([event])
        per_event = len(single) / (time.perf_counter() - started)
    rows.append(("durable appends, one fsync per event (baseline)", per_event, "events/s"))

    with EventWriter(tmp / "group") as writer:
        started = time.perf_counter()
        for i in range(0, len(events), 1000):
            writer.append(events[i:i + 1000])
        batched = len(events) / (time.perf_counter() - started)
    rows.append(("durable appends, group commit of 1,000-event batches", batched, "events/s"))

    concurrent_events = events[:20_000]
    with EventWriter(tmp / "concurrent") as writer:
        def worker(part: list[dict]) -> None:
            for event in part:
                writer.append([event])
        threads = [threading.Thread(target=worker, args=(concurrent_events[k::8],)) for k in range(8)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shared = len(concurrent_events) / (time.perf_counter() - started)
        commits = writer.stats.commits
    rows.append((f"durable appends, 8 threads x 1 event (shared fsync, {commits} commits)", shared, "events/s"))
    return rows, per_event


def bench_validation(events: list[dict]) -> list[tuple[str, float, str]]:
    import fastjsonschema

    sample = events[:5000]
    fast = fastjsonschema.compile(load_schema("event"))
    slow = validator("event")
    started = time.perf_counter()
    for event in sample:
        slow.is_valid(event)
    slow_us = (time.perf_counter() - started) / len(sample) * 1e6
    started = time.perf_counter()
    for _ in range(4):
        for event in sample:
            fast(event)
    fast_us = (time.perf_counter() - started) / (4 * len(sample)) * 1e6
    full = EventValidator()
    raws = [{k: v for k, v in e.items() if k not in ("id", "host")} for e in sample]
    started = time.perf_counter()
    for raw in raws:
        full.normalize(raw)
    full_us = (time.perf_counter() - started) / len(raws) * 1e6
    return [("validation per event, jsonschema (baseline)", slow_us, "µs"),
            ("validation per event, compiled (fastjsonschema)", fast_us, "µs"),
            ("full intake normalization per event (limits+schema+ts+id)", full_us, "µs")], slow_us


SCAN = """
import resource, sys, orjson
sys.path.insert(0, {root!r})
from engine.store.reader import read_events
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "stream":
    n = sum(1 for _ in read_events(sys.argv[2]))
else:  # v0.5: the whole history in memory
    with open(sys.argv[3], "rb") as f:
        events = [orjson.loads(line) for line in f]
    n = len(events)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(n, (after - before) / 1024)
"""


def bench_scan(events: list[dict], total: int, tmp: Path) -> list[tuple[str, float, str]]:
    events_dir = tmp / "scan" / "events"
    events_dir.mkdir(parents=True)
    day_file = events_dir / "2026-02-24.jsonl"
    with open(day_file, "wb") as handle:
        written = 0
        while written < total:
            chunk = events[: total - written]
            handle.write(b"".join(orjson.dumps(e) + b"\n" for e in chunk))
            written += len(chunk)
    rows = []
    growth = {}
    for mode in ("load", "stream"):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", SCAN.format(root=str(Path(__file__).parent.parent)), mode,
                              str(events_dir), str(day_file)], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        count, mb = out.stdout.split()
        assert int(count) == total
        growth[mode] = float(mb)
        label = "load whole history (v0.5, baseline)" if mode == "load" else "streaming reader"
        rows.append((f"scan {total:,} events: RSS growth, {label}", float(mb), "MB"))
        rows.append((f"scan {total:,} events: time, {label}", total / seconds, "events/s"))
    return rows, growth


def bench_gzip(events: list[dict], tmp: Path) -> list[tuple[str, float, str]]:
    raw = tmp / "gz" / "2026-02-24.jsonl"
    raw.parent.mkdir()
    raw.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    gz = tmp / "gz" / "out.gz"
    _gzip_to_tmp(raw, gz)
    return [("gzip archive size ratio on realistic events (goal >= 5x)", raw.stat().st_size / gz.stat().st_size,
             "x")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events for the append benchmark")
    parser.add_argument("--scan", type=int, default=1_000_000, help="events to scan")
    args = parser.parse_args()
    rng = random.Random(7)
    start = time.time() - args.events * 0.05 - 60
    events = realistic_events(args.events, start, rng, EventValidator())
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as name:
        tmp = Path(name)
        append_rows, baseline_rate = bench_appends(events, tmp)
        validation_rows, baseline_us = bench_validation(events)
        scan_rows, growth = bench_scan(events, args.scan, tmp)
        gzip_rows = bench_gzip(events, tmp)
    print(f"\nEvent store benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n")
    print(f"| {'measure':<72} | {'value':>12} | {'unit':<8} | {'vs baseline':>11} |")
    print(f"|{'-' * 74}|{'-' * 14}|{'-' * 10}|{'-' * 13}|")

    def row(label: str, value: float, unit: str, ratio: str) -> None:
        print(f"| {label:<72} | {value:>12,.2f} | {unit:<8} | {ratio:>11} |")

    for label, value, unit in append_rows:
        row(label, value, unit, f"{value / baseline_rate:.1f}x")
    for label, value, unit in validation_rows:
        row(label, value, unit, f"{baseline_us / value:.1f}x faster" if "compiled" in label else "")
    for label, value, unit in scan_rows:
        ratio = ""
        if unit == "MB" and "streaming" in label:
            ratio = f"{growth['load']:.0f} -> {value:.1f} MB"
        row(label, value, unit, ratio)
    for label, value, unit in gzip_rows:
        row(label, value, unit, "")


if __name__ == "__main__":
    main()
