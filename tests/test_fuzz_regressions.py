"""What the fuzzers (tests/test_fuzz_*.py) found, pinned: each case once answered 500, printed an internal error
or gave a wrong answer."""
from __future__ import annotations

import asyncio
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path

import pytest
from service_harness import run_engine

from engine.cli import main
from engine.durations import MAX_S, parse_duration
from engine.events import parse_ts
from engine.playbooks.lint import lint_file
from engine.problems.kinds import load_kinds_file
from engine.timespec import parse_when
from engine.yaml_loader import YamlError, load_text

HUGE = "9" * 400  # int * float overflows past ~309 digits; int() refuses past 4300
TOKEN = "regression-token-0123456789"


async def raw(port: int, head: bytes) -> tuple[int, dict]:
    """Send `head` (a whole request without body, `Connection: close`) as bytes; the status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def get(target: bytes, *headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (
        target, b"".join(h + b"\r\n" for h in headers))


# -- durations longer than datetime holds -------------------------------------------------------------
@pytest.mark.parametrize("text", [f"{HUGE}s", "9" * 5000 + "d", "999999999999d"], ids=["400", "5000", "12"])
def test_a_duration_too_long_for_datetime_counts_as_the_longest_it_holds(text: str):
    assert parse_duration(text) == MAX_S
    assert parse_duration("365000d") == 365000 * 86400.0  # just under the cap (1000 years), as written


def test_lint_takes_playbooks_and_problem_kinds_with_such_durations(tmp_path: Path):
    playbook = tmp_path / "p.yaml"
    playbook.write_text(f"id: p\non: a.b\ntimeout: {HUGE}s\nsteps: [{{id: a, action: compact}}]\n")
    assert lint_file(playbook).diagnostics == []
    kinds = tmp_path / "k.problems.yaml"
    kinds.write_text(f"kind: k\nopened_by: a.b\nkey: [agent]\nresolved_by: [c.d]\nescalate_after: {HUGE}s\n")
    [kind], diagnostics = load_kinds_file(kinds)
    assert diagnostics == [] and kind.escalate_after_s == MAX_S


@pytest.mark.parametrize("text", ["99999999999d", "99999999d", f"{HUGE}s"], ids=["11", "8", "400"])
def test_a_time_that_long_ago_counts_as_a_thousand_years_ago(text: str):
    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert parse_when(text, now) == now - timedelta(seconds=MAX_S)  # "since for ever": a time that can be written


# -- RFC 3339 times outside years 1-9999 once in UTC --------------------------------------------------
@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01"])
def test_a_time_that_leaves_years_1_to_9999_in_utc_is_refused(text: str):
    with pytest.raises(ValueError, match="in UTC"):
        parse_ts(text)
    assert parse_ts("9999-12-31T23:59:59+01:00") == datetime(9999, 12, 31, 22, 59, 59, tzinfo=timezone.utc)


def test_get_events_refuses_such_times_with_400(tmp_path: Path):
    async def body(engine, http):
        for since in ("9999-12-31T23:59:59-01:00",):
            response = await http.get("/api/events", params={"since": since})
            assert response.status == 400, since
            assert "invalid time" in (await response.json())["error"]

    run_engine(tmp_path, body)


# -- header bytes that are no UTF-8 -------------------------------------------------------------------
def test_a_token_that_is_no_utf8_is_refused_401_not_a_500(tmp_path: Path):
    async def body(engine, http):
        for header in (b"Authorization: Bearer \xff\xfe", b"Cookie: aios_token=\xff"):
            status, answer = await raw(engine.port, get(b"/api/health", header))
            assert status == 401 and "token" in answer["error"]
        status, answer = await raw(engine.port, get(b"/login?token=%ED%A0%80"))  # a lone surrogate, percent-encoded
        assert (status, answer) == (401, {"error": "wrong token"})

    run_engine(tmp_path, body, extra=f"server: {{token: {TOKEN}}}\n")


def test_an_expect_header_that_is_no_utf8_is_refused_417_not_a_500(tmp_path: Path):
    async def body(engine, http):
        assert await raw(engine.port, get(b"/api/health", b"Expect: \xecp")) == (417, {"error": "Expectation Failed"})

    run_engine(tmp_path, body)


# -- the command line ---------------------------------------------------------------------------------
def cli(*argv: str) -> tuple[int, str]:
    """`aios-engine ARGV` in this process: the exit code and stderr."""
    err = StringIO()
    with redirect_stdout(StringIO()), redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize("command", ["score", "runs", "problems", "events", "tune", "compact"])
def test_a_data_dir_that_is_a_file_is_one_line_not_an_internal_error(tmp_path: Path, command: str,
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no ./aios.yaml: the embedded config
    (tmp_path / "file").write_text("")
    code, err = cli(command, "--data", str(tmp_path / "file"))
    assert (code, err) == (1, f"aios-engine {command}: the data directory {tmp_path / 'file'} is not a directory\n")


def test_a_run_id_with_spaces_or_slashes_reaches_the_engine_as_one_id(tmp_path: Path):
    async def body(engine, http):
        for argv in (["runs", "a b/c"], ["rollback", "a b/c"]):
            code, err = await asyncio.to_thread(cli, *argv, "--url", engine.url)
            assert (code, err) == (1, f"aios-engine {argv[0]}: refused (404): no run a b/c\n")

    run_engine(tmp_path, body)


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:abc", "http:///x",
                                 "http://a b:1", "http://127.0.0.1:1/a b", "http://127.0.0.1:1/\x7f",
                                 "http://127.0.0.1:1/é"])
def test_a_url_that_cannot_be_sent_is_one_line_not_an_internal_error(url: str):
    assert cli("score", "--url", url) == (1, f"aios-engine score: --url must look like http://127.0.0.1:8765, "
                                             f"not {url!r}\n")


# -- YAML ---------------------------------------------------------------------------------------------
def test_text_with_a_lone_surrogate_is_a_placed_yaml_error():
    with pytest.raises(YamlError) as info:
        load_text("x: 1\nab: c\udc80\n", "f.yaml")
    assert str(info.value) == "f.yaml:2:6: error: '\\udc80' is a lone surrogate, not a character"


@pytest.mark.parametrize("text, place", [("a: 1\nb: x\x7fy\n", "2:5"), ("éé: 1\nb: x\x7fy\n", "2:5"),
                                         ("\U0001f600: \x7f", "1:4")])
def test_a_control_character_is_refused_where_it_is(text: str, place: str):
    with pytest.raises(YamlError) as info:
        load_text(text, "f.yaml")
    assert str(info.value) == f"f.yaml:{place}: error: unacceptable character #x007f: control characters are not " \
                              "allowed"
