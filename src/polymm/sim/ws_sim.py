"""What the local WebSocket exchange sims share: serve, tick at a rate, freeze, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, serve

log = logging.getLogger("polymm.sim")


class TickingWsSim:
    """Base of BinanceSim and PolymarketSim: a WebSocket server plus a random-activity ticker.

    Subclasses provide `_handle` (one connection), `tick` (one round of activity) and
    `connections`; `serve_options` tune the server (pings, frame size)."""

    def __init__(self, host: str, port: int, rate_hz: float, *, ticking: bool = True) -> None:
        self.host = host
        self.port = port
        self.rate_hz = rate_hz
        self.frozen = False  # no random activity while set (tests of quiet feeds)
        self.serve_options: dict[str, Any] = {}
        self._ticking = ticking
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set when a connection comes or goes

    @property
    def connections(self) -> int:
        raise NotImplementedError

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    async def tick(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._server = await serve(self._handle, self.host, self.port, compression=None, **self.serve_options)
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self._ticking and self.rate_hz > 0:
            self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_connections(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until exactly `count` clients are connected (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout_s):
            while self.connections != count:
                self._changed.clear()
                await self._changed.wait()

    def freeze(self) -> None:
        """Stop the random activity (the protocol's keep-alives still answer)."""
        self.frozen = True

    def unfreeze(self) -> None:
        self.frozen = False

    async def _tick_loop(self) -> None:
        period = 1.0 / self.rate_hz
        while True:
            await asyncio.sleep(period)
            if not self.frozen:
                try:
                    await self.tick()
                except Exception:  # a demo must keep running whatever a client does
                    log.exception("%s tick failed", type(self).__name__)
