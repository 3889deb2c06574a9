"""`python`: call `module:function` with the rendered `args`, in a child process so that the step's
timeout can kill it (a thread could not be stopped). The function's JSON result becomes `stdout` and
`detail.result`; an exception fails the step with the exception line as its error."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson

import engine
from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg
from engine.actions.process import not_started, run_process

CHILD = "engine.actions.python_child"
CALL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
# The child must import the engine even when it runs from a checkout: its root goes last on the path, so
# the user's modules (found from the engine's working directory) come first.
_ENGINE_ROOT = str(Path(engine.__file__).resolve().parent.parent)


def _last_line(text: str) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


class Python(Action):
    kind = "python"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        call = get_arg(args, "call", str)
        if not CALL_RE.match(call):
            raise ActionError(f"`call` must be module:function (e.g. fixes.cache:clear), not {call!r}")
        kwargs = get_arg(args, "args", dict, {})
        try:
            request = orjson.dumps({"call": call, "args": kwargs})
        except TypeError as exc:
            raise ActionError(f"`args` is not JSON-serializable: {exc}") from None
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), _ENGINE_ROOT]))
        detail: dict[str, Any] = {"call": call}
        try:
            done = await run_process([services.python, "-m", CHILD], run, services,
                                     env={"PYTHONPATH": path}, stdin=request)
        except OSError as exc:
            return not_started(exc, services.python, detail)
        detail.update(done.detail())
        result = StepResult(ok=False, exit_code=done.exit_code, stdout=done.stdout, stderr=done.stderr,
                            detail=detail)
        if done.exit_code != 0:
            result.error = _last_line(done.stderr) or done.failure
            return result
        try:
            detail["result"] = orjson.loads(done.stdout)
        except orjson.JSONDecodeError:
            result.error = "the function's result did not arrive as JSON on stdout"
            return result
        result.ok = True
        return result
