"""No command line makes `aios-engine` print a traceback or an internal error (issue 14): every subcommand with
its real options (read from the parser, so a new option is fuzzed too) given odd values, mixed with garbage.

In process (`engine.cli.main`), in a scratch directory, seeded. Commands that talk to an engine get `--url` of
a port that nothing listens on (or a malformed URL): they must fail cleanly, at once. Exit codes are 0, 1 or 2
(argparse), and a failure says what is wrong in lines a user can read: `aios-engine CMD: …`, argparse's usage
and error, or `file:line:col: error: …` diagnostics.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import build_parser, main

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=500,
                suppress_health_check=[HealthCheck.too_slow])
# Never fuzzed: `chaos` injects real faults (kills processes, fills a disk) in whatever engine its default
# --url reaches; `events --follow` follows forever by design. `run` always gets a config it refuses, so it
# never starts serving.
EXCLUDED = {("chaos",)}
ENDLESS = {"--follow", "-f"}
BROKEN_CONFIG = "broken.yaml"
# What a line of stderr may be when a command fails.
READABLE = re.compile(r"aios-engine( [a-z]+)*: .+"  # our own one-line errors (and argparse's "…: error: …")
                      r"|usage: .*|\s+.*|.*\S:\d+:\d+: (error|warning): .+"  # argparse usage, diagnostics
                      r"|\d+ errors?, \d+ warnings? in \d+ files?")  # lint's summary


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    options: tuple[argparse.Action, ...]
    positionals: tuple[argparse.Action, ...]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every leaf command of the parser, with its options and positional arguments."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))
            return
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    yield Command(path, tuple(a for a in actions if a.option_strings and not ENDLESS & set(a.option_strings)),
                  tuple(a for a in actions if not a.option_strings))


COMMANDS = [c for c in commands(build_parser()) if c.path not in EXCLUDED]


# -- values -------------------------------------------------------------------------------------------
def _closed_port() -> int:
    """A port nothing listens on: bound (so nobody else takes it) but never listening, for the whole run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return sock.getsockname()[1]


_HELD: list[socket.socket] = []
CLOSED = f"http://127.0.0.1:{_closed_port()}"
URLS = st.sampled_from([CLOSED, CLOSED, f"{CLOSED}/prefix/", f"http://user:pw@{CLOSED[7:]}", "http://", "ftp://x",
                        "garbage", "http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:abc", "http:///x",
                        "", "http://%zz", "https://127.0.0.1:0"])
# Paths stay inside the scratch directory (or are /dev/null): no "/" in drawn text, never only dots.
SAFE_TEXT = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                    max_size=10).filter(
    lambda s: s.strip(".") != "")
PATHS = st.one_of(st.sampled_from(["aios.yaml", BROKEN_CONFIG, "deep.yaml", "fuzz.yaml", "data", "rules",
                                   "events.ndjson", "nothing-here", "/dev/null", "", "-", "a dir/", "data/events"]),
                  SAFE_TEXT)
TEXT = st.one_of(st.sampled_from(["", " ", "-", "--", "0", "-1", "15m", "0s", "2026-01-01", "2026-02-30",
                                  "2026-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "99999999999d", "9" * 400 + "s",
                                  "agent.error", "agent.*", "reactor.failed", "coder", "true", "null", "{}", "[1]",
                                  "01AAAAAAAAAAAAAAAAAAAAAAAA", "..", "../x", "\x7f", "é", "\u2028", "x" * 300]),
                 st.text(st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)), max_size=12))
INTS = st.sampled_from(["0", "1", "-1", "3", "abc", "1e3", "99999999999999999999", "", " 2"])
FIELDS = st.one_of(st.tuples(TEXT, TEXT).map("=".join), TEXT)
GARBAGE = st.sampled_from(["--nope", "-x", "--", "-", "--url", "--data=", "--format=xml", "-h", "--help", "=", "-j"])


def values(action: argparse.Action) -> st.SearchStrategy[str]:
    if "--url" in action.option_strings:
        return URLS
    if action.choices:
        return st.one_of(st.sampled_from(sorted(action.choices)), TEXT)
    if action.type is int:
        return INTS
    if action.dest in ("config", "data", "rules", "events", "paths", "file"):
        return PATHS
    return FIELDS if action.dest == "fields" else TEXT


