"""A real engine process (`aios-engine run`) whose notification target hangs: an SMTP server that accepts
the connection and never answers. SIGTERM must still end the process at once (deliveries run in daemon
threads, outside Apprise's process-wide pool that Python joins at exit)."""
from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

from process_harness import EngineProcess

PLAYBOOK = """
- id: page
  on: ops.page
  steps:
    - {id: page, action: notify, with: {target: mail, title: "paged"}}
"""


class SilentServer:
    """Accepts TCP connections and never sends a byte (an SMTP server that hangs before its greeting)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_a_target_that_never_answers_does_not_keep_a_stopped_engine_alive(tmp_path: Path) -> None:
    server = SilentServer()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "page.yaml").write_text(PLAYBOOK)
    url = (f"mailto://aios@127.0.0.1:{server.port}?smtp=127.0.0.1&mode=insecure&from=aios@example.com"
           "&to=ops@example.com")
    (tmp_path / "aios.yaml").write_text(f"sensors: {{interval: 1h}}\nnotifications:\n  targets:\n"
                                        f"    mail: {{urls: ['{url}']}}\n  timeout: 60s\n")
    engine = EngineProcess("--config", str(tmp_path / "aios.yaml"), "--data", str(tmp_path / "data"),
                           "--rules", str(rules), cwd=tmp_path)
    try:
        engine.post("/api/events", {"type": "ops.page", "source": "test"})
        engine.wait_for(lambda: server.accepted, 30, "the delivery to connect")
        engine.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            engine.proc.wait(timeout=8)
        except Exception:  # noqa: BLE001 - reported below
            pass
        assert engine.proc.poll() is not None, f"still alive {time.monotonic() - started:.1f}s after SIGTERM"
        assert any('"engine stopped"' in line for line in engine.log)
    finally:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()
        server.close()
