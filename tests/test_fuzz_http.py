"""No request makes the HTTP API answer 500 or log a traceback (issue 14): random methods, routes, path ids,
query strings, headers (Host, Origin, Authorization, Content-Type, Content-Encoding…) and bodies (events,
arrays, NDJSON, deep, huge, odd JSON, bad UTF-8, compressed or not), and random `/ws` clients.

One real engine per test function (`service_harness.run_engine` in a thread with its own event loop); the
seeded hypothesis examples of that test all talk to it over raw sockets, so nothing the client library
would tidy up is tidied up. After the examples the engine must still answer `GET /api/health` with 200.
"""
from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_harness import run_engine

from engine.events import format_ts
from engine.service.api import build_app
from engine.service.app import Engine

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOKEN = "fuzz-token-0123456789abcdef"
MAX_BODY = 128 << 10
SERVER = f"max_body_bytes: {MAX_BODY}, body_timeout: 2s, header_timeout: 2s"
# Every route `build_app` serves (checked below), with the method it is meant for.
ROUTES = [("POST", "/api/events"), ("GET", "/api/events"), ("GET", "/api/health"), ("GET", "/api/agents"),
          ("GET", "/api/playbooks"), ("GET", "/api/problems"), ("GET", "/api/problems/{problem_id}"),
          ("GET", "/api/score"), ("POST", "/api/feedback"), ("POST", "/api/tune"), ("GET", "/api/runs"),
          ("GET", "/api/runs/{run_id}"), ("POST", "/api/runs/{run_id}/rollback"), ("POST", "/api/reload"),
          ("POST", "/api/compact"), ("GET", "/metrics"), ("GET", "/login"), ("GET", "/ws"), ("GET", "/"),
          ("GET", "/office"), ("GET", "/web/{name}"), ("*", "/api/{tail}"),
          # operator controls (docs/controls.md) and run controls (docs/runs.md)
          ("GET", "/api/controls"), ("GET", "/api/silences"), ("POST", "/api/silences"),
          ("DELETE", "/api/silences/{silence_id}"), ("POST", "/api/pause"), ("POST", "/api/resume"),
          ("POST", "/api/playbooks/{playbook_id}/disable"), ("POST", "/api/playbooks/{playbook_id}/enable"),
          ("POST", "/api/playbooks/{playbook_id}/trigger"), ("POST", "/api/agents/{agent}/restart"),
          ("POST", "/api/agents/{agent}/stop"), ("POST", "/api/agents/{agent}/start"),
          ("POST", "/api/budget/{agent}/reset"), ("POST", "/api/breakers/{playbook_id}/reset"),
          ("POST", "/api/runs/{run_id}/cancel"), ("POST", "/api/runs/{run_id}/rerun"),
          ("POST", "/api/runs/{run_id}/approve"), ("POST", "/api/runs/{run_id}/deny"), ("GET", "/api/approvals")]


