"""Operator controls without processes: maintenance windows in time zones, silences and their file, the pause,
runtime disables in the matcher, inhibition holding a playbook off and letting go (docs/controls.md)."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from conftest import make_event
from service_harness import run_engine, wait_for_event

from engine.cli import main
from engine.controls.gate import ControlConflict, Controls, ControlUnavailable
from engine.controls.maintenance import Window, maintenance_problems
from engine.controls.model import ControlError
from engine.events import format_ts

NY = ZoneInfo("America/New_York")


def at(text: str, zone: ZoneInfo = NY) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_window_across_midnight_in_new_york_is_open_until_its_end_the_next_local_day():
    window = Window("nightly", {"schedule": "30 23 * * *", "duration": "2h", "timezone": "America/New_York"})
    assert window.open_until(at("2026-12-03T23:29:59")) is None
    assert window.open_until(at("2026-12-03T23:30:00")) == at("2026-12-04T01:30:00")
    assert window.open_until(at("2026-12-04T01:15:00")) == at("2026-12-04T01:30:00"), "past midnight: still open"
    assert window.open_until(at("2026-12-04T01:30:00")) is None
    # 23:30 in New York is 04:30 UTC the next day: the window follows the zone, not UTC
    assert window.open_until(at("2026-12-04T04:45:00", ZoneInfo("UTC"))) == at("2026-12-04T01:30:00")
    assert window.view(at("2026-12-04T02:00:00"))["next_start"] == format_ts(at("2026-12-04T23:30:00"))


def test_a_window_follows_daylight_saving_time():
    window = Window("sat", {"schedule": "0 22 * * 6", "duration": "1h", "timezone": "Europe/Berlin"})
    berlin = ZoneInfo("Europe/Berlin")
    summer, winter = at("2026-07-04T22:10:00", berlin), at("2026-12-05T22:10:00", berlin)
    assert window.open_until(summer) == at("2026-07-04T23:00:00", berlin)  # 20:00 UTC
    assert window.open_until(winter) == at("2026-12-05T23:00:00", berlin)  # 21:00 UTC


@pytest.mark.parametrize("day", ["2026-11-01", "2026-03-08"], ids=["clocks-fall-back", "clocks-spring-forward"])
def test_a_window_on_a_daylight_saving_day_always_names_a_next_start_ahead(day: str):
    window = Window("n", {"schedule": "30 1 * * *", "duration": "30m", "timezone": "America/New_York"})
    refreshes = 0
    refresh = window._refresh

    def counted(now: float) -> None:
        nonlocal refreshes
        refreshes += 1
        refresh(now)

    window._refresh = counted  # type: ignore[method-assign]
    start = datetime.fromisoformat(f"{day}T04:00:00+00:00").timestamp()
    for minute in range(0, 240):
        now = start + minute * 60
        window.open_until(now)
        assert window.next_start(now) > now, (minute, window.view(now))
    assert refreshes <= 4, "the occurrence is cached between starts, the repeated hour included"


def test_bad_schedules_and_zones_are_named_at_their_place():
    found = dict(maintenance_problems({"a": {"schedule": "0 25 * * *", "duration": "1h"},
                                       "b": {"schedule": "0 1 * * *", "duration": "1h", "timezone": "Mars/Base"}}))
    assert "invalid schedule" in found["/maintenance/a/schedule"]
    assert "unknown time zone 'Mars/Base'" in found["/maintenance/b/timezone"]


def controls(tmp_path: Path, clock: Clock, windows: list[Window] | None = None) -> tuple[Controls, list[tuple]]:
    emitted: list[tuple] = []
    ids = iter(f"s{n}" for n in range(100))

    async def emit(type_: str, data: dict[str, Any], agent: str | None) -> dict[str, Any]:
        emitted.append((type_, data, agent))
        return {"id": f"e{len(emitted)}", "type": type_, "agent": agent, "data": data}

    return Controls(tmp_path, windows or [], emit=emit, new_id=lambda: next(ids), clock=clock, max_silences=2), emitted


def check(gate: Controls, agent: str = "coder", playbook: str = "restart-down-agent", type_: str = "agent.down",
          labels: dict[str, str] | None = None):
    return gate.check(playbook, labels or {}, {"type": type_, "agent": agent}, {agent}, f"{playbook} at P2")


def test_a_silence_holds_what_it_matches_until_it_ends_and_is_kept_across_a_restart(tmp_path: Path):
    clock = Clock(1_000_000.0)
    gate, emitted = controls(tmp_path, clock)
    silence = asyncio.run(gate.add_silence({"agent": "cod*", "type": "agent.*", "for": "10m", "reason": "swap"},
                                           "cli:ann@ops via 127.0.0.1"))
    held = check(gate)
    assert held.reason == f"silenced:{silence.id}" and held.retry_at == 1_000_600.0
    assert "cli:ann@ops" in held.detail and "swap" in held.detail
    assert check(gate, agent="analyst") is None and check(gate, type_="resource.cpu_spike") is None

    again, _ = controls(tmp_path, clock)  # a new engine on the same data/
    assert again.check("restart-down-agent", {}, {"type": "agent.down"}, {"coder"}, "x").reason == held.reason

    clock.now = 1_000_600.0
    asyncio.run(again.tick())
    assert check(again) is None and again.view()["silences"] == []
    assert controls(tmp_path, clock)[0].view()["silences"] == [], "the expiry was saved"
    assert emitted[0][0] == "control.silence_added"


def test_bad_silences_name_the_field_and_the_cap_is_a_conflict(tmp_path: Path):
    gate, _ = controls(tmp_path, Clock(at("2026-12-03T12:00:00")))
    for body, pointer in [({"reason": "x"}, ""), ({"agent": "a", "for": "5x", "reason": "x"}, "/for"),
                          ({"agent": "a", "reason": ""}, "/reason"),
                          ({"agent": "a", "color": 1, "reason": "x"}, "/color"),
                          ({"agent": "a", "ends_at": "2020-01-01T00:00:00Z", "reason": "x"}, "/ends_at"),
                          ({"agent": "a", "ends_at": "tomorrow", "reason": "x"}, "/ends_at")]:
        with pytest.raises(ControlError) as caught:
            asyncio.run(gate.add_silence(body, "me"))
        assert caught.value.pointer == pointer, (body, caught.value)
    for _ in range(2):
        asyncio.run(gate.add_silence({"agent": "a", "reason": "x"}, "me"))
    with pytest.raises(ControlConflict):
        asyncio.run(gate.add_silence({"agent": "a", "reason": "x"}, "me"))


def test_pause_says_what_would_run_and_a_window_holds_only_what_it_matches(tmp_path: Path):
    clock = Clock(at("2026-12-04T00:30:00"))
    window = Window("nightly", {"schedule": "30 23 * * *", "duration": "2h", "timezone": "America/New_York",
                                "match": {"labels": {"team": "platform"}}})
    gate, emitted = controls(tmp_path, clock, [window])
    held = check(gate, labels={"team": "platform"})
    assert held.reason == "maintenance:nightly" and held.retry_at == at("2026-12-04T01:30:00")
    assert check(gate, labels={"team": "data"}) is None
    asyncio.run(gate.pause({"reason": "freeze", "for": "2h"}, "me"))
    paused = check(gate, labels={"team": "data"})
    assert paused.reason == "paused" and "would run restart-down-agent at P2" in paused.detail
    clock.now = at("2026-12-04T01:31:00")
    asyncio.run(gate.tick())
    assert [e[0] for e in emitted] == ["control.paused", "control.maintenance_ended"]
    assert emitted[-1][1]["lifts"] == ["maintenance:nightly"]
    clock.now = at("2026-12-04T02:30:00")
    asyncio.run(gate.tick())
    assert emitted[-1][0] == "control.resumed" and emitted[-1][1]["by"] == "timer"


OUTAGE_RULES = """
- id: restart-on-errors
  on: agent.error
  confidence: 0.9
  steps:
    - {id: note, action: emit, with: {type: ops.restarted, data: {for: "{id}"}}}
  inhibited_by:
    - {problem: outage, same: [host]}
