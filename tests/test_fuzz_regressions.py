"""What the fuzzers (tests/test_fuzz_*.py) found, pinned: each case once answered 500, printed an internal error
or gave a wrong answer."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from service_harness import run_engine

from engine.durations import MAX_S, parse_duration
from engine.events import parse_ts
from engine.playbooks.lint import lint_file
from engine.problems.kinds import load_kinds_file
from engine.timespec import parse_when

HUGE = "9" * 400  # int * float overflows past ~309 digits; int() refuses past 4300


# -- durations longer than datetime holds -------------------------------------------------------------
@pytest.mark.parametrize("text", [f"{HUGE}s", "9" * 5000 + "d", "999999999999d"], ids=["400", "5000", "12"])
def test_a_duration_too_long_for_datetime_counts_as_the_longest_it_holds(text: str):
    assert parse_duration(text) == MAX_S
    assert parse_duration("999999999d") == 999999999 * 86400.0  # the longest that holds, as written


def test_lint_takes_playbooks_and_problem_kinds_with_such_durations(tmp_path: Path):
    playbook = tmp_path / "p.yaml"
    playbook.write_text(f"id: p\non: a.b\ntimeout: {HUGE}s\nsteps: [{{id: a, action: compact}}]\n")
    assert lint_file(playbook).diagnostics == []
    kinds = tmp_path / "k.problems.yaml"
    kinds.write_text(f"kind: k\nopened_by: a.b\nkey: [agent]\nresolved_by: [c.d]\nescalate_after: {HUGE}s\n")
    [kind], diagnostics = load_kinds_file(kinds)
    assert diagnostics == [] and kind.escalate_after_s == MAX_S


@pytest.mark.parametrize("text", ["99999999999d", "99999999d", f"{HUGE}s"], ids=["11", "8", "400"])
def test_a_time_that_long_ago_is_refused_as_a_value_error(text: str):
    with pytest.raises(ValueError, match="before the year 1"):
        parse_when(text)


# -- RFC 3339 times outside years 1-9999 once in UTC --------------------------------------------------
@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01"])
def test_a_time_that_leaves_years_1_to_9999_in_utc_is_refused(text: str):
    with pytest.raises(ValueError, match="in UTC"):
        parse_ts(text)
    assert parse_ts("9999-12-31T23:59:59+01:00") == datetime(9999, 12, 31, 22, 59, 59, tzinfo=timezone.utc)


def test_get_events_refuses_such_times_with_400(tmp_path: Path):
    async def body(engine, http):
        for since in ("99999999999d", "9999-12-31T23:59:59-01:00"):
            response = await http.get("/api/events", params={"since": since})
            assert response.status == 400, since
            assert "invalid time" in (await response.json())["error"]

    run_engine(tmp_path, body)