# -- the engine under fuzz ----------------------------------------------------------------------------
class Tracebacks(logging.Handler):
    """Every log record, from any thread, that carries an exception or a printed traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info or "Traceback" in text:
            self.found.append(f"{record.name}: {text} ({record.exc_info[1]!r})" if record.exc_info else text)


@dataclass
class Live:
    engine: Engine
    loop: asyncio.AbstractEventLoop
    http: aiohttp.ClientSession
    tracebacks: Tracebacks
    stop: asyncio.Event
    token: str | None = None
    epochs: list[str] = field(default_factory=list)  # of /ws frames seen, for `resume=`

    @property
    def port(self) -> int:
        return self.engine.port

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run `coroutine` on the engine's loop, from the test's thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    """An engine serving in a thread for the whole test function (`request.param`: more `server` keys)."""
    extra = f"server: {{{SERVER}{getattr(request, 'param', '')}}}\n"
    handler = Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    started: list[Live] = []
    ready, failed = threading.Event(), []

    async def serve(engine: Engine, http: aiohttp.ClientSession) -> None:
        started.append(Live(engine, asyncio.get_running_loop(), http, handler, asyncio.Event(), engine.token))
        ready.set()
        await started[0].stop.wait()

    def thread() -> None:
        try:
            run_engine(tmp_path, serve, extra=extra)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)
            ready.set()

    worker = threading.Thread(target=thread, name="fuzzed-engine")
    worker.start()
    ready.wait(30)
    try:
        assert not failed and started, f"the engine did not start: {failed}"
        yield started[0]
    finally:
        if started:
            started[0].loop.call_soon_threadsafe(started[0].stop.set)
        worker.join(30)
        root.removeHandler(handler)
    assert not failed, failed
    assert handler.found == [], handler.found


def assert_still_serving(live: Live) -> None:
    reply = exchange(live.port, b"GET", b"/api/health", [(b"Host", b"127.0.0.1"), *auth(live)], b"")
    assert reply.status == 200, reply
    assert json.loads(reply.body)["status"] in ("ok", "degraded")
    assert live.tracebacks.found == [], live.tracebacks.found


def auth(live: Live) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {live.token}".encode())] if live.token else []


# -- a client that sends exactly the bytes it is given ------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
             chunked: bool = False) -> Reply:
    """One request on a fresh connection; `chunked` frames the body in chunks instead of a length."""
    framing = [(b"Transfer-Encoding", b"chunked")] if chunked else [(b"Content-Length", b"%d" % len(body))]
    head = b"%s %s HTTP/1.1\r\n" % (method, target) + b"".join(
        b"%s: %s\r\n" % pair for pair in [*headers, *framing, (b"Connection", b"close")]) + b"\r\n"
    payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _parts(body)) + b"0\r\n\r\n" \
        if chunked else body
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):  # refused from the head: its answer is still there
            pass
        response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
        response.begin()
        content = b"" if response.status == 101 else response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, content)


def _parts(body: bytes, size: int = 4096) -> Iterator[bytes]:
    return (body[i:i + size] for i in range(0, len(body), size))


def check(reply: Reply, method: bytes, live: Live) -> None:
    """What every answer must be: no 5xx but a 503 saying when to retry, JSON errors, no traceback logged."""
    assert reply.status < 500 or (reply.status == 503 and "retry-after" in reply.headers), reply
    if 400 <= reply.status < 600 and method != b"HEAD":
        assert reply.headers.get("content-type", "").startswith("application/json"), reply
        answer = json.loads(reply.body)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), reply
    assert b"Traceback" not in reply.body, reply
    assert live.tracebacks.found == [], live.tracebacks.found


# -- what requests are made of ------------------------------------------------------------------------
def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], weight: int = 8) -> st.SearchStrategy[Any]:
    """`usual` about `weight` times in `weight + 1` (`one_of` would not weigh a strategy repeated): most
    requests, odd in a few ways only, must get past the edge to the handlers."""
    return st.sampled_from([True] * weight + [False]).flatmap(lambda usual_one: usual if usual_one else odd)


TEXT = st.text(max_size=12)
ODD = ["", " ", "0", "-1", "1e309", "99999999999999999999", "999999999999d", "15m", "2026-01-01",
       "2026-02-30T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "true", "yes", "null", "*",
       "agent.*", "%", "%zz", "%ff%fe", "\x00", "é", "\ud800", "../..", "a" * 300, "01AAAAAAAAAAAAAAAAAAAAAAAA"]
ODD_STRINGS = st.sampled_from(ODD)
VALUES = st.one_of(ODD_STRINGS, TEXT)
QUERY_KEYS = mostly(st.sampled_from(["since", "until", "type", "agent", "limit", "last", "after", "open", "playbook",
                                     "status", "dry_run", "revert", "force", "resume", "token"]), TEXT)
RAW_TAILS = st.sampled_from([b"&&", b"=", b"a=%", b"%ff=%fe", b"\xff\xfe", b";", b"a=b=c", b"#x", b"?"])


@st.composite
def query_strings(draw: st.DrawFn) -> bytes:
    """Pairs encoded as a client would, or glued together raw (bad escapes, bytes over 0x7f)."""
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, VALUES), max_size=4))
    if draw(mostly(st.just(True), st.just(False))):
        return urllib.parse.urlencode(pairs, errors="surrogatepass").encode()
    text = b"&".join(k.encode("utf-8", "surrogatepass") + b"=" + v.encode("utf-8", "surrogatepass") for k, v in pairs)
    return text.translate(None, b"\r\n ") + draw(st.one_of(st.just(b""), RAW_TAILS))


SEGMENTS = mostly(TEXT.map(lambda s: urllib.parse.quote(s, safe="", errors="surrogatepass")),
                  st.sampled_from(["01AAAAAAAAAAAAAAAAAAAAAAAA", "..", ".", "%2e%2e", "%00", "%ff", "a%2Fb", "x" * 500,
                                   "dashboard.html", "nope.js", "\xff", ""]))


@st.composite
def targets(draw: st.DrawFn, route: str) -> bytes:
    path = re.sub(r"\{\w+\}", lambda _: draw(SEGMENTS), route)
    query = draw(st.one_of(st.just(b""), query_strings()))
    return path.encode("latin-1") + (b"?" + query if query or draw(st.booleans()) else b"")


def hosts(port: int) -> st.SearchStrategy[bytes | None]:
    return mostly(st.just(f"127.0.0.1:{port}".encode()), st.sampled_from([
        b"localhost", b"[::1]:1", b"127.0.0.1", b"LOCALHOST:80", b"evil.example", b"127.0.0.1:abc", b"[::1", b"",
        b"\xff\xfe", b"127.0.0.1:" + b"9" * 30, b"127.0.0.1.evil.example", None]))


def origins(port: int) -> st.SearchStrategy[bytes | None]:
    return mostly(st.sampled_from([None, f"http://127.0.0.1:{port}".encode()]), st.sampled_from([
        b"null", b"http://evil.example", b"", b"\xff", f"https://127.0.0.1:{port}".encode(), b"http://localhost"]))


def authorizations(token: str | None) -> st.SearchStrategy[bytes | None]:
    mine = f"Bearer {token or 'x'}".encode()
    return mostly(st.just(mine), st.sampled_from([None, b"Bearer", b"Bearer ", b"Basic eDp5", b"bearer " + mine[7:],
                                                  b"Bearer \xff\xfe", b"Bearer " + b"x" * 5000, mine + b" ", b"\x00"]))


CONTENT_TYPES = mostly(st.sampled_from([b"application/json", b"application/x-ndjson"]), st.sampled_from([
    b"application/json; charset=latin-1", b"APPLICATION/JSON", b"text/plain", b"", b"multipart/form-data; boundary=x",
    b"application/x-www-form-urlencoded", b"application/json; boundary", b"\xff/\xfe", b";", None]))
ENCODINGS = mostly(st.none(), st.sampled_from([b"gzip", b"deflate", b"identity", b"br", b"zstd", b"gzip, gzip", b"GZIP",
                                               b"compress", b"\xff", b" ", b"x-gzip"]))
METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"TRACE", b"CONNECT",
                           b"FOO", b"G\xffT", b"get", b"P0ST"])
HEADER_NAMES = mostly(st.sampled_from([b"Cookie", b"Accept", b"Expect", b"Upgrade", b"Connection", b"Sec-WebSocket-Key",
                                       b"Sec-WebSocket-Version", b"X-Forwarded-For", b"Range", b"Accept-Encoding",
                                       b"Content-Length", b"Host", b"Origin", b"Authorization"]),
                      st.binary(min_size=1, max_size=8))
HEADER_VALUES = mostly(st.sampled_from([b"aios_token=" + TOKEN.encode(), b"aios_token=\xff", b"a=b; aios_token=",
                                        b"100-continue", b"websocket", b"Upgrade", b"13", b"dGhlIHNhbXBsZSBub25jZQ==",
                                        b"", b"x" * 9000, b"bytes=0-1", b"*", b"\xff\xfe\xfd", b"1"]),
                       st.binary(max_size=20))


@st.composite
def headers(draw: st.DrawFn, live: Live) -> list[tuple[bytes, bytes]]:
    out = [(name, value) for name, value in (
        (b"Host", draw(hosts(live.port))), (b"Origin", draw(origins(live.port))),
        (b"Authorization", draw(authorizations(live.token))), (b"Content-Type", draw(CONTENT_TYPES)),
        (b"Content-Encoding", draw(ENCODINGS))) if value is not None]
    out += draw(mostly(st.just([]), st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), min_size=1, max_size=3), 4))
    if not draw(st.sampled_from([True] * 20 + [False])):
        out += [(b"X-Many-%d" % i, b"1") for i in range(130)]  # over aiohttp's 128 headers
    return [(name.translate(None, b"\r\n"), value.translate(None, b"\r\n")) for name, value in out]


# -- bodies -------------------------------------------------------------------------------------------
def _now() -> str:
    return format_ts(time.time())


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
                        st.text(max_size=20), st.sampled_from(["\ud800", "x" * 70_000]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)
TYPES = mostly(st.sampled_from(["agent.heartbeat", "agent.error", "agent.down", "agent.task_done", "agent.started",
                                "resource.cpu_spike", "resource.cpu_spike_cleared", "a.b"]),
               st.one_of(st.sampled_from(["score.degraded", "problem.opened", "reactor.failed", "A.B", "a", "a..b",
                                          ""]), JSON))
EVENTS = st.fixed_dictionaries({"type": TYPES}, optional={
    "id": mostly(st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26), JSON),
    "ts": mostly(st.builds(_now), st.one_of(ODD_STRINGS, JSON)), "source": mostly(TEXT, JSON),
    "agent": mostly(st.sampled_from(["coder", "fuzz"]), JSON), "host": mostly(TEXT, JSON),
    "severity": mostly(st.sampled_from(["debug", "info", "warning", "error", "critical"]), JSON),
    "data": mostly(st.dictionaries(st.sampled_from(["exit_code", "ok", "duration_ms", "x", "active"]), JSON), JSON),
    "chain": st.one_of(st.lists(st.text(max_size=26), max_size=3), JSON), "extra": JSON})
FEEDBACK = st.fixed_dictionaries({}, optional={
    "event": mostly(st.sampled_from(["01AAAAAAAAAAAAAAAAAAAAAAAA", "nope"]), JSON),
    "agent": mostly(st.just("coder"), JSON), "at": mostly(st.builds(_now), st.one_of(ODD_STRINGS, JSON)),
    "label": mostly(st.booleans(), JSON), "extra": JSON})


CONTROL = st.fixed_dictionaries({}, optional={
    "agent": mostly(st.sampled_from(["coder", "cod*", "[", "*" * 50]), JSON),
    "playbook": mostly(st.just("restart-*"), JSON), "type": mostly(st.just("agent.*"), JSON),
    "labels": mostly(st.just({"team": "platform"}), JSON),
    "for": mostly(st.sampled_from(["1h", "5s", "0s", "99999999999999999999d", "5x"]), JSON),
    "ends_at": mostly(st.builds(_now), st.one_of(ODD_STRINGS, JSON)),
    "starts_at": mostly(st.builds(_now), st.one_of(ODD_STRINGS, JSON)),
    "reason": mostly(st.sampled_from(["maintenance", ""]), JSON), "key": JSON,
    "event": mostly(st.sampled_from(["01AAAAAAAAAAAAAAAAAAAAAAAA", "nope"]), JSON),
    "fields": mostly(EVENTS, JSON), "extra": JSON})


def dumps(value: Any) -> bytes:
    """JSON text of `value`, lone surrogates escaped and infinities as `Infinity` (JSON that is not quite)."""
    return json.dumps(value).encode()


def _nested(depth: int) -> bytes:
    return b'{"type": "a.b", "data": ' + b'{"x": ' * depth + b"1" + b"}" * depth + b"}"


ODD_BODIES = st.sampled_from([
    b"", b"null", b"{}", b"[]", b"[[]]", b"[null]", b"1", b'"a.b"', b"[" * 20_000, b'{"a": ' * 5_000,
    b"1" * 20_000, b"1e999999", b"-0", b"NaN", b'{"type": "a.b", "data": {"n": 1e400}}', b'"\\ud800"',
    b'{"type": "a.b", "data": {"s": "\\ud800"}}', b"\xef\xbb\xbf" + b'{"type": "a.b"}',
    b'{"type": "a.b", "type": "c.d"}', b'{"type": "a.b"}\n{"type": ', b"\x00", b'{"type": "a\x00.b"}',
    b'{"type": "agent.heartbeat", "data": {"x": 18446744073709551616}}', _nested(31), _nested(32), _nested(33),
    b'{"type": "a.b", "data": {"x": "' + b"y" * 65_530 + b'"}}', b" " * (MAX_BODY + 1),
    b"\n" * 1000, b"\r\n".join([b'{"type": "a.b"}'] * 50), b'{"type": "\xff\xfe"}'])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["one", "array", "ndjson", "feedback", "control", "odd", "bytes"]))
    if shape == "control":
        return dumps(draw(CONTROL))
    if shape == "one":
        return dumps(draw(EVENTS))
    if shape == "array":
        return dumps(draw(st.lists(EVENTS, max_size=5)))
    if shape == "ndjson":
        return b"\n".join(draw(st.lists(mostly(EVENTS.map(dumps), st.sampled_from([b"", b"{", b"\xff", b"[]"])),
                                        max_size=5)))
    if shape == "feedback":
        return dumps(draw(FEEDBACK))
    return draw(ODD_BODIES if shape == "odd" else st.binary(max_size=200))


def encode(body: bytes, coding: bytes | None, really: bool) -> bytes:
    """`body` compressed as `coding` says (when `really`; else sent as it is, which must not decode)."""
    if not really or coding is None:
        return body
    name = coding.strip().lower()
    if name in (b"gzip", b"x-gzip"):
        return gzip.compress(body)
    if name == b"deflate":
        return zlib.compress(body)
    return body


# -- the tests ----------------------------------------------------------------------------------------
def test_the_fuzzers_know_every_route(live: Live):
    served = {(route.method, route.resource.canonical) for route in build_app(live.engine).router.routes()}
    assert served - {("HEAD", path) for _, path in ROUTES} == set(ROUTES)


def fuzz_requests(live: Live, route_strategy: st.SearchStrategy[tuple[str, str]],
                  method_for: Callable[[str, st.DrawFn], bytes]) -> None:
    @FUZZ
    @given(st.data())
    def one(data: st.DataObject) -> None:
        method_name, route = data.draw(route_strategy)
        method = method_for(method_name, data.draw)
        target = data.draw(targets(route))
        sent = data.draw(headers(live))
        coding = dict(sent).get(b"Content-Encoding")
        body = encode(data.draw(bodies()), coding, data.draw(mostly(st.just(True), st.just(False))))
        if method in (b"GET", b"HEAD") and data.draw(st.booleans()):
            body = b""
        reply = exchange(live.port, method, target, sent, body, chunked=not data.draw(mostly(st.just(True),
                                                                                         st.just(False))))
        check(reply, method, live)

    one()
    assert_still_serving(live)


@pytest.mark.parametrize("live", ["", f", token: {TOKEN}"], indirect=True, ids=["open", "token"])
def test_any_request_to_any_route(live: Live):
    """Random methods too: 405 and aiohttp's own refusals (bad method, too many headers) must be JSON."""
    fuzz_requests(live, st.sampled_from(ROUTES),
                  lambda name, draw: draw(mostly(st.just(name.replace("*", "GET").encode()), METHODS, 3)))


