"""Process trees with real processes: the three nets, the grace before SIGKILL, and what is never killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import psutil
import pytest
from test_actions import gone, wait_file

from engine.osutil import proctree

TREE = textwrap.dedent("""
    import os, subprocess, sys, time
    role, out = sys.argv[1], sys.argv[2]

    def sleeper(**kw):
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, **kw)

    if role == "root":
        child = sleeper()
        clean = {k: v for k, v in os.environ.items() if k != "AIOS_RUN_MARK"}
        orphans = [int(subprocess.run([sys.executable, __file__, kind, out], env=env, capture_output=True,
                                      check=True).stdout) for kind, env in (("grouped", clean), ("runaway", None))]
        open(out, "w").write(f"{child.pid} {orphans[0]} {orphans[1]}\\n")
        time.sleep(60)
    else:  # exit at once, leaving an orphan: in our group without the mark, or in its own session with it
        print(sleeper(start_new_session=role == "runaway").pid)
""")


@pytest.fixture
def mark() -> str:
    return f"test/{uuid.uuid4().hex}"


def spawn(argv: list[str], mark: str) -> subprocess.Popen[bytes]:
    """A child started the way the engine starts steps: own session, marked environment."""
    return subprocess.Popen(argv, start_new_session=True, env={**os.environ, proctree.MARK_ENV: mark})


def test_the_three_nets_find_descendants_group_orphans_and_marked_runaways(tmp_path, mark):
    script, out = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(TREE)
    root = spawn([sys.executable, str(script), "root", str(out)], mark)
    try:
        child, grouped, runaway = map(int, wait_file(out).split())
        assert os.getpgid(grouped) == root.pid and os.getsid(runaway) == runaway
        assert {p.pid for p in proctree.find_tree(root.pid)} == {root.pid, child, grouped}
        assert {p.pid for p in proctree.find_marked(mark)} == {root.pid, child, runaway}
        assert {p.pid for p in proctree.find_tree(root.pid, mark)} == {root.pid, child, grouped, runaway}
        assert sorted(proctree.kill_tree(root.pid, mark, grace_s=1.0)) == sorted([root.pid, child, grouped, runaway])
        root.wait(5)
        assert all(gone(pid) for pid in (root.pid, child, grouped, runaway))
    finally:
        proctree.kill_tree(root.pid, mark, grace_s=0.2)
        root.wait(5)


def test_sigkill_follows_sigterm_after_the_grace_and_stopped_processes_still_die(tmp_path, mark):
    ready = tmp_path / "ready"
    stubborn = spawn([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "open(sys.argv[1], 'w').write('ready\\n'); time.sleep(60)", str(ready)], mark)
    wait_file(ready)
    started = time.monotonic()
    assert proctree.kill_tree(stubborn.pid, grace_s=0.3) == [stubborn.pid]
    assert 0.3 <= time.monotonic() - started < 2 and stubborn.wait(5) == -signal.SIGKILL

    stopped = spawn([sys.executable, "-c", "import time; time.sleep(60)"], mark)
    os.kill(stopped.pid, signal.SIGSTOP)
    started = time.monotonic()
    assert proctree.kill_marked(mark, grace_s=5) == [stopped.pid]
    assert time.monotonic() - started < 2 and stopped.wait(5) == -signal.SIGTERM  # SIGCONT let it act on TERM


def test_a_reused_pid_is_not_killed(mark):
    other = spawn([sys.executable, "-c", "import time; time.sleep(60)"], mark)
    try:
        created = proctree.describe(other.pid)["create_time"]
        assert proctree.kill_tree(other.pid, create_time=created - 10, grace_s=0.2) == []
        assert proctree.find_tree(other.pid, create_time=created - 10) == []
        assert not gone(other.pid)
        assert proctree.kill_tree(other.pid, create_time=created, grace_s=1) == [other.pid]
    finally:
        other.kill()
        other.wait(5)


def test_the_engine_and_its_ancestors_are_never_killed(mark):
    """A marked engine asked to kill its own mark and its own tree survives; only its marked sibling dies."""
    script = textwrap.dedent("""
        import json, os, subprocess, sys
        from engine.osutil import proctree
        mark = os.environ["AIOS_RUN_MARK"]
        sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        killed = proctree.kill_marked(mark, grace_s=1) + proctree.kill_tree(os.getpid(), mark, grace_s=1) \\
            + proctree.kill_tree(os.getppid(), mark, grace_s=1)
        sibling.wait()
        print(json.dumps([killed, sibling.pid]))
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, proctree.MARK_ENV: mark},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    killed, sibling = json.loads(done.stdout)
    assert killed == [sibling]


def test_describe_and_signal_names():
    me = psutil.Process()
    assert proctree.describe(me.pid) == {"pid": me.pid, "create_time": me.create_time(), "cmdline": me.cmdline()}
    assert proctree.describe(2 ** 22 + 1) is None  # above the kernel's largest pid_max
    assert [proctree.signal_from_name(n) for n in ("TERM", "SIGHUP", "usr1", " KILL ")] == \
        [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL]
    for bad in ("SIG", "BOOM", "", 9):
        with pytest.raises(ValueError, match="unknown signal"):
            proctree.signal_from_name(bad)
