"""`write_file`: replace a file atomically (a crash leaves the old or the new file, never a mix).

The runner snapshots the path before the first step, so rollback can restore it. Without `mode`, a file
that existed keeps its permissions; a new one gets the umask's.
"""
from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path
from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.osutil.files import atomic_write

_OCTAL = re.compile(r"^0?[0-7]{3,4}$")


def parse_mode(mode: str | int) -> int:
    """`"0644"`, `"644"` or an int such as 0o644 (YAML 1.1 reads an unquoted 0644 as one) → permission bits."""
    if isinstance(mode, str):
        if not _OCTAL.match(mode):
            raise ActionError(f"`mode` must be octal digits in quotes (e.g. '0644'), not {mode!r}")
        mode = int(mode, 8)
    if not 0 <= mode <= 0o7777:
        raise ActionError(f"`mode` {oct(mode)} is not a permission mode")
    return mode


class WriteFile(Action):
    kind = "write_file"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        path = Path(get_arg(args, "path", str)).absolute()
        data = get_arg(args, "content", str).encode()
        given = get_arg(args, "mode", (str, int), None)
        detail: dict[str, Any] = {"path": str(path), "bytes": len(data)}
        mode = parse_mode(given) if given is not None else None
        try:
            detail["mode"] = await asyncio.to_thread(_write, path, data, mode)  # fsyncs: off the event loop
        except OSError as exc:
            return StepResult(ok=False, error=f"cannot write {path}: {exc.strerror}", detail=detail)
        return StepResult(ok=True, detail=detail)


def _write(path: Path, data: bytes, mode: int | None) -> str:
    """Write atomically; without `mode` an existing file keeps its permissions. Returns the final mode."""
    if mode is None and path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
    atomic_write(path, data)
    if mode is not None:
        os.chmod(path, mode)
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"
