"""The HTTP edge (contract §5, issue 10): JSON for every refusal, Host rule, slow clients, overload, compact.

A real aiohttp server on 127.0.0.1 (an ephemeral port) serves `build_app` over a small fake engine, so these
tests do not depend on how the engine is assembled; raw sockets play the clients that misbehave.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from engine.config import Config, load_config
from engine.live.hub import Hub
from engine.problems.book import Problem
from engine.service.api import build_app
from engine.service.edge import make_runner
from engine.service.encodings import SUPPORTED
from engine.service.metrics import Metrics
from engine.store.writer import AppendResult

TIMEOUTS = "header_timeout: 300ms, body_timeout: 300ms"


class RecordingIntake:
    """Accepts every batch, remembering it: a refused request must never get here."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def submit(self, raws: list[Any], source: str = "api", external: bool = True) -> AppendResult:
        self.batches.append(raws)
        return AppendResult([f"id{len(self.batches)}-{i}" for i in range(len(raws))], [True] * len(raws))


@dataclass
class FakeEngine:
    """The parts of `EngineAPI` these tests reach."""

    config: Config
    events_dir: Path
    host: str = "127.0.0.1"
    token: str | None = None
    stopping: bool = False
    overload: tuple[str, int] | None = None
    intake: RecordingIntake = field(default_factory=RecordingIntake)
    metrics: Metrics = field(default_factory=Metrics)
    compactions: list[bool] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # newest first, as the book lists them
    hub: Hub = field(default_factory=lambda: Hub(state=dict, clock=time.monotonic, epoch="test"))

    def overloaded(self) -> tuple[str, int] | None:
        return self.overload

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    async def compact(self, dry_run: bool) -> dict[str, Any]:
        self.compactions.append(dry_run)
        return {"dry_run": dry_run, "deleted": ["2026-01-01"], "archived": []}

    def problems_view(self, open_only: bool) -> list[dict[str, Any]]:
        return [p.summary() for p in self.problems if not open_only or p.status == "open"]

    def problem(self, problem_id: str) -> dict[str, Any] | None:
        return next((p.as_dict() for p in self.problems if p.id == problem_id), None)


def fake_engine(tmp_path: Path, server: str = TIMEOUTS, **kw: Any) -> FakeEngine:
    (tmp_path / "aios.yaml").write_text(f"server: {{{server}}}\n")
    (tmp_path / "events").mkdir(exist_ok=True)
    return FakeEngine(load_config(tmp_path / "aios.yaml"), tmp_path / "events", **kw)


