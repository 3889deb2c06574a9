"""`aios-engine problems` as users run it: over the files the engine writes (`--data`) and over the API (`--url`).

The files are `Problem.as_dict()` encoded as the engine encodes them, so a change of shape shows up here.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import pytest
from conftest import run_cli
from test_http_edge import fake_engine, serving

from engine.events import format_ts
from engine.problems.book import Problem

NOW = time.time()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Ages are printed against the clock when the command runs: the problems are made just before."""
    global NOW
    NOW = time.time()


def healed_coder() -> Problem:
    """Opened 3 h ago, throttled once, healed by a restart 7.4 s later."""
    opened = NOW - 3 * 3600
    cause = {"id": "ev1", "ts": format_ts(opened), "type": "agent.down", "agent": "coder"}
    p = Problem("pr-01AAAAAAAAAAAAAAAAAAAAAAAA", "agent-down", '["coder"]', {"agent": "coder"}, opened, cause)
    p.note({"ts": format_ts(opened), "id": "ev1", "type": "agent.down", "what": "opened"})
    p.note({"ts": format_ts(opened + 0.1), "id": "ev2", "type": "scheduler.decision",
            "playbook": "restart-down-agent", "outcome": "set_aside", "reason": "throttled",
            "retry_at": format_ts(opened + 5)})
    p.note({"ts": format_ts(opened + 5), "id": "ev3", "type": "scheduler.decision",
            "playbook": "restart-down-agent", "outcome": "queued", "run_id": "run1"})
    p.note({"ts": format_ts(opened + 5.1), "id": "ev4", "type": "reactor.succeeded", "run_id": "run1",
            "playbook": "restart-down-agent"})
    p.note({"ts": format_ts(opened + 7.4), "id": "ev5", "type": "agent.heartbeat", "what": "resolved",
            "run_id": "run1"})
    p.status, p.resolved_at, p.heal_s, p.run_id = "resolved", opened + 7.4, 7.4, "run1"
    p.reasons = {"restart-down-agent: throttled": "1 run per 5m"}
    p.runs = {"run1": "restart-down-agent:succeeded"}
    return p


def escalated_reviewer() -> Problem:
    """Opened 2 h ago, nothing could act on it: still open, escalated."""
    opened = NOW - 2 * 3600
    cause = {"id": "ev6", "ts": format_ts(opened), "type": "agent.down", "agent": "reviewer"}
    p = Problem("pr-01BBBBBBBBBBBBBBBBBBBBBBBB", "agent-down", '["reviewer"]', {"agent": "reviewer"}, opened, cause)
    p.note({"ts": format_ts(opened), "id": "ev6", "type": "agent.down", "what": "opened"})
    p.note({"ts": format_ts(opened + 300), "type": "problem.escalated", "what": "escalated",
            "reasons": {"restart-down-agent: circuit open": "3 failures"}})
    p.escalated_at = opened + 300
    p.reasons = {"restart-down-agent: circuit open": "3 failures", "notify-ops: silenced:s1": "silenced"}
    return p


def hot_cpu() -> Problem:
    """The newest: opened 10 minutes ago."""
    opened = NOW - 600
    cause = {"id": "ev7", "ts": format_ts(opened), "type": "resource.cpu_spike"}
    p = Problem("pr-01CCCCCCCCCCCCCCCCCCCCCCCC", "cpu-spike", '["h1"]', {"host": "h1"}, opened, cause)
    p.note({"ts": format_ts(opened), "id": "ev7", "type": "resource.cpu_spike", "what": "opened"})
    return p


def write(data: Path, *problems: Problem) -> None:
    folder = data / "problems"
    folder.mkdir(parents=True, exist_ok=True)
    for p in problems:
        (folder / f"{p.id}.json").write_bytes(orjson.dumps(p.as_dict()))


def problems_cli(data: Path, *args: str):
    return run_cli("problems", "--data", str(data), *args, cwd=data.parent)


def test_the_list_is_newest_first_with_status_subject_heal_time_or_age_and_reasons(tmp_path: Path):
    data = tmp_path / "data"
    write(data, healed_coder(), escalated_reviewer(), hot_cpu())
    done = problems_cli(data)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["PROBLEM", "KIND", "STATUS"]
    assert [row.split()[0] for row in rows] == [hot_cpu().id, escalated_reviewer().id, healed_coder().id]
    cpu, reviewer, coder = rows
    assert "cpu-spike" in cpu and "host=h1" in cpu and "age 10m " in cpu and cpu.endswith(" 0")
    assert "open, escalated" in reviewer and "agent=reviewer" in reviewer and "age 2h00m" in reviewer
    assert reviewer.endswith(" 2")
    assert "resolved" in coder and "agent=coder" in coder and "healed 7.4s" in coder and coder.endswith(" 1")
    assert format_ts(healed_coder().opened_at)[:19] in coder


def test_open_leaves_the_resolved_ones_out(tmp_path: Path):
    data = tmp_path / "data"
    write(data, healed_coder(), escalated_reviewer(), hot_cpu())
    done = problems_cli(data, "--open", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["id"] for p in listed] == [hot_cpu().id, escalated_reviewer().id]
    assert listed[0] == hot_cpu().summary()  # the API's summary: no timeline
    assert "timeline" not in listed[1]


