"""Durations as ops staff write them: `500ms`, `30s`, `5m`, `2h`, `7d`."""
from __future__ import annotations

import re

PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError with the accepted forms when it is not a duration."""
    match = _RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a whole number with ms, s, m, h or d (e.g. 30s)")
    return int(text[: -len(match.group(1))]) * _UNITS[match.group(1)]
