"""Talking to a running engine (`--url`): a small JSON client on the standard library.

The token comes from AIOS_TOKEN. Every failure becomes one UserError line: the engine's own JSON
`error` (with its pointer when there is one), or why the engine could not be reached.
"""
from __future__ import annotations

import getpass
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from engine.cli import UserError

TIMEOUT_S = 30.0
# Answers meaning "the engine is not there right now" (a proxy in front of one that is restarting).
_AWAY = frozenset({502, 503, 504})


class Unreachable(UserError):
    """The engine did not answer (down, restarting): worth retrying, unlike a refusal."""


class Client:
    def __init__(self, url: str) -> None:
        try:
            parsed = urllib.parse.urlsplit(url)
            parsed.port  # noqa: B018 - read for its ValueError: a port that is no number or out of range
        except ValueError:  # http://[::1
            parsed = None
        sendable = url.isascii() and url.isprintable() and " " not in url  # what http.client can send
        if parsed is None or not sendable or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"--url must look like http://127.0.0.1:8765, not {url!r}")
        self.base = url.rstrip("/")
        self.token = os.environ.get("AIOS_TOKEN")

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._send(urllib.request.Request(self.base + path + query, method="GET"))[1]

    def post(self, path: str, body: Any = None, params: list[tuple[str, str]] | None = None,
             method: str = "POST") -> tuple[int, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = orjson.dumps(body) if body is not None else b""
        request = urllib.request.Request(self.base + path + query, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> tuple[int, Any]:
        request.add_header("X-AIOS-Actor", actor_name())
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, orjson.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise (Unreachable if exc.code in _AWAY else UserError)(_refusal(exc.code, exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach the engine at {self.base}: {reason}") from None


def actor_name() -> str:
    """Who runs this command, for the events the engine records about control actions."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def _refusal(status: int, body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"the engine answered {status}"
    message = payload.get("error", f"status {status}") if isinstance(payload, dict) else f"status {status}"
    pointer = payload.get("pointer") if isinstance(payload, dict) else None
    return f"refused ({status}): {message}" + (f" at {pointer}" if pointer else "")
