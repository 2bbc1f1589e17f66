"""Frankfurt side of the relay: one mutual-TLS connection to the receiver, kept alive.

Hot path: when the link is up and the socket accepts data, an event is packed and written at
once (no queue, no task switch). When it is down or back-pressured:
- BBO is conflated to the latest quote per symbol (a stale quote is worthless to a trader);
- trades and notices wait in a bounded buffer; overflow drops the oldest, is counted, logged and
  reported to the receiver as a `trades_dropped` notice with the id range, so a backfill knows.
Trades and notices stay in an unacknowledged list until the receiver acknowledges them; after a
broken connection they are replayed (flagged RETRANSMIT, de-duplicated by the receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections import deque

import msgspec

from polymm.relay import wire
from polymm.relay.events import Bbo, Notice, Trade
from polymm.service.backoff import Backoff, sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.link")

Reliable = Trade | Notice


class LinkStats(msgspec.Struct):
    connects: int = 0
    outages: int = 0
    connect_failures: int = 0
    frames_sent: int = 0
    bbo_sent: int = 0
    trades_sent: int = 0
    notices_sent: int = 0
    heartbeats_sent: int = 0
    bbo_conflated: int = 0
    trades_dropped: int = 0
    replayed: int = 0
    acked_seq: int = 0
    last_rx_ns: int = 0


class RelayLink:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        hello: dict[str, object],
        *,
        server_hostname: str | None = None,
        buffer_limit: int = 100_000,
        heartbeat_s: float = 1.0,
        dead_after_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        write_buffer_high: int = 1 << 20,
        backoff: Backoff | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._server_hostname = server_hostname or host
        self._hello = dict(hello, boot_id=os.urandom(6).hex())
        self.buffer_limit = buffer_limit
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.connect_timeout_s = connect_timeout_s
        self.write_buffer_high = write_buffer_high
        self._backoff = backoff or Backoff()
        self.stats = LinkStats()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._burst: list[bytes] | None = None
        self._writable = False
        self._seq = 0
        self._last_write_ns = 0
        self._conflated: dict[str, Bbo] = {}
        self._pending: deque[Reliable] = deque()
        self._unacked: deque[tuple[int, Reliable]] = deque()
        self._dropped: dict[str, list[int]] = {}  # symbol -> [count, first id, last id]
        self._notice_n = 0
        self._lost = asyncio.Event()
        self._all_acked = asyncio.Event()
        self._stopping = False
        self._throttle = Throttle()

    # -- producer API ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def buffered(self) -> int:
        """Trades and notices not yet acknowledged by the receiver."""
        return len(self._pending) + len(self._unacked)

    def send(self, event: Bbo | Trade) -> None:
        if self._transport is not None and self._writable:
            self._seq += 1
            now = time.time_ns()
            if type(event) is Bbo:
                self._write(wire.encode_bbo(self._seq, now, event))
                self.stats.bbo_sent += 1
            else:
                self._write(wire.encode_trade(self._seq, now, event))  # type: ignore[arg-type]
                self._track(self._seq, event)  # type: ignore[arg-type]
                self.stats.trades_sent += 1
        elif type(event) is Bbo:
            if event.symbol in self._conflated:
                self.stats.bbo_conflated += 1
            self._conflated[event.symbol] = event
        else:
            self._buffer(event)  # type: ignore[arg-type]

    def notice(self, event: str, detail: dict[str, object]) -> None:
        self._notice_n += 1
        item = Notice(event, time.time_ns(), detail, f"{self._hello['boot_id']}-{self._notice_n}")
        if self._transport is not None and self._writable:
            self._seq += 1
            self._write(wire.encode_notice(self._seq, time.time_ns(), item))
            self._track(self._seq, item)
            self.stats.notices_sent += 1
        else:
            self._buffer(item)

    def _write(self, frame: bytes, frames: int = 1) -> None:
        """The first frame of a loop iteration goes out at once (no added latency); frames that
        follow in the same iteration, i.e. a burst parsed from one read, share one TLS record."""
        self.stats.frames_sent += frames
        self._last_write_ns = time.time_ns()
        if self._burst is None:
            self._transport.write(frame)  # type: ignore[union-attr]
            self._burst = []
            self._loop.call_soon(self._end_burst)
        else:
            self._burst.append(frame)

    def _end_burst(self) -> None:
        burst, self._burst = self._burst, None
        if burst and self._transport is not None:
            self._transport.write(b"".join(burst))

    def _track(self, seq: int, item: Reliable) -> None:
        unacked = self._unacked
        unacked.append((seq, item))
        if len(unacked) > self.buffer_limit:
            # The receiver is connected but not acknowledging: forget the oldest rather than grow.
            _, old = unacked.popleft()
            self._note_drop(old)

    def _buffer(self, item: Reliable) -> None:
        self._pending.append(item)
        if len(self._pending) + len(self._unacked) > self.buffer_limit:
            source = self._unacked if self._unacked else self._pending
            old = source.popleft()
            self._note_drop(old[1] if isinstance(old, tuple) else old)

    def _note_drop(self, item: Reliable) -> None:
        if type(item) is not Trade:
            self._throttle.warn(log, "drop-notice", "relay buffer full: dropped notice %s", item.event)
            return
        self.stats.trades_dropped += 1
        entry = self._dropped.get(item.symbol)
        if entry is None:
            self._dropped[item.symbol] = [1, item.trade_id, item.trade_id]
        else:
            entry[0] += 1
            entry[2] = item.trade_id
        self._throttle.warn(log, "drop", "relay buffer full (%d): dropping oldest trades, %d so far",
                            self.buffer_limit, self.stats.trades_dropped)  # fmt: skip

    # -- connection management -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        down_since = time.monotonic()
        first = True
        ticker = asyncio.create_task(self._tick_loop(stop))
        try:
            while not stop.is_set():
                self._lost.clear()
                try:
                    await asyncio.wait_for(
                        loop.create_connection(
                            lambda: _LinkProtocol(self), self.host, self.port, ssl=self._ssl,
                            server_hostname=self._server_hostname,
                            ssl_handshake_timeout=self.connect_timeout_s,
                        ),
                        self.connect_timeout_s + 1,
                    )  # fmt: skip
                except (OSError, ssl.SSLError, TimeoutError) as exc:
                    self.stats.connect_failures += 1
                    delay = self._backoff.next_delay()
                    self._throttle.warn(log, "connect", "relay %s:%d unreachable: %s; retry in %.2fs",
                                        self.host, self.port, exc, delay)  # fmt: skip
                    if await sleep_or_stop(stop, delay):
                        break
                    continue
                down_s = time.monotonic() - down_since
                if first:
                    log.info("relay link up to %s:%d", self.host, self.port)
                else:
                    log.info("relay link to %s:%d restored after %.2fs down", self.host, self.port, down_s)
                first = False
                self._backoff.reset()
                stop_wait = asyncio.ensure_future(stop.wait())
                lost_wait = asyncio.ensure_future(self._lost.wait())
                await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                lost_wait.cancel()
                if stop.is_set():
                    self._stopping = True
                    await self._drain(2.0)
                    break
                down_since = time.monotonic()
                if await sleep_or_stop(stop, self._backoff.next_delay()):
                    break
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if self._transport is not None:
                self._transport.close()

    async def _drain(self, timeout_s: float) -> None:
        """On shutdown give the receiver a moment to acknowledge what is in flight."""
        if self._unacked and self._transport is not None:
            self._all_acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_acked.wait(), timeout_s)
        if self._unacked or self._pending:
            log.warning("stopping with %d trades/notices unacknowledged", self.buffered)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        interval = min(self.heartbeat_s, self.dead_after_s) / 4
        while not stop.is_set():
            await asyncio.sleep(interval)
            transport = self._transport
            if transport is None:
                continue
            now = time.time_ns()
            if now - self.stats.last_rx_ns > self.dead_after_s * 1e9:
                log.warning(
                    "relay receiver silent for %.1fs; reconnecting", (now - self.stats.last_rx_ns) / 1e9
                )
                transport.abort()
                continue
            if self._writable and now - self._last_write_ns >= self.heartbeat_s * 1e9:
                self._seq += 1
                self._write(wire.encode_heartbeat(self._seq, now))
                self.stats.heartbeats_sent += 1

    # -- protocol callbacks ------------------------------------------------------------------------

    def _on_connected(self, transport: asyncio.Transport) -> None:
        transport.set_write_buffer_limits(high=self.write_buffer_high)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._burst = None
        self._seq = 0
        self.stats.connects += 1
        self.stats.last_rx_ns = time.time_ns()
        self._seq += 1
        frames = [wire.encode_hello(self._seq, time.time_ns(), self._hello)]
        self._writable = True
        frames += self._flush_frames()
        self._write(b"".join(frames), len(frames))

    def _flush_frames(self) -> list[bytes]:
        """Frames for everything held back: replayed trades/notices, then the latest BBO per symbol."""
        frames: list[bytes] = []
        now = time.time_ns()
        if self._dropped:
            self._notice_n += 1
            detail: dict[str, object] = {
                s: {"count": c, "first_trade_id": f, "last_trade_id": last}
                for s, (c, f, last) in self._dropped.items()
            }
            self._pending.append(
                Notice("trades_dropped", now, detail, f"{self._hello['boot_id']}-{self._notice_n}")
            )
            self._dropped = {}
        replayed = 0
        while self._pending:
            item = self._pending.popleft()
            self._seq += 1
            if type(item) is Trade:
                frames.append(wire.encode_trade(self._seq, now, item, wire.FLAG_RETRANSMIT))
                self.stats.trades_sent += 1
            else:
                frames.append(wire.encode_notice(self._seq, now, item, wire.FLAG_RETRANSMIT))  # type: ignore[arg-type]
                self.stats.notices_sent += 1
            self._unacked.append((self._seq, item))
            replayed += 1
        for bbo in self._conflated.values():
            self._seq += 1
            frames.append(wire.encode_bbo(self._seq, now, bbo))
            self.stats.bbo_sent += 1
        if replayed or self._conflated:
            log.info(
                "relay flushed %d held trades/notices and %d conflated quotes", replayed, len(self._conflated)
            )
        self.stats.replayed += replayed
        self._conflated = {}
        return frames

    def _on_ack(self, seq: int) -> None:
        self.stats.last_rx_ns = time.time_ns()
        self.stats.acked_seq = seq
        unacked = self._unacked
        while unacked and unacked[0][0] <= seq:
            unacked.popleft()
        if not unacked:
            self._all_acked.set()

    def _on_pause(self) -> None:
        self._writable = False

    def _on_resume(self) -> None:
        if self._transport is None:
            return
        self._writable = True
        frames = self._flush_frames()
        if frames:
            self._write(b"".join(frames), len(frames))

    def _on_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._writable = False
        self._burst = None  # BBO in it is stale by now; its trades are in the unacked list
        self.stats.outages += 1
        # Anything not acknowledged may have died in a socket buffer: replay it, oldest first.
        if self._unacked:
            self._pending.extendleft(item for _, item in reversed(self._unacked))
            self._unacked.clear()
        level = logging.INFO if self._stopping else logging.WARNING
        log.log(level, "relay link to %s:%d lost%s; buffering (%d held)", self.host, self.port,
                f": {exc}" if exc else "", self.buffered)  # fmt: skip
        self._lost.set()


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, link: RelayLink) -> None:
        self._link = link
        self._decoder = wire.FrameDecoder()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        self._link._on_connected(transport)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self._decoder.feed(data):
                if frame.kind == wire.ACK:
                    self._link._on_ack(frame.seq)
        except wire.FrameError as exc:
            log.warning("receiver sent a bad frame (%s); reconnecting", exc)
            self._transport.abort()

    def pause_writing(self) -> None:
        self._link._on_pause()

    def resume_writing(self) -> None:
        self._link._on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._on_lost(exc)
