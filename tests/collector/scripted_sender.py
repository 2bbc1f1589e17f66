"""A relay sender driven step by step by a test: real mutual TLS, the project's wire format.

Unlike binance-sender it forgets nothing: after a reconnect it replays every trade it ever sent
(flagged RETRANSMIT), which is what binance-collector does with trades whose acknowledgement a
crash of the data-collector swallowed. That makes "journaled but not acknowledged" exact
instead of a race against the 100 ms ack timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path

from polymm.relay import wire
from polymm.relay.events import Trade
from tests.conftest import eventually


def client_context(certs: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    return ctx


def make_trade(symbol: str, trade_id: int) -> Trade:
    now = time.time_ns()
    return Trade(symbol, now, now // 10**6, now // 10**6, trade_id, 100.0 + trade_id % 7, 0.5, "buy", False)


class ScriptedSender:
    def __init__(self, certs: Path, port: int, symbol: str = "BTCUSDT") -> None:
        self._ctx = client_context(certs)
        self.port = port
        self.symbol = symbol
        self.sent: list[int] = []  # every trade id sent so far, replayed on each connect
        self.acked = 0  # highest seq acknowledged on the current connection
        self._seq = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Connect, say hello, and replay every trade sent so far."""
        reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self._ctx, server_hostname="127.0.0.1"
        )
        self._seq, self.acked = 0, 0
        self._reader_task = asyncio.create_task(self._read_acks(reader))
        self._write(wire.encode_hello(self._next(), time.time_ns(), {"sender": "scripted", "symbols": []}))
        for tid in self.sent:
            trade = make_trade(self.symbol, tid)
            self._write(wire.encode_trade(self._next(), time.time_ns(), trade, flags=wire.FLAG_RETRANSMIT))
        await self._writer.drain()

    async def send(self, trade_ids: range) -> None:
        assert self._writer is not None
        for tid in trade_ids:
            self._write(wire.encode_trade(self._next(), time.time_ns(), make_trade(self.symbol, tid)))
            self.sent.append(tid)
        await self._writer.drain()

    async def wait_all_acked(self, timeout_s: float = 20.0) -> None:
        """Every frame of this connection acknowledged: the collector says it is journaled."""
        await eventually(lambda: self.acked >= self._seq, timeout_s, f"ack of seq {self._seq}")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._writer = None

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _write(self, frame: bytes) -> None:
        assert self._writer is not None
        self._writer.write(frame)

    async def _read_acks(self, reader: asyncio.StreamReader) -> None:
        decoder = wire.FrameDecoder()
        with contextlib.suppress(ConnectionError, ssl.SSLError, wire.FrameError):
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if frame.kind == wire.ACK:
                        self.acked = max(self.acked, frame.seq)
