"""Who asked: every control action (silence, pause, cancel, approval…) is an event naming its actor.

A client says who it is in `X-AIOS-Actor` (the CLI sends `cli:<user>@<host>`); the engine adds where the
request came from, so a name a client makes up still shows its origin. Printable, at most 120 characters:
it goes into events, logs and the dashboard.
"""
from __future__ import annotations

from aiohttp import web

HEADER = "X-AIOS-Actor"
MAX_LEN = 120


def actor(request: web.Request) -> str:
    """`<claimed name> via <remote>` (`api via 127.0.0.1` without a name)."""
    claimed = "".join(ch for ch in request.headers.get(HEADER, "") if ch.isprintable())[:MAX_LEN].strip()
    return f"{claimed or 'api'} via {request.remote or 'unknown'}"
