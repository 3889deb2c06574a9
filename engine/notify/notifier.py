"""The notifier: an observer of the stored event stream that turns problem events and `notify` steps into
messages, grouped per problem, delivered off the event loop, retried, recorded (docs/notifications.md).

`observe` is synchronous and cheap (it runs in the decision loop, like the problem book): it renders the
entries and files them into messages. A message for (target, problem) gathers for `group_window` from its
first event, so an opening and an escalation a few seconds apart are one message listing both; the
problem's resolution (at most one "resolved" per problem and target) and a `notify` step send at once,
with whatever was gathering. `run` is the delivery loop (a supervised background task): each delivery runs
in the notifier's own threads (daemon threads, at most WORKERS at once) with a timeout, never in the loop's
default executor that the store uses, so a hung service can delay neither a remediation nor the exit.
Every try ends as a stored `notification.sent` or `notification.failed` event; failures are retried with
exponential backoff up to `retry.attempts` times. Everything is capped: the pending messages (`queue_max`,
more are dropped and counted), the entries of one message and their length, the event ids and resolved
problems remembered; the outbox is rewritten off the loop, at most every SAVE_EVERY_S.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.capped import CappedMap
from engine.events import format_ts
from engine.notify import build_targets
from engine.notify.base import Message, NotifyError, Target, cut
from engine.notify.outbox import Outbox
from engine.notify.settings import Settings, fill

log = logging.getLogger("aios.notify")
# emit(type, data, cause, severity) -> the stored event
Emit = Callable[[str, dict[str, Any], dict[str, Any], str], Awaitable[Any]]

PROBLEM_EVENTS = {"problem.opened": "opened", "problem.escalated": "escalated", "problem.resolved": "resolved"}
REQUESTED = "notification.requested"  # what a `notify` step stores; the notifier delivers it
RANK = {"opened": 0, "notify": 1, "escalated": 2, "resolved": 3}  # a message's headline: its highest entry
WHAT_LEVEL = {"opened": "warning", "escalated": "failure", "resolved": "success"}  # a problem entry's Message level
MAX_ENTRIES = 20  # entries listed in one message; the rest are counted in its last line
WORKERS = 4  # deliveries at once (threads)
GRACE_S = 2.0  # past the target's own timeout, the notifier stops waiting for its thread
SEEN_MAX = 10_000
ENTRY_FIELDS = frozenset(("what", "title", "line", "level", "event"))
SAVE_EVERY_S = 1.0  # the outbox is rewritten at most this often (and at close): changes come in bursts
# UTF-8 bytes of a title, a problem entry's line, a `notify` step's body (its event stays under 64 KiB even
# JSON-escaped) and target name: a message rendered from big event data is cut, marked, never refused.
TITLE_BYTES, LINE_BYTES, BODY_BYTES, TARGET_BYTES = 1024, 2048, 8192, 256
MAX_SLEEP_S = 30.0  # the loop looks again at least this often (a clock that jumped, a lost wake-up)


@dataclass(slots=True)
class Pending:
    """One message on its way: gathering entries until `due`, then delivered (and retried) from `due`."""

    id: str
    target: str
    group: str  # the problem id, or the event id of a message about no problem
    problem: str | None
    cause: dict[str, Any]  # id, chain and agent of its first event: what its notification.* events follow
    due: float
    gathering: bool
    entries: list[dict[str, str]] = field(default_factory=list)  # what, title, line, level, event
    more: int = 0  # entries past MAX_ENTRIES
    attempt: int = 0  # tries made

    def add(self, entry: dict[str, str]) -> None:
        if len(self.entries) < MAX_ENTRIES:
            self.entries.append(entry)
        else:
            self.more += 1

    @classmethod
    def from_saved(cls, raw: Any) -> Pending:
        """One outbox entry, checked field by field (ValueError): a damaged or hand-edited file must not
        put a malformed message in the queue, where it would break every round."""
        if not isinstance(raw, dict) or set(raw) != set(FIELDS):
            raise ValueError("not a message: wrong fields")
        texts = ("id", "target", "group")
        if not all(isinstance(raw[k], str) for k in texts) or not isinstance(raw["problem"], (str, type(None))):
            raise ValueError("id, target, group and problem must be text")
        if not isinstance(raw["cause"], dict) or not isinstance(raw["gathering"], bool):
            raise ValueError("cause must be an object, gathering true or false")
        if isinstance(raw["due"], bool) or not isinstance(raw["due"], (int, float)):
            raise ValueError("due must be a number")
        if any(isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] < 0 for k in ("more", "attempt")):
            raise ValueError("more and attempt must be counts")
        entries = raw["entries"]
        if not isinstance(entries, list) or not entries or not all(
                isinstance(e, dict) and set(e) == ENTRY_FIELDS and all(isinstance(v, str) for v in e.values())
                for e in entries):
            raise ValueError(f"entries must be objects with text {', '.join(sorted(ENTRY_FIELDS))}")
        entries = [{**e, "title": cut(e["title"], TITLE_BYTES), "line": cut(e["line"], BODY_BYTES)}
                   for e in entries[:MAX_ENTRIES]]
        return cls(**{**raw, "due": float(raw["due"]), "entries": entries})

    def message(self) -> Message:
        head = max(reversed(self.entries), key=lambda e: RANK.get(e["what"], 0))  # ties: the first
        lines = [e["line"] for e in self.entries] + ([f"(and {self.more} more)"] if self.more else [])
        return Message(head["title"], "\n".join(lines), head["level"])


FIELDS = tuple(f.name for f in fields(Pending))


class Notifier:
    def __init__(self, settings: Settings, targets: Mapping[str, Target], *, emit: Emit,
                 clock: Callable[[], float], data_dir: Path | None = None,
                 problem: Callable[[str], dict[str, Any] | None] = lambda problem_id: None,
                 on_outcome: Callable[[str, str], None] = lambda target, outcome: None) -> None:
        self.settings = settings
        self.targets = dict(targets)
        self._announce()
        self._emit = emit
        self._clock = clock
        self._problem = problem  # the book's view of a problem (its cause, status…) for templates
        self._on_outcome = on_outcome
        self._outbox = Outbox(data_dir) if data_dir is not None else None
        self.pending: dict[str, Pending] = {}
        self._gathering: dict[tuple[str, str], str] = {}  # (target, group) -> pending id
        self._seen: CappedMap[str, bool] = CappedMap("notify_seen", SEEN_MAX)
        self._resolved: CappedMap[tuple[str, str], bool] = CappedMap("notify_resolved", SEEN_MAX)
        self._flying: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(WORKERS)  # deliveries under way, one per thread
        self._wake = asyncio.Event()
        self._dirty = False
        self._saved_at = float("-inf")
        self.dropped = 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any], **kwargs: Any) -> Notifier:
        """Built from `notifications` (defaults applied); NotifyError for a target it cannot build."""
        return cls(Settings.from_config(section), build_targets(section), **kwargs)

    def reconfigure(self, section: Mapping[str, Any]) -> None:
        """A reloaded config: new targets and policy at once; NotifyError keeps the old ones. Messages for
        a target that is gone fail at their next try (recorded)."""
        settings, targets = Settings.from_config(section), build_targets(section)
        self.settings, self.targets = settings, targets
        self._announce()
        self._wake.set()

    def _announce(self) -> None:
        """Log where messages go (secrets masked): what an operator checks first when none arrive."""
        if self.targets:
            log.info("notification targets", extra={"targets": {name: target.describe()
                                                                for name, target in self.targets.items()}})

    # -- the event stream ------------------------------------------------------------------------
    def observe(self, event: dict[str, Any]) -> None:
        """Take one stored event into account; only problem events and `notify` requests make messages."""
        event_type = event.get("type")
        if event_type not in PROBLEM_EVENTS and event_type != REQUESTED:
            return
        event_id = event.get("id")
        if not isinstance(event_id, str) or event_id in self._seen:
            return
        self._seen[event_id] = True
        data = event.get("data")
        if not isinstance(data, dict):
            return
        if event_type == REQUESTED:
            self._requested(event, data)
        else:
            self._problem_event(PROBLEM_EVENTS[event_type], event, data)

    def _problem_event(self, what: str, event: dict[str, Any], data: dict[str, Any]) -> None:
        problem_id = data.get("problem")
        if not isinstance(problem_id, str):
            return
        known = self._problem(problem_id) or {}
        problem = {**known, **{k: v for k, v in data.items() if k != "problem"}, "id": problem_id}
        subject = problem.get("subject") if isinstance(problem.get("subject"), dict) else {}
        agent = event.get("agent") or subject.get("agent")
        cause = known.get("cause") if isinstance(known.get("cause"), dict) else {}
        severity = cause.get("severity", event.get("severity"))
        context = {"what": what, "event": event, "problem": problem, "agent": agent, "details": _details(what, data)}
        for name, route in self.settings.routes.items():
            if not route.selects(what, problem.get("kind"), agent, severity):
                continue
            resolved = what == "resolved"
            if resolved and (name, problem_id) in self._resolved:
                continue
            target_context = {**context, "target": name}
            entry = {"what": what, "title": cut(fill(route.title, target_context), TITLE_BYTES),
                     "line": cut(fill(route.body, target_context), LINE_BYTES), "level": WHAT_LEVEL[what],
                     "event": event["id"]}
            self._file(name, problem_id, problem_id, entry, event, now=resolved, capped=not resolved)
            if resolved:  # after filing: a resolution is never dropped (it passes the cap), so never lost
                self._resolved[(name, problem_id)] = True

    def _requested(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        target = data.get("target")
        if not isinstance(target, str):
            return
        problem = data.get("problem") if isinstance(data.get("problem"), str) else None
        entry = {"what": "notify", "title": cut(str(data.get("title") or ""), TITLE_BYTES),
                 "line": cut(str(data.get("body") or ""), BODY_BYTES), "level": str(data.get("level") or "info"),
                 "event": event["id"]}
        self._file(target, problem or event["id"], problem, entry, event, now=True)

    def _file(self, target: str, group: str, problem: str | None, entry: dict[str, str], event: dict[str, Any],
              now: bool, capped: bool = True) -> None:
        """Add `entry` to the message gathering for (target, group), or start one; `now` sends it at once.
        A message that is not `capped` (a resolution: one per problem and target) is queued past queue_max,
        so the people who heard of a problem hear that it ended."""
        clock = self._clock()
        gathering = self.pending.get(self._gathering.get((target, group), ""))
        if gathering is None:
            if capped and len(self.pending) >= self.settings.queue_max:
                self.dropped += 1
                self._on_outcome(target if target in self.targets else "unknown", "dropped")
                log.warning("notification dropped: the queue is full", extra={
                    "target": target, "problem": problem, "queue_max": self.settings.queue_max})
                return
            window = 0.0 if now else self.settings.group_window_s
            cause = {k: event[k] for k in ("id", "chain", "agent") if event.get(k)}
            gathering = Pending(f"{event['id']}:{target}", target, group, problem, cause, clock + window,
                                gathering=window > 0)
            self.pending[gathering.id] = gathering
            if gathering.gathering:
                self._gathering[(target, group)] = gathering.id
        gathering.add(entry)
        if now and gathering.gathering:
            self._close_group(gathering, clock)
        self._changed()

    def _close_group(self, item: Pending, now: float) -> None:
        item.gathering, item.due = False, now
        self._gathering.pop((item.target, item.group), None)

    def _changed(self) -> None:
        self._dirty = True
        self._wake.set()

    # -- delivery ----------------------------------------------------------------------------------
    def _start_due(self) -> list[asyncio.Task[None]]:
        """Close the groups whose window ended and start every delivery that is due."""
        now = self._clock()
        started = []
        for item in list(self.pending.values()):
            if item.gathering and item.due <= now:
                self._close_group(item, now)
                self._dirty = True
            if not item.gathering and item.due <= now and item.id not in self._flying:
                task = asyncio.get_running_loop().create_task(self._deliver(item), name="notify_delivery")
                self._flying[item.id] = task
                task.add_done_callback(lambda _t, key=item.id: (self._flying.pop(key, None), self._wake.set()))
                started.append(task)
        return started

    async def pump(self) -> None:
        """Deliver everything due now and wait for the tries to end, then save the outbox (tests; `run`
        does the same without waiting)."""
        tasks = self._start_due()
        if tasks:
            await asyncio.gather(*tasks)
        await self._save()

    async def run(self) -> None:
        """The delivery loop, until cancelled: one failing round is logged and the loop goes on."""
        while True:
            self._wake.clear()
            sleep_s = MAX_SLEEP_S
            try:
                self._start_due()
                await self._save()
                sleep_s = self._sleep_s()
            except Exception:
                log.exception("notification round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), sleep_s)
            except asyncio.TimeoutError:
                pass

    def _sleep_s(self) -> float:
        waiting = [item.due for item in self.pending.values() if item.id not in self._flying]
        if self._dirty:
            waiting.append(self._saved_at + SAVE_EVERY_S)
        if not waiting:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.01, min(waiting) - self._clock()))

    async def _deliver(self, item: Pending) -> None:
        async with self._slots:  # a burst waits here, not on the pool: each try's timeout starts with it
            await self._try(item)

    async def _try(self, item: Pending) -> None:
        item.attempt += 1
        message = item.message()
        target = self.targets.get(item.target)
        timeout = self.settings.timeout_s
        error = None
        try:
            if target is None:
                raise NotifyError(f"no target named {item.target!r} in notifications.targets")
            await asyncio.wait_for(_in_daemon_thread(target.deliver, message, timeout), timeout + GRACE_S)
        except NotifyError as exc:
            error = str(exc)
        except asyncio.TimeoutError:
            error = f"no answer within {timeout:g}s"
        except Exception as exc:  # a target kind's bug: recorded and retried like any failure
            log.exception("notification target %s raised", item.target)
            error = f"{type(exc).__name__}: {exc}"
        base = {"target": item.target, "problem": item.problem, "attempt": item.attempt, "title": message.title}
        if error is None:
            self._forget(item)
            self._on_outcome(item.target, "sent")
            await self._record("notification.sent", {**base, "entries": len(item.entries) + item.more}, item, "info")
            return
        final = target is None or item.attempt > self.settings.attempts
        data = {**base, "error": error, "final": final}
        if final:
            self._forget(item)  # an unknown name (a step may template one) must not become a metric label
            self._on_outcome(item.target if target is not None else "unknown", "gave_up")
        else:
            item.due = self._clock() + self.settings.delay_s(item.attempt)
            data["retry_at"] = format_ts(item.due)
            self._on_outcome(item.target, "failed")
        self._dirty = True
        log.warning("notification failed", extra={k: v for k, v in data.items() if k != "title"})
        await self._record("notification.failed", data, item, "warning")

    def _forget(self, item: Pending) -> None:
        self.pending.pop(item.id, None)
        self._dirty = True

    async def _record(self, type_: str, data: dict[str, Any], item: Pending, severity: str) -> None:
        try:
            await self._emit(type_, data, item.cause, severity)
        except Exception as exc:  # a store that refuses (disk full) must not stop deliveries
            log.error("notification event not stored", extra={"type": type_, "error": str(exc)})

    # -- durability ---------------------------------------------------------------------------------
    async def load(self) -> None:
        """The messages a previous engine left undelivered (data/notify/outbox.json)."""
        if self._outbox is None:
            return
        saved = await asyncio.to_thread(self._outbox.load)
        bad = 0
        for index, raw in enumerate(saved):
            try:
                item = Pending.from_saved(raw)
            except ValueError as exc:
                bad += 1
                log.error("notification outbox entry set aside", extra={"index": index, "error": str(exc)})
                continue
            self.pending[item.id] = item
            if item.gathering:
                self._gathering[(item.target, item.group)] = item.id
            for entry in item.entries:
                self._seen[entry["event"]] = True
        if bad:
            await asyncio.to_thread(self._outbox.set_aside, f"{bad} of {len(saved)} entries damaged")
            self._dirty = True  # the good ones are written back at the next save
        if self.pending:
            log.info("notifications to deliver from before the restart", extra={"pending": len(self.pending)})

    async def _save(self, force: bool = False) -> None:
        """Rewrite the outbox if it changed, at most every SAVE_EVERY_S unless `force`d. The loop takes only
        a shallow snapshot (entries are never changed once made); the thread serialises and writes."""
        now = self._clock()
        if not self._dirty or self._outbox is None or (not force and now - self._saved_at < SAVE_EVERY_S):
            return
        self._dirty, self._saved_at = False, now
        items = [{**{name: getattr(item, name) for name in FIELDS}, "entries": list(item.entries)}
                 for item in self.pending.values()]
        try:
            await asyncio.to_thread(self._outbox.save, items)
        except OSError as exc:
            self._dirty = True
            log.error("notification outbox not written", extra={"error": str(exc)})

    async def close(self) -> None:
        """Stop delivering (a try under way counts as made) and save what is left; a thread still in a
        service's call is a daemon thread, so it cannot keep the process alive."""
        for task in list(self._flying.values()):
            task.cancel()
        await asyncio.gather(*self._flying.values(), return_exceptions=True)
        self._dirty = True
        await self._save(force=True)

def _in_daemon_thread(call: Callable[..., None], *args: Any) -> asyncio.Future[None]:
    """`call(*args)` in a new daemon thread, its outcome as a future of the running loop. Not a
    ThreadPoolExecutor: Python joins those threads at exit, so a service that never answers would keep a
    stopped engine alive; the caller's semaphore bounds how many run at once."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():  # the notifier may have stopped waiting
            future.set_exception(error) if error is not None else future.set_result(None)

    def work() -> None:
        error = None
        try:
            call(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=work, name="aios-notify", daemon=True).start()
    return future


def _details(what: str, data: Mapping[str, Any]) -> str:
    """A few words on what the event adds: why it escalated, how it healed."""
    if what == "escalated" and data.get("reasons"):
        reasons = data["reasons"]
        return "; reasons: " + ("; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons))
    if what == "resolved":
        by = f" by run {data['run_id']}" if data.get("run_id") else " by itself"
        return f"; healed in {data.get('heal_s', '?')}s{by}"
    return ""
