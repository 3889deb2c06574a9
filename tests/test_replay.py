"""`aios-engine replay`: a deterministic backtest over raw and archived days, in the §3 json format."""
from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from conftest import make_event, run_cli

from engine.cli import main

RULES = """\
- id: restart
  on: agent.down
  when: {data.exit_code: {ne: 0}}
  confidence: 0.9
  throttle: {within: 2m, key: [agent]}
  steps: [{id: a, action: compact}]
- id: notify
  on: [agent.down, resource.cpu_spike]
  exclusive: false
  priority: P3
  steps: [{id: a, action: compact}]
- id: cpu
  on: resource.cpu_spike
  sustained: {count: 2, within: 1m}
  confidence: 0.7
  steps: [{id: a, action: compact}]
- id: off
  on: agent.error
  enabled: false
  steps: [{id: a, action: compact}]
"""

ARCHIVED = [  # 2026-01-01, gzip in archive/
    make_event("01A", "2026-01-01T10:00:00.000000Z", "agent.down", exit_code=1),
    make_event("01B", "2026-01-01T10:01:00.000000Z", "agent.down", exit_code=1),  # restart throttled
    make_event("01C", "2026-01-01T10:01:30.000000Z", "resource.cpu_spike", agent=None, pct=99),
    make_event("01D", "2026-01-01T10:02:00.000000Z", "resource.cpu_spike", agent=None, pct=99),
]
RAW = [  # 2026-01-02, raw day
    make_event("02A", "2026-01-02T08:00:00.000000Z", "agent.error"),
    make_event("02B", "2026-01-02T08:00:01.000000Z", "agent.heartbeat"),
    make_event("02C", "2026-01-02T08:00:02.000000Z", "agent.down", exit_code=0),
]

EXPECTED = [
    {"event": "01A", "type": "agent.down", "playbook": "restart", "priority": "P2", "confidence": 0.9},
    {"event": "01A", "type": "agent.down", "playbook": "notify", "priority": "P3", "confidence": 0.5},
    {"event": "01B", "type": "agent.down", "playbook": "notify", "priority": "P3", "confidence": 0.5},
    {"event": "01C", "type": "resource.cpu_spike", "playbook": "notify", "priority": "P3", "confidence": 0.5},
    {"event": "01D", "type": "resource.cpu_spike", "playbook": "cpu", "priority": "P1", "confidence": 0.7},
    {"event": "01D", "type": "resource.cpu_spike", "playbook": "notify", "priority": "P3", "confidence": 0.5},
    {"event": "02A", "type": "agent.error", "playbook": None, "reason": "disabled"},
    {"event": "02C", "type": "agent.down", "playbook": "notify", "priority": "P3", "confidence": 0.5},
]
SUMMARY = {"events": 7, "matched": 6, "triggering": 5, "runs": 7, "playbooks": {
    "cpu": {"fired": 1, "suppressed": {"sustained": 1}},
    "notify": {"fired": 5, "suppressed": {}},
    "off": {"fired": 0, "suppressed": {"disabled": 1}},
    "restart": {"fired": 1, "suppressed": {"throttled": 1}}}}


def write_lines(path: Path, events: list[dict[str, Any]], compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(orjson.dumps(e) + b"\n" for e in events)
    path.write_bytes(gzip.compress(body) if compress else body)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    events = tmp_path / "data" / "events"
    write_lines(events / "archive" / "2026-01-01.jsonl.gz", ARCHIVED, compress=True)
    write_lines(events / "2026-01-02.jsonl", RAW)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "all.yaml").write_text(RULES)
    (tmp_path / "aios.yaml").write_text("")  # every key defaulted: ./data and ./rules, not the embedded demo
    return tmp_path


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_json_over_raw_and_archived_days(store: Path) -> None:
    """The real command, as §3 specifies it: one object per line, the summary last."""
    done = run_cli("replay", "--events", str(store / "data" / "events"), "--rules", str(store / "rules"),
                   "--format", "json", cwd=store)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[:-1] == EXPECTED
    assert [list(line) for line in lines[:2]] == [["event", "type", "playbook", "priority", "confidence"]] * 2
    assert lines[-1] == {"summary": SUMMARY}


