"""Points in time as people type them in a query or on the command line.

Low level on purpose: the HTTP API and the CLI both read `since`/`until` this way, and neither should
import the other to do it.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.durations import parse_duration
from engine.events import parse_ts


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, a date (midnight UTC), or a duration meaning that long ago (`15m`, `2h`).

    ValueError, with the accepted forms, for anything else: callers turn it into their own refusal
    (a CLI message, an HTTP 400).
    """
    now = now or datetime.now(timezone.utc)
    try:
        return now - timedelta(seconds=parse_duration(text))  # at most 1000 years ago (durations are capped)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        return parse_ts(text)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use RFC 3339 (2026-02-24T00:00:00Z), a date, "
                         "or a duration ago (15m, 2h, 7d)") from None
