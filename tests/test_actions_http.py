"""`http` against a real aiohttp server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from test_actions import make_services, run_info

from engine.actions import get_action
from engine.actions.base import OUTPUT_LIMIT, ActionError, StepResult
from engine.actions.http import BODY_TAIL


async def _handle(request: web.Request) -> web.Response:
    seen = {"method": request.method, "path": request.path, "header": request.headers.get("X-Reason"),
            "json": await request.json() if request.can_read_body else None}
    status = int(request.query.get("status", 200))
    return web.json_response(seen, status=status)


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"h" * OUTPUT_LIMIT + b"t" * (BODY_TAIL + 10))


def with_server(scenario: Callable[[str], Awaitable[Any]]) -> Any:
    """Run `scenario(base_url)` while a real server answers on a free local port."""
    async def main() -> Any:
        app = web.Application()
        app.router.add_route("*", "/big", _big)
        app.router.add_route("*", "/{tail:.*}", _handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await scenario(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
    return asyncio.run(main())


def call(args: dict[str, Any]) -> Awaitable[StepResult]:
    return get_action("http")(run_info(), make_services(None), args)


def test_a_post_with_headers_and_json_succeeds_on_2xx_and_shows_the_body(tmp_path):
    async def scenario(base: str) -> StepResult:
        return await call({"url": f"{base}/agents/coder/reset", "method": "post",
                           "headers": {"X-Reason": "aios agent.down"}, "json": {"cause": "E1", "n": 2}})

    result = with_server(scenario)
    assert result.ok and result.error is None
    assert result.detail["method"] == "POST" and result.detail["status"] == 200
    assert '"path": "/agents/coder/reset"' in result.detail["body"]
    assert '"header": "aios agent.down"' in result.stdout and '"json": {"cause": "E1", "n": 2}' in result.stdout


def test_expect_lists_codes_and_classes(tmp_path):
    async def scenario(base: str) -> list[bool]:
        cases = [(204, None), (404, None), (404, [404]), (503, ["5xx"]), (201, [200, 202]), (202, [200, 202])]
        results = [await call({"url": f"{base}/x?status={status}", **({"expect": expect} if expect else {})})
                   for status, expect in cases]
        assert results[1].error == "status 404 is not in expect ['2xx']"
        return [result.ok for result in results]

    assert with_server(scenario) == [True, False, True, True, False, True]


def test_the_body_is_capped_and_the_record_keeps_its_tail(tmp_path):
    result = with_server(lambda base: call({"url": f"{base}/big"}))
    assert result.ok and len(result.stdout) == OUTPUT_LIMIT
    assert result.detail["body"] == "h" * BODY_TAIL  # the tail of what was kept


def test_connection_errors_are_failed_steps_and_bad_arguments_are_refused():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(call({"url": f"http://127.0.0.1:{port}/", "method": "GET"}))
    assert not result.ok and result.detail == {"method": "GET", "url": f"http://127.0.0.1:{port}/"}
    assert "ClientConnectorError" in result.error
    for args, message in (({"url": "file:///etc/passwd"}, "http:// or https://"),
                          ({"url": "http://x", "method": "TRACE"}, "`method` must be one of"),
                          ({"url": "http://x", "expect": ["2xx", 99]}, "`expect` holds 99"),
                          ({"url": "http://x", "headers": {"A": ["b"]}}, "headers.A must be a single value")):
        with pytest.raises(ActionError, match=message):
            asyncio.run(call(args))