def test_writes_with_random_bodies_headers_and_queries(live: Live):
    """The POST routes with their own method, so most requests get past routing to the handlers."""
    posts = [route for route in ROUTES if route[0] in ("POST", "DELETE")]
    fuzz_requests(live, st.sampled_from(posts), lambda name, draw: name.encode())


# The query keys each route reads: every one meets every odd value below, not only those hypothesis draws.
ROUTE_KEYS = {"/api/events": ("since", "until", "type", "agent", "limit", "last", "after"),
              "/api/runs": ("limit", "playbook", "status"), "/api/problems": ("open",), "/api/score": ("agent",),
              "/login": ("token",), "/ws": ("resume",)}
POST_KEYS = {"/api/tune": ("dry_run", "revert"), "/api/compact": ("dry_run",),
             "/api/runs/01AAAAAAAAAAAAAAAAAAAAAAAA/rollback": ("force",)}


@pytest.mark.parametrize("live", ["", f", token: {TOKEN}"], indirect=True, ids=["open", "token"])
def test_every_query_key_with_every_odd_value(live: Live):
    own = [(b"Host", b"127.0.0.1"), *auth(live)]
    for method, keys in ((b"GET", ROUTE_KEYS), (b"POST", POST_KEYS)):
        for route, names in keys.items():
            for name in names:
                for value in ODD:
                    query = urllib.parse.urlencode({name: value}, errors="surrogatepass").encode()
                    check(exchange(live.port, method, f"{route}?".encode() + query, own, b""), method, live)
    assert_still_serving(live)


