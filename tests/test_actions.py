"""Process actions (`shell`, `python`) with real child processes, and the action registry.

Also holds the helpers the other test_actions* files import (`make_services`, `run_info`, `gone`).
"""
from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.actions import ACTIONS, KINDS, get_action
from engine.actions.base import OUTPUT_LIMIT, ActionError, RunInfo, Services, StepResult
from engine.actions.process import run_mark
from engine.playbooks.templates import render_tree, resolve
from engine.osutil import proctree
from engine.schemas import load_schema

PY = sys.executable


def make_services(data_dir: Path, **overrides: Any) -> Services:
    """Services whose engine-side callables fail the test unless the test supplies them."""
    async def unexpected(*args: Any) -> Any:
        raise AssertionError(f"unexpected engine call {args}")

    fields: dict[str, Any] = dict(data_dir=data_dir, emit=unexpected, agents=None, wait_for=unexpected,
                                  compact=unexpected, track=lambda pid: None, clock=time.time, python=PY)
    return Services(**{**fields, **overrides})


def run_info(event: dict[str, Any] | None = None, step: str = "fix") -> RunInfo:
    """A fresh run id each time, so markers never collide between tests."""
    return RunInfo(run_id=uuid.uuid4().hex[:12], playbook="pb", step=step, attempt=1, event=event or {})


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie only waiting for its parent (init in a container may never reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def act(kind: str, args: dict[str, Any], services: Services, run: RunInfo | None = None) -> StepResult:
    return asyncio.run(get_action(kind)(run or run_info(), services, args))


def wait_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.01)
    return path.read_text()


# -- registry --------------------------------------------------------------------------------------------

def test_registry_holds_exactly_the_schema_kinds_by_name():
    schema_kinds = load_schema("playbook")["$defs"]["action"]["enum"]
    assert list(ACTIONS) == list(KINDS) == schema_kinds
    assert all(ACTIONS[kind].kind == kind for kind in KINDS)
    with pytest.raises(ActionError, match="unknown action 'reboot'"):
        get_action("reboot")


# -- shell -----------------------------------------------------------------------------------------------

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def test_an_event_value_reaches_argv_as_one_literal_element(data_dir, tmp_path):
    victim = tmp_path / "x"
    victim.mkdir()
    event = {"type": "agent.down", "agent": "coder", "data": {"x": "; rm -rf /tmp/x", "y": f"$(rm -rf {victim})",
                                                                "n": 3}}
    written = {"argv": [PY, "-c", PRINT_ARGV, "{data.x}", "{data.y}", "{data.n}", "n={data.n}", "{agent}"]}
    args = render_tree(written, lambda path: resolve(event, path))
    result = act("shell", args, make_services(data_dir))
    assert result.ok and result.exit_code == 0
    assert json.loads(result.stdout) == ["; rm -rf /tmp/x", f"$(rm -rf {victim})", "3", "n=3", "coder"]
    assert victim.is_dir()
    assert result.detail["argv"][3] == "; rm -rf /tmp/x"


def test_argv_refuses_lists_and_mappings_and_writes_scalars_as_json(data_dir):
    with pytest.raises(ActionError, match=r"argv\[1\] must be a single value"):
        act("shell", {"argv": ["echo", ["a", "b"]]}, make_services(data_dir))
    with pytest.raises(ActionError, match=r"argv\[1\] must be a single value"):
        act("shell", {"argv": ["echo", {"a": 1}]}, make_services(data_dir))
    with pytest.raises(ActionError, match="`argv` must be a list"):
        act("shell", {"argv": "rm -rf /"}, make_services(data_dir))
    result = act("shell", {"argv": [PY, "-c", PRINT_ARGV, 7, 1.5, True]}, make_services(data_dir))
    assert json.loads(result.stdout) == ["7", "1.5", "true"]


