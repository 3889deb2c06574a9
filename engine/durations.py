"""Durations as ops staff write them: `500ms`, `30s`, `5m`, `2h`, `7d`."""
from __future__ import annotations

import re

PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(PATTERN)
# 1000 years: now + MAX_S stays a time RFC 3339 can write (year <= 9999), so a silence "for ever" can be stored
# and read back; longer is forever for every use anyway.
MAX_S = 1000 * 365.25 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in `text` (at most MAX_S); ValueError with the accepted forms when it is not a duration."""
    match = _RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a whole number with ms, s, m, h or d (e.g. 30s)")
    # float() takes digits of any length (int() refuses over 4300, and int * float overflows): a duration longer
    # than MAX_S counts as MAX_S, which is forever for every use of it.
    return min(float(text[: -len(match.group(1))]) * _UNITS[match.group(1)], MAX_S)
