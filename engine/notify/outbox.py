"""`data/notify/outbox.json`: the messages not delivered yet (still gathering, or waiting for a retry), so
an engine restart neither loses nor repeats them. Small (at most `queue_max` messages), rewritten whole
and atomically when it changed; a damaged file is set aside as `outbox.json.bad` and logged."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from engine.osutil.files import atomic_write

log = logging.getLogger("aios.notify")
VERSION = 1


class Outbox:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "notify" / "outbox.json"

    def load(self) -> list[dict[str, Any]]:
        try:
            raw = orjson.loads(self.path.read_bytes())
            items = raw["pending"]
            if raw.get("version") != VERSION or not isinstance(items, list):
                raise ValueError(f"not an outbox of version {VERSION}")
            return items
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.set_aside(str(exc))
            return []

    def set_aside(self, why: str) -> None:
        """Keep a damaged file as `outbox.json.bad` for a person to read, and log why."""
        bad = self.path.with_name(self.path.name + ".bad")
        log.error("notification outbox damaged: set aside", extra={"path": str(bad), "error": why})
        try:
            os.replace(self.path, bad)
        except OSError:
            pass

    def save(self, items: list[dict[str, Any]]) -> None:
        atomic_write(self.path, orjson.dumps({"version": VERSION, "pending": items}))
