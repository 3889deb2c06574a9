"""The `/ws` fan-out (contract §5): one numbered stream of frames per client, resumable, never blocking.

`publish` runs on the engine's side: it hands each event to every stream's batcher and builds the
frames that fall due, in O(streams) with no await, so no client can slow the engine. Each attached
stream has a bounded buffer that one writer task per connection drains; when a client reads too slowly
to keep its buffer under `client_buffer` frames, its backlog is dropped and its next frame is a
snapshot, so it catches up in one frame instead of holding memory. A frame's `state` is the merge patch
of the state document since that stream's previous frame (the whole document in a snapshot); the document
is taken once per round (one publish, one tick) and each distinct patch computed once, whatever the
number of clients.

A stream outlives its connection for `ring_seconds` and keeps building frames meanwhile, so that a
reconnect with `resume=E:N` gets exactly the frames after N with their original numbers. `E`, the
`epoch` of every frame, is `<engine epoch>.<stream id>`: it changes when the engine restarts, and it
names the stream to resume (the contract's `E:N` has no other room for it). Frames are held while the
ones after them total fewer than `ring_events` events or while they are younger than `ring_seconds`,
and never past `ring_cap_events`, so memory stays bounded under a flood.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from engine.capped import CappedMap
from engine.live.batcher import Batcher, Clock, Event, Filter
from engine.live.patch import diff

log = logging.getLogger("aios.live")
Frame = dict[str, Any]
State = dict[str, Any]


class HubFull(Exception):
    """Refused: `max_clients` connections are attached already."""


@dataclass(slots=True)
class _Held:
    seq: int
    frame: Frame
    weight: int  # events in the frame, at least 1: what the ring's bounds count
    at: float


class Stream:
    """One client's numbered frames: its seq, batcher, the state it was last sent, and recent frames."""

    __slots__ = ("token", "seq", "batcher", "last_state", "ring", "held", "conn", "detached_at")

    def __init__(self, token: str, seq: int, batcher: Batcher) -> None:
        self.token = token
        self.seq = seq
        self.batcher = batcher
        self.last_state: State | None = None
        self.ring: deque[_Held] = deque()
        self.held = 0
        self.conn: Connection | None = None
        self.detached_at = 0.0

    def after(self, seq: int) -> list[Frame] | None:
        """The frames after `seq`, when the ring still holds all of them; else None."""
        if seq == self.seq:
            return []
        if seq > self.seq or not self.ring or self.ring[0].seq > seq + 1:
            return None
        return [held.frame for held in self.ring if held.seq > seq]


