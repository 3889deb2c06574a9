"""`http`: call an endpoint; success is a status listed in `expect` (codes or classes like `2xx`).

A connection error is a failed step, not an exception: the endpoint being down is an outcome the run
record should show. The body (up to OUTPUT_LIMIT) becomes `stdout`, so later steps can template it.
"""
from __future__ import annotations

import re
from typing import Any

import aiohttp

from engine.actions.base import OUTPUT_LIMIT, Action, ActionError, RunInfo, Services, StepResult, get_arg, scalar_text

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
BODY_TAIL = 4096  # bytes of the body the run record keeps
_CLASS = re.compile(r"^[1-5]xx$")
_CHUNK = 1 << 16


def parse_expect(expect: list[Any]) -> list[int | str]:
    """Each entry a status code (100–599) or a class such as `2xx`; ActionError otherwise."""
    if not expect:
        raise ActionError("`expect` needs at least one status")
    for item in expect:
        code_ok = isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599
        if not code_ok and not (isinstance(item, str) and _CLASS.match(item)):
            raise ActionError(f"`expect` holds {item!r}: use status codes or classes (e.g. 204 or 2xx)")
    return expect


def status_expected(status: int, expect: list[int | str]) -> bool:
    return any(status == item if isinstance(item, int) else str(status)[0] == item[0] for item in expect)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The first OUTPUT_LIMIT bytes of the body; the rest is read and dropped."""
    kept = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        kept += chunk[:OUTPUT_LIMIT - len(kept)]
    return bytes(kept)


class Http(Action):
    kind = "http"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        url = get_arg(args, "url", str)
        if not url.startswith(("http://", "https://")):
            raise ActionError(f"`url` must start with http:// or https://, not {url!r}")
        method = get_arg(args, "method", str, "GET").upper()
        if method not in METHODS:
            raise ActionError(f"`method` must be one of {', '.join(METHODS)}, not {method!r}")
        headers = {key: scalar_text(value, f"headers.{key}")
                   for key, value in get_arg(args, "headers", dict, {}).items()}
        expect = parse_expect(get_arg(args, "expect", list, ["2xx"]))
        body = {"json": args["json"]} if "json" in args else {}
        detail: dict[str, Any] = {"method": method, "url": url}
        try:
            async with aiohttp.ClientSession() as session, \
                    session.request(method, url, headers=headers, **body) as response:
                detail["status"] = response.status
                text = (await _read_capped(response)).decode("utf-8", "replace")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return StepResult(ok=False, error=f"{method} {url}: {type(exc).__name__}: {exc}", detail=detail)
        detail["body"] = text.encode()[-BODY_TAIL:].decode("utf-8", "ignore")
        ok = status_expected(detail["status"], expect)
        return StepResult(ok=ok, stdout=text, detail=detail,
                          error=None if ok else f"status {detail['status']} is not in expect {expect}")