def test_one_problem_shows_its_header_and_timeline_one_entry_per_line(tmp_path: Path):
    data = tmp_path / "data"
    coder = healed_coder()
    write(data, coder, hot_cpu())
    done = problems_cli(data, coder.id)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = "\n".join(lines[:12])
    for expected in (f"problem    {coder.id}", "kind       agent-down", "subject    agent=coder",
                     "status     resolved", f"opened     {format_ts(coder.opened_at)}",
                     f"resolved   {format_ts(coder.resolved_at)} (healed in 7.4s)", "run        run1",
                     "escalated  -", "restart-down-agent: throttled: 1 run per 5m", "timeline   5 entries"):
        assert expected in head, (expected, head)
    timeline = lines[-5:]
    assert timeline[0].split() == [format_ts(coder.opened_at), "agent.down", "opened"]
    assert timeline[1].split() == [coder.timeline[1]["ts"], "scheduler.decision", "restart-down-agent", "set_aside",
                                   "throttled", "retry", "at", coder.timeline[1]["retry_at"]]
    assert timeline[2].split()[1:] == ["scheduler.decision", "restart-down-agent", "queued", "run", "run1"]
    assert timeline[3].split()[1:] == ["reactor.succeeded", "restart-down-agent", "run", "run1"]
    assert timeline[4].split()[1:] == ["agent.heartbeat", "resolved", "run", "run1"]


def test_one_problem_as_json_is_the_whole_file(tmp_path: Path):
    data = tmp_path / "data"
    reviewer = escalated_reviewer()
    write(data, reviewer)
    done = problems_cli(data, reviewer.id, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [reviewer.as_dict()]
    text = problems_cli(data, reviewer.id).stdout
    assert "status     open, escalated" in text and f"escalated  {format_ts(reviewer.escalated_at)}" in text
    assert "problem.escalated     escalated reasons {" in text  # the escalation entry names its reasons


def test_an_unknown_id_is_one_line_on_stderr_and_exit_1(tmp_path: Path):
    data = tmp_path / "data"
    write(data, hot_cpu())
    done = problems_cli(data, "pr-01NOPE")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == f"aios-engine problems: no problem pr-01NOPE in {data / 'problems'}"


def test_no_problems_is_said_in_a_line_and_exit_0(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    done = problems_cli(data)
    assert (done.returncode, done.stdout.strip()) == (0, f"no problems in {data / 'problems'}")
    write(data, healed_coder())
    done = problems_cli(data, "--open")
    assert (done.returncode, done.stdout.strip()) == (0, f"no open problems in {data / 'problems'}")
    assert problems_cli(data, "--open", "--format", "json").stdout == ""  # json: no objects, nothing else


def test_damaged_files_are_skipped_with_a_warning_naming_them(tmp_path: Path):
    data = tmp_path / "data"
    write(data, hot_cpu())
    (data / "problems" / "pr-01TORN.json").write_bytes(orjson.dumps(healed_coder().as_dict())[:40])
    cut = {k: v for k, v in escalated_reviewer().as_dict().items() if k != "opened_at"}
    (data / "problems" / "pr-01CUT.json").write_bytes(orjson.dumps({**cut, "id": "pr-01CUT"}))
    done = problems_cli(data)
    assert done.returncode == 0, done.stderr
    assert [row.split()[0] for row in done.stdout.splitlines()[1:]] == [hot_cpu().id]
    warnings = done.stderr.splitlines()
    assert len(warnings) == 2 and "Traceback" not in done.stderr
    assert all(line.startswith("aios-engine problems: warning: problem file skipped: ") for line in warnings)
    assert any("pr-01TORN.json" in line for line in warnings) and any("pr-01CUT.json" in line for line in warnings)


def test_open_with_an_id_is_refused(tmp_path: Path):
    done = problems_cli(tmp_path / "data", "--open", "pr-01X")
    assert done.returncode == 1 and "--open filters the list" in done.stderr


def test_with_url_it_prints_what_it_prints_from_the_files(tmp_path: Path):
    data = tmp_path / "data"
    problems = [hot_cpu(), escalated_reviewer(), healed_coder()]
    write(data, *problems)
    engine = fake_engine(tmp_path, problems=problems)

    async def scenario() -> None:
        async with serving(engine) as port:
            url = f"http://127.0.0.1:{port}"
            for args in ([], ["--open"], ["--format", "json"], [problems[2].id], [problems[1].id, "--format", "json"]):
                remote = await asyncio.to_thread(run_cli, "problems", "--url", url, *args, cwd=tmp_path)
                local = problems_cli(data, *args)
                assert remote.returncode == local.returncode == 0, (args, remote.stderr, local.stderr)
                assert remote.stdout == local.stdout, args
            unknown = await asyncio.to_thread(run_cli, "problems", "--url", url, "pr-01NOPE", cwd=tmp_path)
            assert unknown.returncode == 1 and "no problem pr-01NOPE" in unknown.stderr

    asyncio.run(scenario())