def test_event_bodies_of_every_shape_type_and_encoding(live: Live):
    """POST /api/events from a client that gets the edge right: every body reaches intake."""
    own = [(b"Host", b"127.0.0.1"), *auth(live)]

    @FUZZ
    @given(body=bodies(), content_type=CONTENT_TYPES, coding=ENCODINGS, compress=st.booleans(),
           chunked=st.booleans())
    def one(body: bytes, content_type: bytes | None, coding: bytes | None, compress: bool, chunked: bool) -> None:
        sent = own + [(name, value) for name, value in ((b"Content-Type", content_type),
                                                         (b"Content-Encoding", coding)) if value is not None]
        reply = exchange(live.port, b"POST", b"/api/events", sent, encode(body, coding, compress), chunked)
        check(reply, b"POST", live)
        if reply.status == 202:
            answer = json.loads(reply.body)
            assert answer["accepted"] == len(answer["ids"]) >= 1, answer

    one()
    assert_still_serving(live)


def test_reads_with_random_query_strings(live: Live):
    own = [(b"Host", b"127.0.0.1"), *auth(live)]

    @FUZZ
    @given(route=st.sampled_from(["/api/events", "/api/runs", "/api/problems", "/api/score", "/api/agents",
                                  "/api/problems/{problem_id}", "/api/runs/{run_id}", "/login", "/metrics"]),
           data=st.data())
    def one(route: str, data: st.DataObject) -> None:
        target = data.draw(targets(route))
        check(exchange(live.port, b"GET", target, own, b""), b"GET", live)

    one()
    assert_still_serving(live)