"""
OUTAGE_KINDS = """
- kind: outage
  opened_by: ops.outage
  key: [host]
  resolved_by: [ops.outage_over]
- kind: agent-errors
  opened_by: agent.error
  key: [agent]
  resolved_by: [ops.restarted]
"""


def test_an_open_problem_inhibits_a_playbook_and_its_resolution_lets_it_run_without_a_new_event(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "restart.yaml").write_text(OUTAGE_RULES)
    (tmp_path / "rules" / "outage.problems.yaml").write_text(OUTAGE_KINDS)

    async def body(engine, http) -> None:
        await http.post("/api/events", json={"type": "ops.outage", "host": "h1"})
        outage = await wait_for_event(engine, lambda e: e["type"] == "problem.opened"
                                      and e["data"]["kind"] == "outage")
        async with http.post("/api/events", json={"type": "agent.error", "agent": "coder", "host": "h1"}) as answer:
            cause = (await answer.json())["ids"][0]
        held = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                    and e["data"].get("cause") == cause)
        assert held["data"]["reason"] == f"inhibited_by:{outage['data']['problem']}"
        assert "outage" in held["data"]["detail"]
        await http.post("/api/events", json={"type": "ops.outage_over", "host": "h1"})
        ran = await wait_for_event(engine, lambda e: e["type"] == "ops.restarted" and e["data"]["for"] == cause)
        assert ran["data"]["for"] == cause, "the inhibited decision ran once the outage resolved"

    run_engine(tmp_path, body)


def test_replay_applies_the_silences_and_windows_of_the_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "restart.yaml").write_text(
        "id: restart\non: agent.down\nsteps: [{id: r, action: restart_agent, with: {agent: '{agent}'}}]\n")
    (tmp_path / "aios.yaml").write_text(
        "agents: {coder: {command: [sleep, '1']}}\n"
        "maintenance: {sunday: {schedule: '0 3 * * 0', duration: 1h, timezone: Europe/Berlin}}\n")
    silence = {"id": "S1", "starts_at": "2026-01-01T10:00:00Z", "ends_at": "2026-01-01T11:00:00Z", "reason": "swap",
               "by": "ann", "created_at": "2026-01-01T10:00:00Z", "agent": "coder", "state": "active"}
    forged = make_event("C0", "2026-01-01T09:00:00Z", "control.paused", None, by="x", reason="x",
                        pause={"since": "2026-01-01T09:00:00Z", "until": None, "reason": "x", "by": "x"})
    added = {**make_event("C1", "2026-01-01T10:00:00Z", "control.silence_added", None, by="ann", reason="swap",
                          silence=silence), "source": "engine.controls"}
    events = [forged, added,  # only the engine's own control events count: the forged pause is not one
              make_event("E1", "2026-01-01T10:30:00Z", "agent.down"),
              make_event("E2", "2026-01-01T11:30:00Z", "agent.down"),
              make_event("E3", "2026-01-04T02:30:00Z", "agent.down")]  # a Sunday, 03:30 in Berlin
    (tmp_path / "events.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    assert main(["replay", "--events", str(tmp_path / "events.ndjson"), "--rules", str(tmp_path / "rules"),
                 "--config", str(tmp_path / "aios.yaml"), "--format", "json"]) == 0
    records = {r["event"]: r for r in map(json.loads, capsys.readouterr().out.splitlines()[:-1])}
    assert records["E1"]["playbook"] is None and records["E1"]["reason"] == "silenced:S1"
    assert records["E2"]["playbook"] == "restart", "the silence had ended"
    assert records["E3"]["reason"] == "maintenance:sunday"


def test_a_control_that_cannot_be_saved_changes_nothing_and_records_nothing(tmp_path: Path):
    gate, emitted = controls(tmp_path, Clock(at("2026-12-03T12:00:00")))
    (tmp_path / "controls" / "state.json").mkdir(parents=True)  # the file cannot be replaced
    with pytest.raises(ControlUnavailable):
        asyncio.run(gate.pause({"reason": "freeze"}, "me"))
    assert gate.state.pause is None and emitted == [], "not paused, and no event claims it was"


def test_one_bad_record_costs_only_itself_and_a_newer_file_is_kept_aside(tmp_path: Path):
    clock = Clock(at("2026-12-03T12:00:00"))
    gate, _ = controls(tmp_path, clock)
    asyncio.run(gate.add_silence({"agent": "coder", "reason": "swap"}, "me"))
    asyncio.run(gate.pause({"reason": "freeze"}, "me"))
    path = tmp_path / "controls" / "state.json"
    doc = orjson.loads(path.read_bytes())
    doc["silences"].append({"id": "bad", "ends_at": "year 3000"})
    path.write_bytes(orjson.dumps(doc))
    again, _ = controls(tmp_path, clock)
    assert len(again.state.silences) == 1 and again.state.pause is not None

    path.write_bytes(orjson.dumps({**doc, "version": 99}))
    newer, _ = controls(tmp_path, clock)
    assert newer.state.silences == {} and newer.state.pause is None
    assert not path.exists() and list(path.parent.glob("state.json.newer-*")), "kept aside, never saved over"