def test_env_is_merged_over_the_engines_and_carries_the_mark_cwd_is_used(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AIOS_TEST_INHERITED", "kept")
    tracked: list[int] = []
    run = run_info()
    script = "import json, os; print(json.dumps([os.environ[k] for k in ('AIOS_TEST_INHERITED', 'EXTRA', " \
             "'AIOS_RUN_MARK')] + [os.getcwd(), os.getpid()]))"
    result = act("shell", {"argv": [PY, "-c", script], "env": {"EXTRA": 5}, "cwd": str(tmp_path)},
                 make_services(data_dir, track=tracked.append), run)
    inherited, extra, mark, cwd, pid = json.loads(result.stdout)
    assert (inherited, extra, mark, cwd) == ("kept", "5", f"{run.run_id}/fix/1", str(tmp_path))
    assert mark == run_mark(run)
    assert tracked == [pid] == [result.detail["pid"]]
    assert result.detail["cwd"] == str(tmp_path) and result.detail["duration_ms"] >= 0


def test_exit_codes_signals_and_programs_that_cannot_start(data_dir, tmp_path):
    services = make_services(data_dir)
    failed = act("shell", {"argv": [PY, "-c", "import sys; sys.stderr.write('no\\n'); sys.exit(3)"]}, services)
    assert (failed.ok, failed.exit_code, failed.stderr, failed.error) == (False, 3, "no\n", "exit code 3")
    killed = act("shell", {"argv": [PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]}, services)
    assert (killed.ok, killed.exit_code, killed.error, killed.detail["signal"]) == \
        (False, -9, "killed by SIGKILL", "SIGKILL")
    missing = act("shell", {"argv": ["/nonexistent/aios-tool", "x"]}, services)
    assert not missing.ok and missing.exit_code is None and "cannot start '/nonexistent/aios-tool'" in missing.error
    bad_cwd = act("shell", {"argv": [PY, "-c", "pass"], "cwd": str(tmp_path / "nope")}, services)
    assert not bad_cwd.ok and "nope" in bad_cwd.error


def test_output_is_capped_per_stream_without_blocking_the_child_and_one_newline_stripped(data_dir):
    script = f"import sys; sys.stdout.write('a' * {OUTPUT_LIMIT + 300_000}); sys.stderr.write('b' * " \
             f"{OUTPUT_LIMIT + 5}); print('after', file=sys.stderr)"
    result = act("shell", {"argv": [PY, "-c", script]}, make_services(data_dir))
    assert result.ok, result.error
    assert result.stdout == "a" * OUTPUT_LIMIT and result.stderr == "b" * OUTPUT_LIMIT
    assert result.detail["truncated"] == ["stdout", "stderr"]
    two = act("shell", {"argv": [PY, "-c", "print('x\\n')"]}, make_services(data_dir))
    assert two.stdout == "x\n" and "truncated" not in two.detail


SETSID_ROOT = textwrap.dedent("""
    import subprocess, sys, time
    # The middle process starts the runaway and exits at once: the runaway, in its own session, is
    # reparented to init and is no longer our descendant nor in our process group.
    middle = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]])
    middle.wait()
    time.sleep(60)
""")
SETSID_MIDDLE = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', " \
                "'import os, sys, time; os.setsid(); open(sys.argv[1], \"w\").write(f\"{os.getpid()} " \
                "{os.getsid(0)}\\\\n\"); time.sleep(60)', sys.argv[1]])"


def test_timeout_kills_the_child_and_a_grandchild_that_called_setsid(data_dir, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    tracked: list[int] = []
    services = make_services(data_dir, track=tracked.append)
    args = {"argv": [PY, "-c", SETSID_ROOT, str(pid_file), SETSID_MIDDLE]}

    async def runner() -> None:
        step = asyncio.ensure_future(get_action("shell")(run_info(), services, args))
        while not pid_file.exists() or not pid_file.read_text().endswith("\n"):  # the runaway is in place
            await asyncio.sleep(0.01)
        await asyncio.wait_for(step, timeout=0.2)  # the runner's timeout

    with pytest.raises(TimeoutError):
        asyncio.run(runner())
    grandchild, session = map(int, pid_file.read_text().split())
    (root,) = tracked
    assert session == grandchild != root  # it did leave our session
    assert gone(root) and gone(grandchild)


def test_a_background_process_holding_stdout_does_not_hold_the_step(data_dir, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    script = textwrap.dedent("""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.setsid(); "
                          "open(sys.argv[1], 'w').write(f'{os.getpid()}\\\\n'); time.sleep(60)", sys.argv[1]])
        print("started")
    """)
    run = run_info()
    started = time.monotonic()
    result = act("shell", {"argv": [PY, "-c", script, str(pid_file)]}, make_services(data_dir), run)
    try:
        assert time.monotonic() - started < 5
        assert result.ok and result.stdout == "started" and result.detail["output_held"] is True
        daemon = int(wait_file(pid_file))
        assert not gone(daemon)  # a finished step's background process is left alone...
    finally:
        killed = proctree.kill_marked(run_mark(run), grace_s=1.0)  # ...and found by its mark later
    assert daemon in killed and gone(daemon)


# -- python ----------------------------------------------------------------------------------------------

FIXES = textwrap.dedent("""
    import time

    def add(a, b):
        print("noise on stdout")
        return {"sum": a + b}

    def boom(reason):
        raise ValueError(f"bad {reason}")

    def unserializable():
        return {1, 2}

    async def later(x):
        return [x, x]

    def hang(path):
        open(path, "w").write("ready\\n")
        time.sleep(60)
""")


@pytest.fixture
def fixes(tmp_path, monkeypatch) -> str:
    """A module `aios_test_fixes` the python child can import (through PYTHONPATH, as a user would)."""
    (tmp_path / "aios_test_fixes.py").write_text(FIXES)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "aios_test_fixes"


def test_python_returns_the_functions_json_result_and_keeps_its_prints_out_of_it(data_dir, fixes):
    result = act("python", {"call": f"{fixes}:add", "args": {"a": 2, "b": 3}}, make_services(data_dir))
    assert result.ok, result.stderr
    assert result.detail["result"] == {"sum": 5} and json.loads(result.stdout) == {"sum": 5}
    assert result.detail["call"] == f"{fixes}:add" and result.exit_code == 0
    assert "noise on stdout" in result.stderr
    coroutine = act("python", {"call": f"{fixes}:later", "args": {"x": "y"}}, make_services(data_dir))
    assert coroutine.ok and coroutine.detail["result"] == ["y", "y"]


def test_python_exceptions_fail_the_step_with_the_exception_line(data_dir, fixes):
    result = act("python", {"call": f"{fixes}:boom", "args": {"reason": "input"}}, make_services(data_dir))
    assert (result.ok, result.exit_code, result.error) == (False, 1, "ValueError: bad input")
    assert "Traceback" in result.stderr and "result" not in result.detail
    for call, error in ((f"{fixes}:unserializable", "TypeError"), (f"{fixes}:missing", "AttributeError"),
                        ("aios_no_such_module:f", "ModuleNotFoundError")):
        failed = act("python", {"call": call}, make_services(data_dir))
        assert not failed.ok and failed.error.startswith(error), failed.error
    with pytest.raises(ActionError, match="module:function"):
        act("python", {"call": "os.system('x')"}, make_services(data_dir))
    with pytest.raises(ActionError, match="not JSON-serializable"):
        act("python", {"call": f"{fixes}:add", "args": {"a": object()}}, make_services(data_dir))


def test_python_timeout_kills_the_child(data_dir, fixes, tmp_path):
    ready = tmp_path / "ready"
    tracked: list[int] = []
    services = make_services(data_dir, track=tracked.append)

    async def runner() -> None:
        step = asyncio.ensure_future(get_action("python")(run_info(), services,
                                                          {"call": f"{fixes}:hang", "args": {"path": str(ready)}}))
        while not ready.exists():
            await asyncio.sleep(0.01)
        await asyncio.wait_for(step, timeout=0.1)

    with pytest.raises(TimeoutError):
        asyncio.run(runner())
    assert len(tracked) == 1 and gone(tracked[0])