# -- /ws ----------------------------------------------------------------------------------------------
# Answered with an error frame at "/sentinel": every message sent before it has been read.
SENTINEL = '{"filter": {}, "sentinel": 1}'
FILTERS = st.fixed_dictionaries({}, optional={
    "types": st.one_of(st.lists(st.sampled_from(["resource.*", "agent.down", "*", "", "[", "a" * 300]), max_size=3),
                       JSON),
    "min_severity": st.one_of(st.sampled_from(["debug", "warning", "critical", "nope", ""]), JSON),
    "agents": st.one_of(st.lists(st.sampled_from(["coder", "", "x" * 300]), max_size=3), JSON), "other": JSON})
MESSAGES = st.one_of(
    FILTERS.map(lambda f: dumps({"filter": f}).decode()), JSON.map(lambda v: dumps(v).decode()),
    st.text(max_size=30), st.binary(max_size=30), st.just("x" * (70 << 10)),
    st.sampled_from(["", "{", "[]", "null", '{"filter": null}', '{"filter": {}, "x": 1}', "\ud800"]))
RESUMES = st.one_of(st.none(), st.sampled_from(["PREV:1", "PREV:0", "PREV:999999999999999", "PREV:-1", "PREV:",
                                                ":1", "x:1", "PREV:9999999999999999", "PREV", ""]), VALUES)