def test_replay_is_deterministic_and_defaults_to_the_data_directory(store: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(store)
    first = replay(capsys, "--format", "json")
    assert first == replay(capsys, "--format", "json") and first[0] == 0
    assert [json.loads(line) for line in first[1][:-1]] == EXPECTED


def test_since_until_and_an_ndjson_file(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = store / "one.ndjson"
    write_lines(events, ARCHIVED + RAW)
    code, lines, _ = replay(capsys, "--events", str(events), "--rules", str(store / "rules"), "--format", "json",
                            "--since", "2026-01-01T10:00:30Z", "--until", "2026-01-02")
    records = [json.loads(line) for line in lines]
    assert code == 0 and [r["event"] for r in records[:-1]] == ["01B", "01B", "01C", "01D", "01D"]
    assert records[1] == {"event": "01B", "type": "agent.down", "playbook": "notify", "priority": "P3",
                          "confidence": 0.5}
    assert records[0]["playbook"] == "restart"  # 01A is outside the window: nothing throttles 01B


def test_text_shows_winner_reasons_and_a_summary_table(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = replay(capsys, "--events", str(store / "data" / "events"), "--rules", str(store / "rules"))
    assert code == 0
    assert lines[0] == "2026-01-01T10:00:00.000000Z  01A  agent.down  -> restart (P2, 0.9)"
    assert "01B  agent.down  -> notify (P3, 0.5, beside)  [set aside: restart: throttled]" in lines[2]
    assert any(line.endswith("02A  agent.error  -> none (disabled)") for line in lines)
    table = lines[lines.index("") + 1:]
    assert table[0] == "7 events, 6 with candidates, 5 triggering events, 7 runs"
    assert table[1].split() == ["playbook", "fired", "disabled", "sustained", "throttled", "outranked",
                                "paused", "stopped", "maintenance", "silenced", "inhibited_by",
                                "budget", "circuit", "open", "unknown_agent", "loop", "coalesced"]
    assert table[-1].split() == ["restart", "1", "0", "0", "1", "0", *["0"] * 5, "0", "0", "0", "0", "0"]


def test_broken_rule_files_are_reported_and_skipped(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (store / "rules" / "zz-broken.yaml").write_text("id: Bad_Id\non: agent.down\nsteps: []\n")
    code, lines, err = replay(capsys, "--events", str(store / "data" / "events"), "--rules", str(store / "rules"),
                              "--format", "json")
    assert code == 0 and json.loads(lines[-1]) == {"summary": SUMMARY}
    assert "zz-broken.yaml:" in err and "skipped 1 file(s) with errors" in err


def test_missing_events_is_one_line_and_exit_1(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = replay(capsys, "--events", str(store / "nope"), "--rules", str(store / "rules"))
    assert code == 1 and lines == [] and err.count("\n") == 1 and "no such file or directory" in err


def test_url_reads_the_running_engines_store(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--url`: events come page by page from GET /api/events; the rules are still the local ones."""
    pages = {None: {"events": ARCHIVED, "next": "01D"}, "01D": {"events": RAW, "next": None}}
    seen: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            query = parse_qs(urlsplit(self.path).query)
            seen.append(urlsplit(self.path).path)
            body = orjson.dumps(pages[query.get("after", [None])[0]])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, lines, _ = replay(capsys, "--url", f"http://127.0.0.1:{server.server_port}",
                                "--rules", str(store / "rules"), "--format", "json")
    finally:
        server.shutdown()
    assert code == 0 and seen == ["/api/events", "/api/events"]
    assert [json.loads(line) for line in lines[:-1]] == EXPECTED
