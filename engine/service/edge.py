"""The server under the API: time limits for slow clients, and JSON for what aiohttp refuses by itself.

Two things happen before a request reaches the application's middleware, and aiohttp would answer
them with text/plain:
- the HTTP parser refuses the bytes (a bad request line or method, a line or header over 8190 bytes,
  more than 128 headers, a bad `Transfer-Encoding`, `Content-Length` with chunking, a `Content-Encoding`
  it cannot decode): `RequestHandler.handle_error`, overridden below;
- an `HTTPException` raised outside the middleware (`Expect:` other than `100-continue`, 417):
  converted in `finish_response`.
A connection the peer has broken, or a request whose response has started, gets no body at all.

Header timeout: aiohttp 3.14 arms its keep-alive timer when a connection opens and again after each
response, and closes the connection if no complete request head has arrived when it fires (data that
trickles in does not re-arm it). With `keepalive_timeout = server.header_timeout` that timer is the
header timeout: a client that sends half a request head and stalls is disconnected (no response: there
is no request to answer yet); an idle keep-alive connection is closed after the same time.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    ContentEncodingError,
    HttpProcessingError,
)
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from engine.config import Config
from engine.durations import parse_duration
from engine.service.api import json_response
from engine.service.encodings import unsupported_from_parser

log = logging.getLogger("aios.http")


def server_kwargs(config: Config) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` from `server.*` (the body timeout is the API's own)."""
    return {"keepalive_timeout": parse_duration(config.raw["server"]["header_timeout"])}


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """The runner to start the API with (`await runner.setup()`, then `web.TCPSite(runner, ...)`)."""
    return EdgeRunner(app, access_log=None, handle_signals=False, **server_kwargs(config))


class EdgeProtocol(RequestHandler):
    """aiohttp's per-connection protocol, answering its own refusals with JSON bodies."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: half a response is out, nothing can follow
            raise ConnectionError("response already started; cannot send the error")
        if isinstance(exc, ContentEncodingError):
            status, body = unsupported_from_parser(exc.message)
        elif isinstance(exc, HttpProcessingError):
            body = {"error": f"malformed HTTP request: {str(exc.message)[:300]}"}
        elif status == 500:
            body = {"error": "internal error; see the engine log"}
        else:  # 504: a handler's own timeout escaped it
            body = {"error": f"the request could not be completed ({status})"}
        if isinstance(exc, BadHttpMethod):  # port scanners, TLS to a plain port: not worth a warning
            log.debug("refused non-HTTP bytes from %s: %s", request.remote, exc)
        elif isinstance(exc, HttpProcessingError):
            log.warning("refused a malformed request from %s: %s", request.remote, body["error"])
        else:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        response = json_response(body, status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError):  # a body we refused (it did not decode), met again while
            log.debug("discarded the rest of a refused body: %s", exc)  # aiohttp discards what is left of it
            return
        super().log_exception(*args, **kw)

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400 and not resp.prepared \
                and resp.content_type != "application/json":
            resp = json_response({"error": resp.reason}, resp.status)
        resp, reset = await super().finish_response(request, resp, start_time)
        if resp.status == 408:  # the client stopped sending its body: do not wait `lingering_time` for the
            self.force_close()  # rest (the response is flushed first); a stalled peer has nothing unread
        return resp, reset


class EdgeServer(web.Server):
    def __call__(self) -> RequestHandler:  # the asyncio protocol factory: one EdgeProtocol per connection
        return EdgeProtocol(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """`web.AppRunner` whose server builds `EdgeProtocol`s (aiohttp offers no public hook for this)."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's startup, freezes it, gathers the kwargs
        return EdgeServer(_refusing_unknown_expect(plain.request_handler), request_factory=plain.request_factory,
                          handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)


def _refusing_unknown_expect(handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
                             ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """417 for an `Expect:` other than `100-continue`, as aiohttp's default expect handler answers, but before
    it: that one writes the value into its text, and fails (500) on header bytes that are no UTF-8."""
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get(hdrs.EXPECT)
        if expect and request.version == HttpVersion11 and expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed()
        return await handler(request)

    return handle
