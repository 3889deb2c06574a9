"""DAGs of `needs`, shared by playbook steps and pipelines: their order (lint and config checks use it to
find cycles) and the runner (every node whose `needs` all succeeded starts at once; a node whose need
failed, or was skipped, is skipped; nodes that do not depend on a failure go on).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence


async def run_dag(needs: Mapping[str, Sequence[str]], run: Callable[[str], Awaitable[bool]],
                  done: dict[str, bool], on_skip: Callable[[str], Awaitable[None]]) -> str | None:
    """Run every node of `needs` (node → the nodes it needs) not already in `done` (node → ok).

    `done` is updated in place; returns the first node that failed, or None. Cancelling the caller
    cancels the nodes that are running (and waits for them to stop).
    """
    import asyncio  # noqa: PLC0415 - here, so config and lint (which only order nodes) start without it
    pending = [node for node in needs if node not in done]
    running: dict[asyncio.Future[bool], str] = {}
    failed: str | None = None
    try:
        while pending or running:
            for node in list(pending):
                if any(done.get(need) is False for need in needs[node]):
                    done[node] = False
                    pending.remove(node)
                    await on_skip(node)
                elif all(done.get(need) for need in needs[node]):
                    pending.remove(node)
                    running[asyncio.ensure_future(run(node))] = node
            if not running:
                break  # what is left needs nodes that never ran (a cycle lint refuses)
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                node = running.pop(task)
                done[node] = task.result()
                if not done[node] and failed is None:
                    failed = node
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return failed


def dependency_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """The nodes in an order where each comes after the nodes it needs (Kahn's algorithm). Nodes in a
    cycle, or needing one, are left out: `len(order) < len(needs)` means there is a cycle. Every need
    must itself be a node."""
    waiting = {node: len(deps) for node, deps in needs.items()}
    users: dict[str, list[str]] = {node: [] for node in needs}
    for node, deps in needs.items():
        for dep in deps:
            users[dep].append(node)
    ready = [node for node, count in waiting.items() if count == 0]
    order = []
    while ready:
        done = ready.pop()
        order.append(done)
        for user in users[done]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return order
