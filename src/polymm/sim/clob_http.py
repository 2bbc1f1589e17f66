"""A small HTTP/1.1 server on asyncio streams, enough for httpx: keep-alive, Content-Length bodies.

It runs on the caller's event loop, so the simulated exchange's state is only ever touched from one
thread and WebSocket pushes happen in the same step as the HTTP call that caused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("polymm.sim.clob.http")

MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEADER)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's Server.close() leaves accepted connections open; close them ourselves.
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    def drop_connections(self) -> None:
        """Close every client connection (keep-alive sockets included)."""
        for w in list(self._writers):
            w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    return
                try:
                    resp = await self._handler(req)
                except Exception:
                    log.exception("handler failed for %s %s", req.method, req.path)
                    resp = Response(500, b'{"error":"internal error"}')
                keep = req.headers.get("connection", "").lower() != "close"
                writer.write(self._encode(resp, keep, req.method == "HEAD"))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("unsupported body")
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        return Request(
            method=method.upper(),
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )

    @staticmethod
    def _encode(resp: Response, keep: bool, head: bool) -> bytes:
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
            f"Connection: {'keep-alive' if keep else 'close'}",
        ]
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return out if head else out + resp.body
