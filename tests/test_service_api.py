"""The HTTP API against a real aiohttp server on 127.0.0.1 (contract §5)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from service_harness import run_engine, wait_for_event


def stored_lines(engine) -> list[dict]:
    return [json.loads(line) for path in sorted(engine.events_dir.glob("*.jsonl"))
            for line in path.read_text().splitlines()]


def test_202_only_once_the_event_is_in_the_file_for_one_array_and_ndjson(tmp_path: Path):
    async def body(engine, http):
        one = await http.post("/api/events", json={"type": "agent.task_done", "agent": "coder", "data": {"ok": True}})
        assert one.status == 202
        answer = await one.json()
        assert answer["accepted"] == 1 and len(answer["ids"]) == 1
        assert answer["ids"][0] in {e["id"] for e in stored_lines(engine)}  # durable before the 202
        many = await http.post("/api/events", json=[{"type": "agent.heartbeat", "agent": "a"},
                                                    {"type": "agent.heartbeat", "agent": "b"}])
        assert (await many.json())["accepted"] == 2
        nd = await http.post("/api/events", data=b'{"type": "agent.heartbeat"}\n{"type": "agent.error"}\n',
                             headers={"Content-Type": "application/x-ndjson"})
        ids = (await nd.json())["ids"]
        assert nd.status == 202 and set(ids) <= {e["id"] for e in stored_lines(engine)}
        again = await http.post("/api/events", json={"id": ids[0], "type": "agent.heartbeat"})
        assert (await again.json()) == {"accepted": 1, "ids": [ids[0]], "duplicates": 1}
        listed = await (await http.get("/api/events", params={"type": "agent.heartbeat", "limit": "2"})).json()
        assert len(listed["events"]) == 2 and listed["next"] == listed["events"][-1]["id"]
        page2 = await (await http.get("/api/events", params={"type": "agent.heartbeat", "after": listed["next"]})).json()
        assert [e["agent"] for e in listed["events"]] + [e.get("agent") for e in page2["events"]] == ["a", "b", None]

    run_engine(tmp_path, body)


def test_a_bad_batch_writes_nothing_and_names_index_and_pointer(tmp_path: Path):
    async def body(engine, http):
        before = stored_lines(engine)
        response = await http.post("/api/events", json=[{"type": "agent.heartbeat"}, {"type": "agent.heartbeat"},
                                                        {"type": "agent.error", "data": {"x": "y" * 70000}}])
        assert response.status == 400
        assert await response.json() == {"error": "data is 70008 bytes serialized; the limit is 65536",
                                          "index": 2, "pointer": "/data"}
        reserved = await http.post("/api/events", json={"type": "reactor.succeeded"})
        assert reserved.status == 400 and (await reserved.json())["pointer"] == "/type"
        future = await http.post("/api/events", json={"type": "a.b", "ts": "2099-01-01T00:00:00Z"})
        assert future.status == 400 and (await future.json())["pointer"] == "/ts"
        garbage = await http.post("/api/events", data=b"{nope", headers={"Content-Type": "application/json"})
        assert garbage.status == 400 and "invalid JSON" in (await garbage.json())["error"]
        assert stored_lines(engine) == before

    run_engine(tmp_path, body)


def test_415_413_403_404_bodies_are_json(tmp_path: Path):
    async def body(engine, http):
        text = await http.post("/api/events", data=b"type=a.b", headers={"Content-Type": "text/plain"})
        assert text.status == 415 and "Content-Type must be" in (await text.json())["error"]
        big = await http.post("/api/events", data=b"[" + b" " * 5000 + b"]",
                              headers={"Content-Type": "application/json"})
        assert big.status == 413 and (await big.json())["limit"] == 4096
        for origin in ("http://evil.example", "null"):
            foreign = await http.post("/api/events", json={"type": "a.b"}, headers={"Origin": origin})
            assert foreign.status == 403 and "cross-origin" in (await foreign.json())["error"]
        own = await http.post("/api/events", json={"type": "a.b"}, headers={"Origin": engine.url})
        assert own.status == 202
        assert (await http.get("/api/nothing-here")).status == 404
        missing = await http.get("/api/runs/01NOSUCHRUN00000000000000A")
        assert missing.status == 404 and "no run" in (await missing.json())["error"]

    run_engine(tmp_path, body, extra="server: {max_body_bytes: 4096}\n")


def test_a_token_guards_every_request_by_header_or_login_cookie(tmp_path: Path):
    async def body(engine, http):
        anonymous = await http.get("/api/health")
        assert anonymous.status == 401 and "token" in (await anonymous.json())["error"]
        bearer = {"Authorization": "Bearer s3cret-token-0123456789"}
        assert (await http.get("/api/health", headers=bearer)).status == 200
        wrong = await http.get("/login", params={"token": "nope"})
        assert wrong.status == 401
        login = await http.get("/login", params={"token": "s3cret-token-0123456789"}, allow_redirects=False)
        assert login.status == 302 and "aios_token" in login.cookies
        assert (await http.get("/api/agents")).status == 200  # the cookie jar now carries it

    run_engine(tmp_path, body, extra="server: {token: s3cret-token-0123456789}\n")


def test_a_posted_event_flows_through_the_shipped_loop_to_an_outcome(tmp_path: Path):
    async def body(engine, http):
        posted = await http.post("/api/events", json={"type": "agent.error", "agent": "coder"})
        cause = (await posted.json())["ids"][0]
        decision = await wait_for_event(engine, lambda e: e["type"] == "scheduler.decision"
                                        and e["data"]["cause"] == cause)
        assert decision["data"]["playbook"] == "note-errors" and decision["data"]["priority"] == "P2"
        done = await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded" and e["data"]["cause"] == cause)
        noted = await wait_for_event(engine, lambda e: e["type"] == "ops.noted")
        assert noted["data"]["seen"] == cause and cause in noted["chain"]
        run = await (await http.get(f"/api/runs/{done['data']['run_id']}")).json()
        assert run["status"] == "succeeded" and run["steps"][0]["id"] == "note"
        health = await (await http.get("/api/health")).json()
        assert health["status"] == "ok" and set(health["components"]) == {"store", "scheduler", "rules", "problems",
                                                                           "sensors", "agents"}
        playbooks = await (await http.get("/api/playbooks")).json()
        assert [p["id"] for p in playbooks["playbooks"]] == ["note-errors"]

    run_engine(tmp_path, body)


def test_metrics_parse_with_the_prometheus_parser(tmp_path: Path):
    async def body(engine, http):
        await http.post("/api/events", json=[{"type": "agent.heartbeat"}, {"type": "agent.error", "agent": "x"}])
        await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded")
        text = await (await http.get("/metrics")).text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        ingested = {s.labels["type"]: s.value for s in families["aios_events_ingested"].samples
                    if s.name.endswith("_total")}
        assert ingested["agent.heartbeat"] == 1 and ingested["agent.error"] == 1
        runs = {s.labels["outcome"]: s.value for s in families["aios_runs"].samples if s.name.endswith("_total")}
        assert runs["succeeded"] == 1
        assert {"aios_decisions", "aios_queue_depth", "aios_run_duration_seconds", "aios_store_commit_seconds",
                "aios_websocket_clients"} <= set(families)

    run_engine(tmp_path, body)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "1m"):
    """A tmpfs of `size` at `path` (root only); None when mounting is impossible here."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_503_while_the_disk_is_full_nothing_half_written_and_recovery_when_space_returns(tmp_path: Path,
                                                                                       monkeypatch):
    data = tmp_path / "full"
    with small_filesystem(data, "24m") as mounted:  # room for the 8 MiB reserve
        if not mounted:  # inject ENOSPC where a tmpfs cannot be mounted
            import engine.store.writer as writer_module

            real_write = os.write
            state = {"full": False}

            def write(fd: int, payload) -> int:
                if state["full"]:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_write(fd, payload)

            monkeypatch.setattr(writer_module.os, "write", write)

        async def body(engine, http):
            await http.post("/api/events", json={"type": "agent.heartbeat"})
            before = stored_lines(engine)
            filler = data / "filler"
            if mounted:
                with open(filler, "wb") as handle:
                    with contextlib.suppress(OSError):
                        while True:
                            handle.write(b"\0" * 65536)
                            handle.flush()
            else:
                state["full"] = True
            refused = await http.post("/api/events", json=[{"type": "agent.heartbeat", "data": {"pad": "x" * 4000}}
                                                           for _ in range(20)])
            assert refused.status == 503 and refused.headers["Retry-After"]
            assert "cannot write" in (await refused.json())["error"]
            assert stored_lines(engine) == before  # nothing half-written
            assert (await http.get("/api/health")).status == 503
            if mounted:
                filler.unlink()
            else:
                state["full"] = False
            again = await http.post("/api/events", json={"type": "agent.heartbeat", "data": {"back": True}})
            assert again.status == 202
            assert (await http.get("/api/health")).status == 200

        run_engine(tmp_path, body, data_dir=data)