@contextlib.asynccontextmanager
async def serving(engine: FakeEngine) -> AsyncIterator[int]:
    """The API over `engine`, as the engine serves it (`make_runner`), on an ephemeral port."""
    runner = make_runner(build_app(engine), engine.config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    after_s: float  # when the whole response had arrived, from the first byte sent
    closed: bool | None  # with `watch_close`: whether the server closed the connection within a second after

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


async def raw(port: int, *chunks: bytes, pause_s: float = 0.0, limit_s: float = 5.0,
              watch_close: bool = False) -> Answer | float:
    """Send `chunks` (`pause_s` apart), then read one response. The answer, or the seconds until the server
    closed the connection without answering (sending stops there too)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_s):
            for chunk in chunks:
                if reader.at_eof():
                    break
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(pause_s)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return time.monotonic() - started
            status_line, *lines = head.decode("latin-1").strip().split("\r\n")
            headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            after_s = time.monotonic() - started
            closed = None
            if watch_close:
                try:
                    closed = await asyncio.wait_for(reader.read(1), 1.0) == b""
                except TimeoutError:
                    closed = False
            return Answer(int(status_line.split()[1]), headers, body, after_s, closed)
    finally:
        writer.close()


def request_head(port: int, method: str = "POST", path: str = "/api/events", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def run(engine: FakeEngine, body) -> Any:
    async def scenario() -> Any:
        async with serving(engine) as port, aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            return await body(port, http)

    return asyncio.run(scenario())


EVENT = b'{"type": "agent.heartbeat"}'


def test_a_corrupt_gzip_body_is_a_400_naming_the_encoding_and_a_good_one_is_accepted(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        good = await http.post("/api/events", data=gzip.compress(EVENT),
                               headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert good.status == 202
        packed = gzip.compress(EVENT)
        bad_block = packed[:10] + b"\xff" * 20  # a deflate block of the reserved type
        bad_crc = packed[:-8] + bytes([packed[-8] ^ 1]) + packed[-7:]
        for corrupt in (bad_block, bad_crc):
            bad = await http.post("/api/events", data=corrupt,
                                  headers={"Content-Type": "application/json", "Content-Encoding": "GZip"})
            assert bad.status == 400 and bad.content_type == "application/json"
            assert await bad.json() == {"error": "the request body is not valid gzip (Content-Encoding: gzip)",
                                        "encoding": "gzip"}
        assert engine.intake.batches == [[{"type": "agent.heartbeat"}]]  # only the good one got through

    run(engine, body)


def test_codings_the_server_cannot_decode_are_415_listing_what_it_can(tmp_path: Path):
    engine = fake_engine(tmp_path)
    undecodable = [c for c in ("br", "zstd", "compress", "x-gzip", "gzip, gzip") if c not in SUPPORTED]

    async def body(port, http):
        for coding in undecodable:  # br/zstd: aiohttp's parser refuses; the others: the handler does
            answer = await raw(port, request_head(port, Content_Type="application/json", Content_Encoding=coding,
                                                  Content_Length="27") + EVENT)
            assert answer.status == 415, (coding, answer)
            refusal = answer.json()
            assert refusal["supported"] == list(SUPPORTED) and "gzip" in refusal["supported"]
            assert "is not supported; send one of: identity, gzip, deflate" in refusal["error"]
        assert engine.intake.batches == []

    assert "br" in undecodable  # the Brotli package is not installed here: aiohttp's own refusal is covered
    run(engine, body)


def test_what_aiohttp_refuses_by_itself_is_answered_with_json(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        long_header = f"X-Pad: {'a' * 9000}\r\n"
        many = "".join(f"X-H{i}: v\r\n" for i in range(200))
        for malformed in (b"NOT HTTP AT ALL\r\n\r\n",
                          b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                          f"GET / HTTP/1.1\r\nHost: localhost\r\n{long_header}\r\n".encode(),
                          f"GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n".encode(),
                          (b"POST /api/events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")):
            answer = await raw(port, malformed)
            assert answer.status == 400, (malformed[:40], answer)
            assert answer.json()["error"].startswith("malformed HTTP request")
        expect = await raw(port, request_head(port, Expect="teleport", Content_Length="27",
                                              Content_Type="application/json"))
        assert expect.status == 417 and expect.json()["error"] == "Expectation Failed"
        wrong_method = await http.post("/metrics")
        assert wrong_method.status == 405 and "GET" in wrong_method.headers["Allow"]
        assert (await wrong_method.json())["error"] == "Method Not Allowed"
        nowhere = await http.get("/no/such/page")
        assert nowhere.status == 404 and (await nowhere.json())["error"] == "Not Found"

    run(engine, body)


def test_a_foreign_host_is_refused_on_a_loopback_bind_unless_listed(tmp_path: Path):
    engine = fake_engine(tmp_path, f"{TIMEOUTS}, allowed_hosts: [Engine.Example]")

    async def body(port, http):
        for host in ("evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0",
                     "[::2]"):
            refused = await http.post("/api/events", data=EVENT, headers={"Host": host,
                                                                          "Content-Type": "application/json"})
            assert refused.status == 403, host
            assert "server.allowed_hosts" in (await refused.json())["error"]
        assert engine.intake.batches == []
        for host in (f"localhost:{port}", "LOCALHOST", f"127.0.0.1:{port}", "127.0.0.2", f"[::1]:{port}", "[::1]",
                     "engine.example", f"ENGINE.example:{port}"):
            served = await http.get("/api/health", headers={"Host": host})
            assert served.status == 200, host
        malformed = await http.get("/api/health", headers={"Host": "::1"})
        assert malformed.status == 400 and "malformed Host" in (await malformed.json())["error"]
        no_host = await raw(port, b"GET /api/health HTTP/1.1\r\n\r\n")  # aiohttp's own refusal
        assert no_host.status == 400 and "Missing 'Host' header" in no_host.json()["error"]
        no_host_10 = await raw(port, b"GET /api/health HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit it; not here
        assert no_host_10.status == 400 and no_host_10.json() == {"error": "a Host header is required"}

    run(engine, body)


def test_the_host_rule_is_off_when_not_bound_to_loopback(tmp_path: Path):
    engine = fake_engine(tmp_path, host="0.0.0.0", token="s3cret-token-0123456789")

    async def body(port, http):
        served = await http.get("/api/health", headers={"Host": "engine.lan:8765",
                                                        "Authorization": "Bearer s3cret-token-0123456789"})
        assert served.status == 200

    run(engine, body)


def test_a_client_that_stalls_in_its_headers_is_disconnected_after_header_timeout(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        half = request_head(port)[:30]
        closed = await raw(port, half)
        assert isinstance(closed, float) and 0.25 <= closed < 3, closed
        # trickling a byte every 50 ms does not keep the connection: the limit is for the whole head
        trickled = await raw(port, *(bytes([b]) for b in request_head(port, X_Pad="p" * 200)), pause_s=0.05)
        assert isinstance(trickled, float) and trickled < 3, trickled
        fine = await http.get("/api/health")  # a prompt client is served as usual
        assert fine.status == 200

    run(engine, body)


def test_a_client_that_stalls_in_its_body_gets_408_after_body_timeout(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        answer = await raw(port, request_head(port, Content_Type="application/json", Content_Length="100")
                           + EVENT[:10], watch_close=True)
        assert answer.status == 408
        assert "server.body_timeout" in answer.json()["error"]
        assert 0.25 <= answer.after_s < 3 and answer.closed  # at once: no waiting for the rest
        assert engine.intake.batches == []

    run(engine, body)


def test_overload_is_503_with_retry_after_before_the_body_is_read(tmp_path: Path):
    engine = fake_engine(tmp_path, "body_timeout: 30s")
    engine.overload = ("25000 events wait to be decided (server.max_undecided: 20000)", 7)

    async def body(port, http):
        # the body never comes: the answer must not wait for it
        answer = await raw(port, request_head(port, Content_Type="application/json", Content_Length="1000",
                                              Connection="close"))
        assert answer.status == 503 and answer.headers["retry-after"] == "7" and answer.after_s < 3
        assert answer.json() == {"error": "25000 events wait to be decided (server.max_undecided: 20000)"}
        posted = await http.post("/api/events", data=EVENT, headers={"Content-Type": "application/json"})
        assert posted.status == 503 and posted.headers["Retry-After"] == "7"
        assert engine.intake.batches == []
        engine.overload = None
        assert (await http.post("/api/events", data=EVENT, headers={"Content-Type": "application/json"})).status == 202

    run(engine, body)


def test_compact_runs_retention_now_or_reports_it_with_dry_run(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        dry = await http.post("/api/compact", params={"dry_run": "true"})
        assert dry.status == 200 and (await dry.json())["dry_run"] is True
        real = await http.post("/api/compact")
        assert (await real.json()) == {"dry_run": False, "deleted": ["2026-01-01"], "archived": []}
        typo = await http.post("/api/compact", params={"dry_run": "ture"})
        assert typo.status == 400 and "dry_run must be" in (await typo.json())["error"]
        assert engine.compactions == [True, False]  # the typo compacted nothing

    run(engine, body)


def test_a_bad_time_in_a_query_is_a_400_saying_what_is_accepted(tmp_path: Path):
    engine = fake_engine(tmp_path)

    async def body(port, http):
        bad = await http.get("/api/events", params={"since": "yesterday"})
        assert bad.status == 400 and "use RFC 3339" in (await bad.json())["error"]
        good = await http.get("/api/events", params={"since": "15m"})
        assert good.status == 200 and (await good.json()) == {"events": [], "next": None}

    run(engine, body)


def test_problems_are_listed_newest_first_as_summaries_and_one_comes_whole_with_its_timeline(tmp_path: Path):
    healed = Problem("pr-01OLD", "agent-down", '["coder"]', {"agent": "coder"}, 1_700_000_000.0, {"id": "e1"},
                     status="resolved", heal_s=7.4, run_id="run1", resolved_at=1_700_000_007.4)
    healed.note({"ts": "2023-11-14T22:13:20.000000Z", "id": "e1", "type": "agent.down", "what": "opened"})
    fresh = Problem("pr-01NEW", "cpu-spike", '["h1"]', {"host": "h1"}, 1_700_000_100.0, {"id": "e2"})
    engine = fake_engine(tmp_path, problems=[fresh, healed])

    async def body(port, http):
        listed = await http.get("/api/problems")
        assert listed.status == 200 and listed.content_type == "application/json"
        assert (await listed.json()) == {"problems": [fresh.summary(), healed.summary()]}
        assert "timeline" not in (await listed.json())["problems"][1]
        for flag in ("1", "true"):
            only_open = await (await http.get("/api/problems", params={"open": flag})).json()
            assert [p["id"] for p in only_open["problems"]] == ["pr-01NEW"]
        typo = await http.get("/api/problems", params={"open": "maybe"})
        assert typo.status == 400 and "open must be" in (await typo.json())["error"]
        one = await http.get("/api/problems/pr-01OLD")
        assert one.status == 200 and one.content_type == "application/json"
        whole = await one.json()
        assert whole == json.loads(json.dumps(healed.as_dict()))
        assert whole["timeline"][0]["what"] == "opened" and whole["heal_s"] == 7.4
        unknown = await http.get("/api/problems/pr-01NOPE")
        assert unknown.status == 404 and unknown.content_type == "application/json"
        assert (await unknown.json()) == {"error": "no problem pr-01NOPE"}

    run(engine, body)
