"""What a chaos scenario reads from the running engine it is aimed at: agents, problems, events (contract §5).

Asynchronous (the scenario runs its fault, a probe load and this side by side), with the token from
AIOS_TOKEN like every other client. A refusal or an engine that cannot be reached is a `ChaosError` with one
clear line; reads retry quietly while the engine is briefly away (a disk-full scenario makes it answer 503).
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson

from engine.events import format_ts, parse_ts

AWAY = frozenset({502, 503, 504})


class ChaosError(Exception):
    """A scenario cannot go on (bad target, engine unreachable): one line for the user."""


class EngineApi:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0, patience_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("AIOS_TOKEN")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._patience_s = patience_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EngineApi:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> Any:
        """The JSON answer of `GET path`; retried for `patience_s` while the engine is away."""
        assert self._session is not None, "use `async with EngineApi(...)`"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._patience_s
        while True:
            try:
                async with self._session.get(self.url + path, params=params) as answer:
                    body = await answer.read()
                    if answer.status == 200:
                        return orjson.loads(body)
                    if answer.status not in AWAY:
                        raise ChaosError(f"GET {path}: HTTP {answer.status}: {_error(body)}")
                    why = f"HTTP {answer.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if loop.time() >= give_up:
                raise ChaosError(f"the engine at {self.url} does not answer GET {path} ({why})")
            await asyncio.sleep(0.5)

    async def post_events(self, events: list[dict[str, Any]]) -> tuple[int, Any]:
        """(status, JSON body) of one `POST /api/events`; no retry: the caller says what a refusal means."""
        assert self._session is not None, "use `async with EngineApi(...)`"
        async with self._session.post(self.url + "/api/events", data=orjson.dumps(events),
                                      headers={"Content-Type": "application/json"}) as answer:
            body = await answer.read()
            try:
                return answer.status, orjson.loads(body)
            except orjson.JSONDecodeError:
                return answer.status, {"error": body[:200].decode(errors="replace")}

    async def agents(self) -> list[dict[str, Any]]:
        return list((await self.get("/api/agents"))["agents"])

    async def problems(self) -> list[dict[str, Any]]:
        return list((await self.get("/api/problems"))["problems"])

    async def problem(self, problem_id: str) -> dict[str, Any]:
        return dict(await self.get(f"/api/problems/{problem_id}"))

    async def event_ids(self, type_: str, since: float) -> set[str]:
        """Ids of the stored events of `type_` since `since` (epoch seconds), every page of them."""
        ids: set[str] = set()
        after: str | None = None
        stamp = format_ts(since)
        while True:
            params = [("type", type_), ("since", stamp), ("limit", "1000"), *([("after", after)] if after else [])]
            page = await self.get("/api/events", params)
            ids.update(event["id"] for event in page["events"])
            after = page.get("next")
            if not after:
                return ids


def _error(body: bytes) -> str:
    try:
        return str(orjson.loads(body).get("error", body[:200].decode(errors="replace")))
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")


def epoch_of(ts: str | None) -> float | None:
    """An RFC 3339 timestamp from the API as epoch seconds (None stays None)."""
    return parse_ts(ts).timestamp() if ts else None