def test_websocket_clients_with_random_resume_and_messages(live: Live):
    @FUZZ
    @given(resume=RESUMES, messages=st.lists(MESSAGES, max_size=6))
    def one(resume: str | None, messages: list[str | bytes]) -> None:
        if resume is not None and live.epochs:
            resume = resume.replace("PREV", live.epochs[-1])
        live.run(talk(live, resume, messages))
        assert live.tracebacks.found == [], live.tracebacks.found

    one()
    assert_still_serving(live)


async def talk(live: Live, resume: str | None, messages: list[str | bytes]) -> None:
    sendable = None if resume is None else resume.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    query = {} if sendable is None else {"resume": sendable}  # a lone surrogate cannot go in a URL
    async with live.http.ws_connect("/ws", params=query, headers=dict(auth(live))) as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            elif message.encode("utf-8", "surrogatepass") == message.encode("utf-8", "replace"):
                await ws.send_str(message)
            else:  # text with lone surrogates is no UTF-8: its bytes go as a binary frame
                await ws.send_bytes(message.encode("utf-8", "surrogatepass"))
        await ws.send_str(SENTINEL)
        while True:  # every frame until the sentinel's answer, or the server closing (1009: a message too big)
            frame = await ws.receive(timeout=5)
            if frame.type is not aiohttp.WSMsgType.TEXT:
                assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame
                assert ws.close_code in (1000, 1001, 1009), ws.close_code
                return
            answer = json.loads(frame.data)
            assert "epoch" in answer or "filter" in answer or set(answer) == {"error", "pointer"}, answer
            if "epoch" in answer:  # a snapshot, or what a resumed stream missed
                live.epochs.append(answer["epoch"])
            if answer.get("pointer") == "/sentinel":
                return