@st.composite
def argvs(draw: st.DrawFn, command: Command) -> list[str]:
    """The command, then its options and positionals in random order and number, with some garbage."""
    items: list[list[str]] = []
    for action in command.positionals:
        count = {"?": (0, 1), "*": (0, 3), None: (1, 1)}.get(action.nargs, (0, 2))
        items += [[draw(values(action))] for _ in range(draw(st.integers(*count)))]
    for action in draw(st.lists(st.sampled_from(command.options), max_size=4)) if command.options else []:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            items.append([flag])
        elif flag.startswith("--") and draw(st.integers(0, 3)) == 0:
            items.append([f"{flag}={draw(values(action))}"])
        else:
            items.append([flag, draw(values(action))])
    items += [[draw(GARBAGE)] for _ in range(draw(st.integers(0, 1)))]
    argv = [*command.path, *[word for item in draw(st.permutations(items)) for word in item]]
    return argv + ["--config", BROKEN_CONFIG] if command.path == ("run",) else argv


# -- running it ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run(argv: list[str]) -> Outcome:
    """`aios-engine ARGV` in this process; the root logger is put back as it was (`run` sets up its own)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: 2 for bad usage, 0 for --help
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        root.handlers[:], root.level = handlers, level
    return Outcome(code, out.getvalue(), err.getvalue())


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory to run in: a valid aios.yaml and rules, a broken config, odd files; no token, no debug."""
    monkeypatch.chdir(tmp_path)
    for name in ("AIOS_TOKEN", "AIOS_DEBUG", "AIOS_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "notes.yaml").write_text("id: notes\non: agent.error\nsteps: [{id: a, action: compact}]\n")
    (tmp_path / "aios.yaml").write_text("data_dir: data\nrules_dir: rules\n")
    (tmp_path / BROKEN_CONFIG).write_bytes(b"server: {port: [\x00\xff")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 10_000)
    (tmp_path / "events.ndjson").write_bytes(b'{"type": "agent.error", "ts": "x"}\n[1]\n\xff\n{"id": 3}\n')
    (tmp_path / "a dir").mkdir()
    return tmp_path


def assert_clean(outcome: Outcome, argv: list[str]) -> None:
    where = f"argv={argv!r}: {outcome}"
    assert outcome.code in (0, 1, 2), where
    assert "Traceback" not in outcome.stderr + outcome.stdout and "internal error" not in outcome.stderr, where
    if outcome.code:
        assert outcome.stderr.strip(), where
        for line in outcome.stderr.split("\n"):
            assert not line or READABLE.fullmatch(line), f"{line!r} in {where}"


def test_every_command_is_fuzzed():
    assert {c.path for c in COMMANDS} >= {("lint",), ("replay",), ("emit",), ("events",), ("compact",), ("runs",),
                                          ("rollback",), ("problems",), ("score",), ("feedback",), ("tune",),
                                          ("config", "check"), ("run",)}


def test_random_command_lines(scratch: Path):
    @FUZZ
    @given(st.data())
    def one(data: st.DataObject) -> None:
        (scratch / "fuzz.yaml").write_bytes(data.draw(st.binary(max_size=100)))
        argv = data.draw(st.sampled_from(COMMANDS).flatmap(argvs))
        assert_clean(run(argv), argv)

    one()


REQUIRED = {("emit",): ["a.b"], ("rollback",): ["RUN"], ("feedback",): ["EVENT", "--label", "true"],
            ("silence",): ["list"], ("pause",): ["--reason", "r"], ("playbook",): ["enable", "p"],
            ("agent",): ["restart", "coder"], ("budget",): ["reset", "coder", "--reason", "r"],
            ("breaker",): ["reset", "p", "--reason", "r"], ("cancel",): ["RUN"], ("rerun",): ["RUN"],
            ("approve",): ["RUN"], ("deny",): ["RUN"]}


def test_a_closed_port_is_one_line_saying_so(scratch: Path):
    for command in COMMANDS:
        if any("--url" in a.option_strings for a in command.options):
            argv = [*command.path, *REQUIRED.get(command.path, []), "--url", CLOSED]
            outcome = run(argv)
            assert outcome.code == 1, (argv, outcome)
            assert outcome.stderr == f"aios-engine {command.path[0]}: cannot reach the engine at {CLOSED}: " \
                                     "[Errno 111] Connection refused\n", (argv, outcome)


def test_a_line_break_in_an_argument_does_not_split_the_error_line(scratch: Path):
    outcome = run(["runs", "a\nb"])
    assert outcome.code == 1 and outcome.stderr.count("\n") == 1, outcome
