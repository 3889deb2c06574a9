"""`GET /ws` on aiohttp, and the two tasks that drive the hub: the bus consumer and the batch ticker.

The handler only moves bytes: it attaches the connection to the hub, runs one writer task that sends
the connection's frames in order (the only task that can wait on a slow peer), and reads client
messages. A bad message is answered with an `{"error", "pointer"}` frame; the connection stays open.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from engine.bus import Subscription
from engine.live.batcher import FilterError, parse_message
from engine.live.hub import Connection, Hub, HubFull

HUB = web.AppKey("hub", Hub)
log = logging.getLogger("aios.live")
HEARTBEAT_S = 30.0  # a peer that answers no ping within half of this is closed (a tab that froze)
MAX_MESSAGE = 64 << 10  # client messages are filters: small; aiohttp closes with 1009 past this
TICK_S = 0.5


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """One client: its frames out, its filter messages in."""
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    try:
        conn = hub.attach(request.query.get("resume"))
    except HubFull as exc:
        await ws.send_frame(orjson.dumps({"error": str(exc)}), WSMsgType.TEXT)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too many clients")
        return ws
    writer = asyncio.create_task(_write(ws, conn), name="live-writer")
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                try:  # globs compile to regexes: up to 50 long ones take tens of ms, off the loop
                    hub.set_filter(conn, await asyncio.to_thread(parse_message, message.data))
                except FilterError as exc:
                    hub.reply(conn, exc.frame())
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        hub.detach(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def _write(ws: web.WebSocketResponse, conn: Connection) -> None:
    try:
        while (frame := await conn.next()) is not None:
            await ws.send_frame(orjson.dumps(frame), WSMsgType.TEXT)
        await ws.close(code=WSCloseCode.GOING_AWAY, message=conn.reason.encode())
    except ConnectionError:  # the peer went away mid-frame; the reader sees it too
        pass


async def feed(hub: Hub, subscription: Subscription) -> None:
    """Publish every event of a bus subscription (a `drop_oldest` one: what a lag drops makes the streams
    start again from a snapshot). One bad event or a bug in a round must not end the live view for good."""
    seen = subscription.dropped
    async for event in subscription:
        if subscription.dropped != seen:
            hub.lost(subscription.dropped - seen)
            seen = subscription.dropped
        _guarded(hub, hub.publish, event)


async def tick(hub: Hub, every_s: float = TICK_S) -> None:
    """Flush the batches whose 5 s are over; `every_s` is how late past 5 s a lone event may be."""
    while True:
        await asyncio.sleep(every_s)
        _guarded(hub, hub.flush_due)


def _guarded(hub: Hub, call: Callable[..., None], *args: object) -> None:
    """Run one round; a failure is counted (`round_errors`) and logged the first time and every 1000th."""
    try:
        call(*args)
    except Exception:
        hub.counts["round_errors"] += 1
        if hub.counts["round_errors"] % 1000 == 1:
            log.exception("a live round failed (%d so far); the live view goes on", hub.counts["round_errors"])
