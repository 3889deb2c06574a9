"""`shell`: run a program with an argv list. Nothing is parsed by a shell: each element, templates
included, is exactly one argument, so an event value can never inject a command."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError, RunInfo, Services, StepResult, get_arg, scalar_text
from engine.actions.process import not_started, run_process


class Shell(Action):
    kind = "shell"

    async def __call__(self, run: RunInfo, services: Services, args: dict[str, Any]) -> StepResult:
        argv = [scalar_text(item, f"argv[{index}]") for index, item in enumerate(get_arg(args, "argv", list))]
        if not argv or not argv[0]:
            raise ActionError("`argv` needs a program as its first element")
        env = {key: scalar_text(value, f"env.{key}") for key, value in get_arg(args, "env", dict, {}).items()}
        cwd = get_arg(args, "cwd", str, None)
        detail: dict[str, Any] = {"argv": argv, "cwd": cwd}
        try:
            done = await run_process(argv, run, services, env=env, cwd=cwd)
        except OSError as exc:
            return not_started(exc, argv[0], detail)
        return StepResult(ok=done.exit_code == 0, exit_code=done.exit_code, stdout=done.stdout,
                          stderr=done.stderr, error=done.failure, detail={**detail, **done.detail()})
