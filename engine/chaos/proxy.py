"""A delaying TCP proxy on loopback (toxiproxy's `latency` toxic): every chunk, either way, waits `delay_s`.

The latency scenario routes one agent's calls to the engine through it (the agent's route file,
`AIOS_URL_FILE`), so its network is slow and nobody else's is: nothing is changed on the machine's shared
loopback. Connections are closed with the proxy.
"""
from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 << 10


class DelayProxy:
    def __init__(self, upstream_host: str, upstream_port: int, delay_s: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay_s = delay_s
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; returns the proxy's base URL (`http://host:port`)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return f"http://{bound[0]}:{bound[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # held until it ends: close() cancels what is still going
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # close(): the connection ends with the proxy
        finally:
            for end in (writer, up_writer):
                end.close()
            self._tasks.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(CHUNK):
                await asyncio.sleep(self.delay_s)
                sink.write(chunk)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
