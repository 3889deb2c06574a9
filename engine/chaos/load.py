"""A load client that knows exactly which events the engine acknowledged (issue 14: crash durability).

`AckLoad` posts JSON batches to `POST /api/events` at a target rate. Every event carries an id the client
made (the engine's own ULIDs, `engine.events.IdGenerator`), so a batch that got no answer, a refused
connection or a 503 is sent again byte for byte: a repeat of an id the engine already stored is
acknowledged and not stored twice (contract §1), which is what lets a crash test demand "every
acknowledged id exactly once". The set of acknowledged ids (from the 202 bodies) is what the store is
checked against afterwards (`engine.chaos.audit`).

Cheap enough not to be the bottleneck at 5,000 events/s on two cores: one orjson call per batch, bodies
kept as bytes for their retries, ids in monotonic mode (most cost four characters), one pooled session.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from engine.events import IdGenerator

EventFactory = Callable[[int, str], dict[str, Any]]  # (sequence number from 0, id) -> event
Sleep = Callable[[float], Awaitable[None]]
LOAD_SOURCE = "chaos.load"
LOAD_TYPE = "chaos.load"
RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx: the engine may take the same bytes later


def load_event(n: int, event_id: str) -> dict[str, Any]:
    """The default event: its source marks it as load, `data.n` is its place in the sequence."""
    return {"id": event_id, "type": LOAD_TYPE, "source": LOAD_SOURCE, "data": {"n": n}}


@dataclass(slots=True)
class LoadStats:
    """Counts as the client saw them. `refused` is keyed by HTTP status, or `connect`/`timeout`/`closed`
    for answers that never came; `max_retry_gap_s` is the longest first-send-to-ack of one batch and
    `max_ack_gap_s` the longest stretch without any acknowledgement (the outages as a client lives them)."""

    batches: int = 0
    posted: int = 0  # events sent at least once
    acked: int = 0
    duplicates: int = 0  # acknowledged as already stored (a retry of a batch stored before its answer)
    retries: int = 0  # batches sent again
    mismatched: int = 0  # 202 bodies whose ids were not the batch's own (an engine bug)
    abandoned: int = 0  # events of batches given up: a 4xx no retry can change, or still pending at stop
    refused: Counter[str] = field(default_factory=Counter)
    max_retry_gap_s: float = 0.0
    max_ack_gap_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Acknowledged events per second over the whole load, outages included."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class _Batch:
    ids: list[str]
    body: bytes
    first_sent: float = 0.0


class AckLoad:
    """Posts `rate` events/s in batches of `batch_size` to `{url}/api/events` until `stop()`.

    A batch is retried with the same body (same ids) until acknowledged: after a refused connection, a
    dropped or timed-out answer, a 5xx (honouring `Retry-After`) or a 408/429; only another 4xx, which no
    retry can change, gives it up (counted by status in `stats.refused`, its ids in `unacked()`). At most
    `max_in_flight` batches are pending; while all are, the producer waits and does not burst to catch
    up afterwards. `event` builds each event from its sequence number and id (it must keep the id).
    """

    def __init__(self, url: str, *, rate: float = 5000.0, batch_size: int = 100, max_in_flight: int = 32,
                 event: EventFactory = load_event, timeout_s: float = 5.0, backoff_s: float = 0.05,
                 max_backoff_s: float = 0.5, token: str | None = None, seed: int | None = None,
                 ids: Callable[[], str] | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0 or batch_size < 1 or max_in_flight < 1:
            raise ValueError("rate, batch_size and max_in_flight must be positive")
        self.url = url.rstrip("/") + "/api/events"
        self.rate, self.batch_size = rate, batch_size
        self.acked: set[str] = set()
        self.stats = LoadStats()
        self._event = event
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self._random = random.Random(seed)
        self._ids = ids or IdGenerator()
        self._clock, self._sleep = clock, sleep
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[asyncio.Task[None], _Batch] = {}
        self._given_up: list[str] = []
        self._failure: BaseException | None = None  # a bug in a delivery, raised by stop()
        self._session: aiohttp.ClientSession | None = None
        self._producer: asyncio.Task[None] | None = None
        self._started = self._last_ack = 0.0
        self._next_n = 0

    async def start(self) -> None:
        """Open the session and start posting (in a task of the running loop)."""
        if self._producer is not None:
            raise RuntimeError("the load is already running")
        connector = aiohttp.TCPConnector(limit=self._max_in_flight)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              skip_auto_headers=("User-Agent",))
        self._started = self._last_ack = self._clock()
        self._producer = asyncio.create_task(self._produce(), name="ack-load")

    async def stop(self, drain_s: float = 30.0) -> LoadStats:
        """Stop making batches, give the pending ones up to `drain_s` to be acknowledged (they keep
        retrying), abandon the rest (their ids stay in `unacked()`), close the session; the final stats.
        A delivery that failed on a bug (not on the engine) is raised here."""
        if self._producer is None:
            raise RuntimeError("the load was not started")
        self._producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._producer
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=drain_s)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(list(self._pending))
        if self._session is not None:
            await self._session.close()
        self.stats.elapsed_s = self._clock() - self._started
        if self._failure is not None:
            raise self._failure
        return self.stats

    def unacked(self) -> set[str]:
        """Ids posted but never acknowledged (batches given up, or abandoned at `stop`)."""
        return set(self._given_up)

    async def __aenter__(self) -> AckLoad:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _produce(self) -> None:
        interval = self.batch_size / self.rate
        due = self._clock()
        while True:
            await self._slots.acquire()
            wait = due - self._clock()
            if wait > 0:
                try:
                    await self._sleep(wait)
                except asyncio.CancelledError:
                    self._slots.release()
                    raise
            due = max(due + interval, self._clock() - interval)  # behind schedule: no burst to catch up
            batch = self._build()
            task = asyncio.create_task(self._deliver(batch))
            self._pending[task] = batch
            task.add_done_callback(self._delivered)

    def _build(self) -> _Batch:
        first = self._next_n
        self._next_n += self.batch_size
        new_id, make = self._ids, self._event
        events = [make(n, new_id()) for n in range(first, first + self.batch_size)]
        return _Batch([e["id"] for e in events], orjson.dumps(events))

    def _delivered(self, task: asyncio.Task[None]) -> None:
        batch = self._pending.pop(task)
        self._slots.release()
        if task.cancelled() or task.exception() is not None:  # abandoned at stop (maybe stored), or a bug
            self._given_up.extend(batch.ids)
            self.stats.abandoned += len(batch.ids)
            if not task.cancelled() and self._failure is None:
                self._failure = task.exception()

    async def _deliver(self, batch: _Batch) -> None:
        stats = self.stats
        stats.batches += 1
        stats.posted += len(batch.ids)
        batch.first_sent = self._clock()
        attempt = 0
        while True:
            delay = await self._post(batch, attempt)
            if delay is None:
                return
            attempt += 1
            stats.retries += 1
            await self._sleep(delay)

    async def _post(self, batch: _Batch, attempt: int) -> float | None:
        """One try: None when the batch is settled (acknowledged or given up), else the wait before the next."""
        assert self._session is not None
        refused = self.stats.refused
        try:
            async with self._session.post(self.url, data=batch.body, headers=self._headers) as response:
                status = response.status
                body = await response.read()
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientConnectorError:
            refused["connect"] += 1
            return self._backoff(attempt)
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            refused["timeout"] += 1
            return self._backoff(attempt)
        except (aiohttp.ClientError, ConnectionError):  # dropped mid-answer (the engine died), reset, torn body
            refused["closed"] += 1
            return self._backoff(attempt)
        if status == 202:
            self._acknowledged(batch, body)
            return None
        refused[str(status)] += 1
        if status >= 500 or status in RETRY_STATUSES:
            return _seconds(retry_after) if retry_after else self._backoff(attempt)
        self._given_up.extend(batch.ids)  # 400, 401, 413…: the same bytes would be refused again
        self.stats.abandoned += len(batch.ids)
        return None

    def _acknowledged(self, batch: _Batch, body: bytes) -> None:
        stats = self.stats
        try:
            answer = orjson.loads(body)
            ids = answer["ids"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            answer, ids = {}, []
        if ids != batch.ids:
            stats.mismatched += 1
        self.acked.update(i for i in ids if isinstance(i, str))
        stats.acked += len(ids)
        stats.duplicates += answer.get("duplicates", 0) if isinstance(answer, dict) else 0
        now = self._clock()
        if now - batch.first_sent > stats.max_retry_gap_s:
            stats.max_retry_gap_s = now - batch.first_sent
        if now - self._last_ack > stats.max_ack_gap_s:
            stats.max_ack_gap_s = now - self._last_ack
        self._last_ack = now

    def _backoff(self, attempt: int) -> float:
        """Exponential from `backoff_s`, capped, with up to 50 % jitter so pending batches spread out."""
        base = min(self._backoff_s * 2 ** min(attempt, 30), self._max_backoff_s)
        return base * (0.5 + self._random.random() / 2)


def _seconds(retry_after: str) -> float:
    """`Retry-After` in seconds (the engine sends delta-seconds); 1 s for anything else."""
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return 1.0