class Connection:
    """The sending side of an attached stream: a bounded buffer of frames for its writer task."""

    __slots__ = ("stream", "limit", "_frames", "_ready", "closed", "reason")

    def __init__(self, stream: Stream, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self._frames: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.reason = "engine stopping"

    def full(self) -> bool:
        return len(self._frames) >= self.limit

    def push(self, frame: Frame) -> None:
        """Queue a frame (or a control message such as an error); the hub checks `full()` first."""
        self._frames.append(frame)
        self._ready.set()

    def drop_backlog(self) -> int:
        dropped = len(self._frames)
        self._frames.clear()
        return dropped

    def close(self, reason: str = "engine stopping") -> None:
        self.closed = True
        self.reason = reason
        self._ready.set()

    async def next(self) -> Frame | None:
        """The next frame to send, waiting for one; None once the connection is closed."""
        while not self._frames:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()


class Hub:
    """Every `/ws` stream of this engine run; `state()` returns the state document (contract §5)."""

    def __init__(self, state: Callable[[], State], clock: Clock, epoch: str, ring_events: int = 1000,
                 ring_seconds: float = 300.0, client_buffer: int = 64, max_clients: int = 500,
                 max_detached: int = 100, ring_cap_events: int = 10_000, max_events: int = 10,
                 max_wait_s: float = 5.0, state_every_s: float = 0.1) -> None:
        if client_buffer < 1 or ring_cap_events < ring_events:
            raise ValueError("a hub needs client_buffer >= 1 and ring_cap_events >= ring_events")
        self._state = state
        self._clock = clock
        self.epoch = epoch
        self.ring_events = ring_events
        self.ring_seconds = ring_seconds
        self.ring_cap_events = ring_cap_events
        self.client_buffer = client_buffer
        self.max_clients = max_clients
        self._batching = (max_events, max_wait_s)
        self._attached: dict[str, Stream] = {}  # capped by refusal (max_clients)
        self._detached: CappedMap[str, Stream] = CappedMap("live.detached", max_detached)
        self._encoded: CappedMap[str, orjson.Fragment] = CappedMap("live.encoded", 4096)
        self.state_every_s = state_every_s
        self._doc: State | None = None  # the current state document, taken at `_doc_at`
        self._doc_at = float("-inf")
        self._good: State = {}  # the last document the provider gave
        self._patches: dict[int, tuple[State, State | None]] = {}  # patches to the current document, by old one
        self.counts = {"events": 0, "frames": 0, "overflows": 0, "dropped_frames": 0, "refused": 0, "expired": 0,
                       "state_errors": 0, "dropped_replies": 0, "lost_events": 0, "resumed_attached": 0,
                       "round_errors": 0}

    # -- the engine's side ------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Hand a stored event to every stream; frames that fall due are built and queued. Never waits."""
        self._round()
        self.counts["events"] += 1
        for stream in self._streams():
            if stream.batcher.add(event):
                self._emit(stream)

    def flush_due(self) -> None:
        """Send the batches whose wait is over, and forget detached streams past `ring_seconds`."""
        self._round(fresh=True)
        now = self._clock()
        for stream in self._streams():
            if stream.batcher.due(now):
                self._emit(stream)
        for token in self._detached:
            stream = self._detached.peek(token)
            if stream is not None and now - stream.detached_at >= self.ring_seconds:
                self._detached.pop(token)
                self.counts["expired"] += 1

    def close(self) -> None:
        """Engine shutdown: the batches still waiting go now, then every writer sends what it has and closes."""
        self._round(fresh=True)
        for stream in list(self._attached.values()):
            if stream.batcher.due(float("inf")):
                self._emit(stream)
            if stream.conn is not None:
                stream.conn.close()

    # -- the connections' side --------------------------------------------------------------------

    def attach(self, resume: str | None = None) -> Connection:
        """A connection for a new client, or for one resuming `E:N`: it gets the frames after N when they
        are held, else a snapshot (numbered after N). A malformed `resume` gets an error, then a new stream."""
        if len(self._attached) >= self.max_clients:
            self.counts["refused"] += 1
            raise HubFull(f"too many live clients (at most {self.max_clients}); try again later")
        self._round()
        error, token, seq = None, "", 0
        if resume is not None:
            try:
                token, seq = _parse_resume(resume)
            except ValueError as exc:
                error = {"error": str(exc), "pointer": "/resume"}
        stream = self._detached.pop(token) if token else None
        if stream is None and token in self._attached:  # its old connection is not known to be gone yet
            stream = self._attached.pop(token)
            if stream.conn is not None:
                stream.conn.close("resumed by another connection")
            self.counts["resumed_attached"] += 1
        replay = stream.after(seq) if stream is not None else None
        if stream is None:
            stream = Stream(f"{self.epoch}.{secrets.token_hex(8)}", seq, Batcher(self._clock, *self._batching))
        stream.seq = max(stream.seq, seq)
        conn = stream.conn = Connection(stream, self.client_buffer + len(replay or ()))
        self._attached[stream.token] = stream
        if error is not None:
            conn.push(error)
        if replay is None:
            self._emit(stream, snapshot=True)
        else:
            for frame in replay:
                conn.push(frame)
        return conn

    def detach(self, conn: Connection) -> None:
        """The client went away: its stream stays resumable for `ring_seconds`."""
        conn.close()
        stream = conn.stream
        if stream.conn is conn and self._attached.get(stream.token) is stream:
            del self._attached[stream.token]
            stream.conn = None
            stream.detached_at = self._clock()
            self._detached[stream.token] = stream

    def set_filter(self, conn: Connection, new: Filter) -> None:
        """The client's filter, for what is pending and what comes; acknowledged with its normal form."""
        conn.stream.batcher.refilter(new)
        self.reply(conn, {"filter": new.to_json()})

    def reply(self, conn: Connection, message: Frame) -> None:
        """An answer to a client message (no seq). A client that sends and does not read gets none once its
        buffer is full: its replies must not grow without bound."""
        if conn.full():
            self.counts["dropped_replies"] += 1
            return
        conn.push(message)

    def lost(self, events: int) -> None:
        """The engine's side dropped `events` before they were published (a flood outran the feed): every
        stream's next frame is a snapshot, so no client goes on from a state it can no longer trust."""
        self.counts["lost_events"] += events
        for stream in self._streams():
            stream.last_state = None

    def stats(self) -> dict[str, Any]:
        """Counters for health and metrics."""
        return {"clients": len(self._attached), "detached": len(self._detached), **self.counts,
                "evictions": {m.name: m.evicted for m in (self._detached, self._encoded)}}

    # -- frames -----------------------------------------------------------------------------------

    def _streams(self) -> list[Stream]:
        detached = [self._detached.peek(token) for token in self._detached]
        return [*self._attached.values(), *(stream for stream in detached if stream is not None)]

    def _round(self, fresh: bool = False) -> None:
        """A new state document at most every `state_every_s`: each round of a flood would otherwise build
        one, and streams out of phase would each need their own patch to it (cost per event ∝ streams)."""
        if fresh or self._clock() - self._doc_at >= self.state_every_s:
            self._doc = None
            self._patches.clear()

    def _current(self) -> State:
        """This round's state document, as JSON values (a copy: later changes cannot leak into old frames)."""
        if self._doc is None:
            self._doc_at = self._clock()
            try:
                self._doc = self._good = orjson.loads(orjson.dumps(self._state()))
            except Exception:  # a bug in the provider must not stop the fan-out
                log.exception("the live state document could not be built; frames keep the last one")
                self.counts["state_errors"] += 1
                self._doc = self._good
        return self._doc

    def _patch(self, old: State, new: State) -> State | None:
        if old is new:
            return None
        cached = self._patches.get(id(old))
        if cached is None or cached[0] is not old:
            cached = self._patches[id(old)] = (old, diff(old, new))
        return cached[1]

    def _encode(self, event: Event) -> orjson.Fragment:
        """An event's JSON, made once for all the clients that get it."""
        event_id = event.get("id")
        fragment = self._encoded.get(event_id) if isinstance(event_id, str) else None
        if fragment is None:
            fragment = orjson.Fragment(orjson.dumps(event))
            if isinstance(event_id, str):
                self._encoded[event_id] = fragment
        return fragment

    def _emit(self, stream: Stream, snapshot: bool = False) -> None:
        conn = stream.conn
        if conn is not None and conn.full():  # a slow client: drop its backlog, catch it up with a snapshot
            self.counts["overflows"] += 1
            self.counts["dropped_frames"] += conn.drop_backlog()
            snapshot = True
        events = stream.batcher.take()
        current = self._current()
        if snapshot or stream.last_state is None:
            state, snapshot = current, True
        else:
            state = self._patch(stream.last_state, current)
            if not events and state is None:
                return  # no empty frames
        stream.last_state = current
        stream.seq += 1
        frame = {"epoch": stream.token, "seq": stream.seq, "events": [self._encode(e) for e in events],
                 "state": state or {}, "snapshot": snapshot}
        self._hold(stream, frame, len(events))
        self.counts["frames"] += 1
        if conn is not None:
            conn.push(frame)

    def _hold(self, stream: Stream, frame: Frame, events: int) -> None:
        now = self._clock()
        ring = stream.ring
        ring.append(_Held(frame["seq"], frame, max(1, events), now))
        stream.held += ring[-1].weight
        while len(ring) > 1:
            oldest = ring[0]
            wanted = stream.held - oldest.weight < self.ring_events or now - oldest.at < self.ring_seconds
            if wanted and stream.held <= self.ring_cap_events:
                break
            ring.popleft()
            stream.held -= oldest.weight


def _parse_resume(value: str) -> tuple[str, int]:
    token, sep, seq = value.rpartition(":")
    if not sep or not token or len(token) > 200 or not (seq.isascii() and seq.isdigit()) or len(seq) > 15:
        raise ValueError(f"resume={value[:60]!r}: expected EPOCH:SEQ, the epoch and seq of the last frame seen")
    return token, int(seq)
