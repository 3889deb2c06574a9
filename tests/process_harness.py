"""Real engine processes as users run them (`aios-engine run`), their agents, and a client for them."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import CLI, ROOT

DEMO_AGENTS = {"coder", "analyst", "monitor", "researcher"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(self, *args: str, cwd: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AIOS_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen([*CLI, "run", "--port", str(self.port), *args], cwd=cwd, env=env,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda: any('"engine started"' in line for line in self.log), 30, "engine start")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_for(self, predicate, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + "".join(self.log[-20:]))
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n" + "".join(self.log[-20:]))

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def events(self, type_: str) -> list[dict[str, Any]]:
        return self.get(f"/api/events?type={type_}&limit=1000")["events"]

    def agent_pids(self) -> dict[str, int]:
        return {a["name"]: a["pid"] for a in self.get("/api/agents")["agents"] if a.get("declared") and a.get("pid")}


def demo_workers(url: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "engine.demo.worker" in " ".join(proc.info["cmdline"] or ()) and proc.environ().get("AIOS_URL") == url:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture
def demo(tmp_path: Path):
    """The shipped aios.yaml and rules, on a fresh data dir; every process is cleaned up afterwards."""
    engines: list[EngineProcess] = []

    def start(port: int | None = None) -> EngineProcess:
        engine = EngineProcess("--config", str(ROOT / "aios.yaml"), "--data", str(tmp_path / "data"),
                               "--rules", str(ROOT / "rules"), cwd=tmp_path, port=port)
        engines.append(engine)
        return engine

    yield start
    urls = {e.url for e in engines}
    for engine in engines:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
    for url in urls:
        for worker in demo_workers(url):
            worker.kill()


CODER = ("  coder: {command: [python, -m, engine.demo.worker, --role, coder, --heartbeat, 1s],"
         " heartbeat: {interval: 1s}}\n")


@pytest.fixture
def coder_engine(tmp_path: Path):
    """`start(config="", rules={})`: an engine on a copy of the shipped rules (plus `rules`: file name ->
    text) with the demo agent coder (heartbeat 1 s) and `config` added to its aios.yaml; killed afterwards."""
    engines: list[EngineProcess] = []

    def start(config: str = "", rules: dict[str, str] | None = None) -> EngineProcess:
        shutil.copytree(ROOT / "rules", tmp_path / "rules", dirs_exist_ok=True)
        for name, text in (rules or {}).items():
            (tmp_path / "rules" / name).write_text(text)
        (tmp_path / "aios.yaml").write_text("sensors: {interval: 1h}\nagents:\n" + CODER + config)
        engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), cwd=tmp_path)
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.proc.kill()
        engine.proc.wait()
        for worker in demo_workers(engine.url):
            worker.kill()