def test_reload_keeps_the_old_config_when_the_new_one_is_invalid_and_picks_up_new_rules(tmp_path: Path):
    async def body(engine, http):
        (tmp_path / "aios.yaml").write_text("server:\n  port: 1\n  port: 2\n")
        (tmp_path / "rules" / "more.yaml").write_text(
            "id: more\non: agent.down\nsteps:\n  - {id: s, action: emit, with: {type: ops.more}}\n")
        answer = await (await http.post("/api/reload")).json()
        assert answer["config"] == "rejected" and "duplicate key 'port'" in answer["errors"][0]
        (tmp_path / "aios.yaml").write_text("data_dir: data\nrules_dir: rules\nsensors: {interval: 1h}\n"
                                            "agents: {coder: {command: [sleep, '1']}}\n")
        fixed = await (await http.post("/api/reload")).json()
        assert fixed["config"] == "reloaded" and fixed["restart_needed_for"] == ["agents"]
        (tmp_path / "aios.yaml").write_text("server:\n  port: 1\n  port: 2\n")
        assert answer["rules"]["loaded"] == [str(tmp_path / "rules" / "more.yaml")]
        rejected = await wait_for_event(engine, lambda e: e["type"] == "config.rejected")
        assert "aios.yaml:3:3" in rejected["data"]["errors"][0]
        assert engine.config.raw["sensors"]["interval"] == "1h"  # the old config stays
        playbooks = await (await http.get("/api/playbooks")).json()
        assert [p["id"] for p in playbooks["playbooks"]] == ["more", "note-errors"]

    run_engine(tmp_path, body)


