"""Office rendering benchmark: `python bench/office.py [--agents 50] [--seconds 5]`.

A real `aios-engine run` with no supervised agents; this script plays a fleet of `--agents` agents by posting
what agents post (heartbeats, tasks started and done, some failing, learning spells, pipelines shared by two
agents) at about 40 events/s, so sprites change state, walk and meet while the page is measured. Headless
Debian chromium (Playwright, `executable_path`) opens `/office` with animation running and measures in the
page (`window.office.measure`): frames per second of `requestAnimationFrame`, and what one draw of the canvas
costs (p50/p95 ms). Baseline in the same run: the same page with one agent. Goal: ≥ 30 frames/s at 50 agents.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from service import running_engine  # bench/ is this script's directory, first on sys.path

RULES = "- {id: never, on: bench.never, steps: [{id: s, action: emit, with: {type: bench.noted}}]}\n"
CONFIG = "sensors: {interval: 1h}\nagents: {}\n"


def post(url: str, events: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(url + "/api/events", data=json.dumps(events).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def fleet(url: str, names: list[str], stop: threading.Event, seed: int = 7) -> None:
    """Every agent beats once a second; each tick some start, finish (one in five failing), learn or pair up."""
    rng, busy = random.Random(seed), set()
    while not stop.is_set():
        events: list[dict[str, Any]] = [{"type": "agent.heartbeat", "agent": n} for n in names]
        for name in rng.sample(names, k=min(len(names), 8)):
            if name in busy:
                busy.discard(name)
                events.append({"type": "agent.task_done", "agent": name,
                               "data": {"ok": rng.random() > 0.2, "duration_ms": rng.randint(100, 9000)}})
            elif rng.random() < 0.1:
                events.append({"type": "agent.learning", "agent": name, "data": {"active": rng.random() < 0.5}})
            else:
                busy.add(name)
                pipeline = f"p{rng.randint(0, len(names) // 4)}" if rng.random() < 0.3 else None
                events.append({"type": "agent.task_started", "agent": name,
                               "data": {"task": "work", **({"pipeline": pipeline} if pipeline else {})}})
        post(url, events)
        stop.wait(1.0)


def measure(url: str, agents: int, seconds: float, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright
    names = [f"agent-{n:02d}" for n in range(agents)]
    stop = threading.Event()
    feeder = threading.Thread(target=fleet, args=(url, names, stop), daemon=True)
    post(url, [{"type": "agent.heartbeat", "agent": n} for n in names])
    feeder.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/office")
            page.wait_for_function(f"Object.keys(window.office.agents).length >= {agents}", timeout=30_000)
            time.sleep(2.0)  # the first walks and meetings start
            result = page.evaluate(f"window.office.measure({int(seconds * 1000)})")
            result["canvas"] = page.evaluate("[document.getElementById('office').width, "
                                             "document.getElementById('office').height]")
            browser.close()
    finally:
        stop.set()
        feeder.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    rows = {}
    for label, agents in (("baseline: 1 agent", 1), (f"{args.agents} agents", args.agents)):
        with tempfile.TemporaryDirectory() as tmp, running_engine(Path(tmp), RULES, CONFIG) as (_, url):
            rows[label] = measure(url, agents, args.seconds, chromium)
    base, run = rows["baseline: 1 agent"], rows[f"{args.agents} agents"]
    print(f"\n/office in headless chromium, animation running, {args.seconds:.0f} s measured in the page\n")
    print(f"| figure        | {'baseline: 1 agent':>17} | {f'{args.agents} agents':>10} | ratio | goal | result |")
    print("|---------------|------------------:|-----------:|------:|------|--------|")
    for key, name, goal in (("agents", "agents drawn", ""), ("fps", "frames/s", "≥ 30"),
                            ("draw_ms_p50", "draw p50 (ms)", ""), ("draw_ms_p95", "draw p95 (ms)", "")):
        ratio = f"{run[key] / base[key]:.2f}" if base[key] else "-"
        verdict = ("PASS" if run[key] >= 30 else "FAIL") if goal else ""
        print(f"| {name:<13} | {base[key]:>17.2f} | {run[key]:>10.2f} | {ratio:>5} | {goal:<4} | {verdict:<6} |")
    sizes = ["x".join(map(str, row["canvas"])) for row in (base, run)]
    print(f"| canvas (px)   | {sizes[0]:>17} | {sizes[1]:>10} |       |      |        |")
    return 0 if run["fps"] >= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
