"""A loopback TCP proxy in front of an S3 server that damages request bodies in transit.

It flips one byte in the body of the first `corrupt` PUT requests and forwards everything else
untouched (responses, `Expect: 100-continue`, keep-alive), which is what a bad NIC, a broken
middlebox or bit rot in a buffer would do to an upload.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

_HEADER_END = b"\r\n\r\n"
FLIP_AT = 100  # body offset of the damaged byte (well inside any Parquet file)


class CorruptingProxy:
    def __init__(self, target_port: int, corrupt: int = 1) -> None:
        self.target_port = target_port
        self.to_corrupt = corrupt
        self.corrupted = 0  # PUT bodies damaged so far
        self.puts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CorruptingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        up = asyncio.create_task(self._requests(client_r, server_w))
        down = asyncio.create_task(_pipe(server_r, client_w))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for w in (client_w, server_w):
                w.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward requests one by one: headers as they are, the body byte-counted by
        Content-Length, with one byte flipped when this PUT is to be damaged."""
        while True:
            try:
                head = await reader.readuntil(_HEADER_END)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(head)
            await writer.drain()
            method = head.split(b" ", 1)[0]
            length = _content_length(head)
            flip = -1
            if method == b"PUT":
                self.puts += 1
                if self.corrupted < self.to_corrupt and length > FLIP_AT:
                    self.corrupted += 1
                    flip = FLIP_AT
            sent = 0
            while sent < length:
                chunk = bytearray(await reader.read(min(65536, length - sent)))
                if not chunk:
                    return
                if sent <= flip < sent + len(chunk):
                    chunk[flip - sent] ^= 0x01
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