def test_the_cli_talks_to_a_running_engine_with_url(tmp_path: Path):
    import asyncio

    from conftest import run_cli

    async def body(engine, http):
        def cli(*args: str):
            return run_cli(*args, "--url", engine.url)

        emitted = await asyncio.to_thread(cli, "emit", "agent.error", "--agent", "coder", "code=500")
        assert emitted.returncode == 0, emitted.stderr
        event_id = emitted.stdout.strip()
        done = await wait_for_event(engine, lambda e: e["type"] == "reactor.succeeded")
        listed = await asyncio.to_thread(cli, "events", "--type", "agent.*", "--format", "json")
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [event_id]
        runs = await asyncio.to_thread(cli, "runs")
        assert done["data"]["run_id"] in runs.stdout and "note-errors" in runs.stdout
        one = await asyncio.to_thread(cli, "runs", done["data"]["run_id"])
        assert "status    succeeded" in one.stdout
        refused = await asyncio.to_thread(cli, "emit", "reactor.failed")
        assert refused.returncode == 1 and "refused (400)" in refused.stderr and "/type" in refused.stderr
        no_run = await asyncio.to_thread(cli, "rollback", "01NOSUCHRUN00000000000000A")
        assert no_run.returncode == 1 and "no run" in no_run.stderr

    run_engine(tmp_path, body)


def test_a_dns_rebinding_page_can_neither_post_nor_read_and_a_corrupt_gzip_body_is_a_400(tmp_path: Path):
    import gzip

    async def body(engine, http):
        before = stored_lines(engine)
        foreign = {"Host": "evil.example"}
        posted = await http.post("/api/events", json={"type": "agent.error"}, headers=foreign)
        assert posted.status == 403 and "server.allowed_hosts" in (await posted.json())["error"]
        read = await http.get("/api/events", headers=foreign)
        assert read.status == 403
        listed = await http.get("/api/health", headers={"Host": f"dash.lan:{engine.port}"})
        assert listed.status == 200
        corrupt = gzip.compress(b'{"type": "agent.error"}')[:10] + b"\xff" * 8
        bad = await http.post("/api/events", data=corrupt,
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert bad.status == 400 and (await bad.json())["encoding"] == "gzip"
        assert stored_lines(engine) == before

    run_engine(tmp_path, body, extra="server: {allowed_hosts: [dash.lan]}\n")
