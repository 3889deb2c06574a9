"""The child side of the `python` action: import `module:function` and call it with keyword arguments.

Reads `{"call": "module:function", "args": {...}}` as JSON on stdin. Writes the return value as JSON on
stdout and exits 0; on an exception prints the traceback on stderr (its last line names the exception)
and exits 1. While the function runs, anything it prints goes to stderr, so stdout carries the result
alone. A coroutine function is run to completion.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback


def main() -> int:
    request = json.load(sys.stdin)
    result_fd = os.dup(1)
    os.dup2(2, 1)  # the function's prints, and its children's, go to stderr
    try:
        module_name, _, name = request["call"].partition(":")
        function = getattr(importlib.import_module(module_name), name)
        result = function(**request.get("args", {}))
        if inspect.iscoroutine(result):
            import asyncio  # here, not at the top: it would double the start-up time of every call

            result = asyncio.run(result)
        payload = json.dumps(result)
    except Exception:
        traceback.print_exc()
        return 1
    sys.stdout.flush()
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
