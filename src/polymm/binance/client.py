"""One Binance combined-stream connection, kept alive.

- Reconnects with jittered backoff and reports each outage (length, reason, last ids seen) as a
  notice, because data missed while disconnected is never replayed by Binance.
- A stale watchdog closes a connection that stays silent, long before Binance's pong timeout.
- Make-before-break rotation before Binance's 24 h cut-off and on `serverShutdown`: the new
  connection takes over once it delivers data; the overlap is de-duplicated by update/trade id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from polymm.binance.parse import Control, Dropped, ParseError, Parser
from polymm.binance.streams import ConnectionPlan
from polymm.relay.events import Bbo, Trade
from polymm.service.backoff import Backoff, sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.binance")

OnEvent = Callable[[Bbo | Trade], None]
OnNotice = Callable[[str, dict[str, object]], None]


class FeedStats(msgspec.Struct):
    messages: int = 0
    bbo: int = 0
    trades: int = 0
    parse_errors: int = 0
    dropped: int = 0  # messages not used (raw payloads, unhandled streams): see dropped_by
    dropped_by: dict[str, int] = {}
    micro_times: int = 0  # events whose times came in microseconds, divided to ms
    duplicates: int = 0
    connects: int = 0
    outages: int = 0
    stale_closes: int = 0
    rotations: int = 0
    last_message_ns: int = 0


class _IdFilter:
    """Drops events whose id does not advance; needed while two connections overlap."""

    __slots__ = ("bbo", "trade")

    def __init__(self) -> None:
        self.bbo: dict[str, int] = {}
        self.trade: dict[str, int] = {}

    def fresh(self, event: Bbo | Trade) -> bool:
        if type(event) is Bbo:
            seen, key = self.bbo, event.update_id
        else:
            seen, key = self.trade, event.trade_id
        last = seen.get(event.symbol)
        if last is not None and key <= last:
            return False
        seen[event.symbol] = key
        return True

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"bbo_update_id": dict(self.bbo), "trade_id": dict(self.trade)}


class BinanceFeed:
    def __init__(
        self,
        plan: ConnectionPlan,
        on_event: OnEvent,
        on_notice: OnNotice,
        *,
        stale_after_s: float = 10.0,
        rotate_after_s: float = 23 * 3600 + 50 * 60,
        open_timeout_s: float = 10.0,
        max_message_bytes: int = 1 << 20,
        backoff: Backoff | None = None,
    ) -> None:
        self.plan = plan
        self._on_event = on_event
        self._on_notice = on_notice
        self.stale_after_s = stale_after_s
        self.rotate_after_s = rotate_after_s
        self.open_timeout_s = open_timeout_s
        self.max_message_bytes = max_message_bytes
        self._backoff = backoff or Backoff()
        self._ids = _IdFilter()
        self._throttle = Throttle()
        self._shutdown_notice = asyncio.Event()
        self.stats = FeedStats()
        self.connected = False

    def last_message_age_s(self) -> float:
        if not self.stats.last_message_ns:
            return float("inf")
        return (time.time_ns() - self.stats.last_message_ns) / 1e9

    async def _connect(self) -> ClientConnection:
        return await connect(
            self.plan.url,
            open_timeout=self.open_timeout_s,
            close_timeout=1.0,
            max_size=self.max_message_bytes,
            compression=None,  # Binance does not compress; skipping negotiation saves CPU per frame
            ping_interval=20,
            ping_timeout=20,
        )

    async def run(self, stop: asyncio.Event) -> None:
        down_since = time.time_ns()
        reason = "start"
        while not stop.is_set():
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                delay = self._backoff.next_delay()
                self._throttle.warn(
                    log, "connect", "binance %s connect failed: %s; retry in %.2fs",
                    self.plan.name, exc, delay,
                )  # fmt: skip
                if await sleep_or_stop(stop, delay):
                    break
                continue
            self.stats.connects += 1
            self._report_reconnect(down_since, reason)
            reason = await self._serve(ws, stop)
            self.connected = False
            down_since = time.time_ns()
            if not stop.is_set():
                self.stats.outages += 1
                log.warning("binance %s disconnected: %s", self.plan.name, reason)
                if await sleep_or_stop(stop, self._backoff.next_delay()):
                    break

    def _report_reconnect(self, down_since: int, reason: str) -> None:
        self.connected = True
        down_ms = (time.time_ns() - down_since) / 1e6
        last_ids = self._ids.snapshot()
        self._ids = _IdFilter()  # after a real gap the ids start from wherever Binance is now
        if reason == "start":
            log.info("binance %s connected: %d streams", self.plan.name, len(self.plan.streams))
            return
        log.info("binance %s reconnected after %.0f ms down (%s)", self.plan.name, down_ms, reason)
        self._on_notice(
            "binance_reconnect",
            {"conn": self.plan.name, "reason": reason, "down_ms": round(down_ms, 3), "last_ids": last_ids},
        )

    async def _serve(self, ws: ClientConnection, stop: asyncio.Event) -> str:
        """Pump `ws` (and its successors after rotations) until it dies; return why."""
        first = asyncio.Event()
        pump = asyncio.create_task(self._pump(ws, first))
        opened = time.monotonic()
        try:
            while True:
                if stop.is_set():
                    return "stop"
                if pump.done():
                    return pump.result()
                if first.is_set():
                    self._backoff.reset()
                age = self.last_message_age_s() if first.is_set() else time.monotonic() - opened
                if age > self.stale_after_s:
                    self.stats.stale_closes += 1
                    return f"no data for {age:.1f}s (stale)"
                rotate = self._shutdown_notice.is_set() or time.monotonic() - opened > self.rotate_after_s
                if rotate:
                    self._shutdown_notice.clear()
                    handed = await self._rotate(ws, pump)
                    if handed is not None:
                        ws, pump = handed
                        opened = time.monotonic()
                    else:
                        opened = time.monotonic() - self.rotate_after_s + 30  # try again in 30 s
                await asyncio.wait({pump, asyncio.ensure_future(stop.wait())}, timeout=0.5,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            await _close_quietly(ws)

    async def _rotate(
        self, old: ClientConnection, old_pump: asyncio.Task[str]
    ) -> tuple[ClientConnection, asyncio.Task[str]] | None:
        """Open a successor; once it delivers data, retire `old`. None if the successor failed."""
        try:
            new = await self._connect()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            log.warning("binance %s rotation failed (%s); keeping the old connection", self.plan.name, exc)
            return None
        first = asyncio.Event()
        new_pump = asyncio.create_task(self._pump(new, first))
        waiter = asyncio.ensure_future(first.wait())
        await asyncio.wait(
            {waiter, new_pump}, timeout=self.stale_after_s, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if not first.is_set():
            log.warning("binance %s rotation: successor sent no data; keeping the old one", self.plan.name)
            new_pump.cancel()
            await _close_quietly(new)
            return None
        old_pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await old_pump
        await _close_quietly(old)
        self.stats.rotations += 1
        log.info("binance %s rotated to a fresh connection without a gap", self.plan.name)
        return new, new_pump

    async def _pump(self, ws: ClientConnection, first: asyncio.Event) -> str:
        parser = Parser()
        micro_seen = 0  # parser.micro already counted
        stats = self.stats
        on_event = self._on_event
        try:
            async for message in ws:
                recv_ts = time.time_ns()
                stats.messages += 1
                stats.last_message_ns = recv_ts
                if not first.is_set():
                    first.set()
                try:
                    event = parser.parse(message, recv_ts)
                except ParseError as exc:
                    stats.parse_errors += 1
                    self._throttle.warn(log, "parse", "binance %s bad message: %s", self.plan.name, exc)
                    continue
                if event is None:
                    continue
                if type(event) is Control:
                    self._control(event)
                    continue
                if type(event) is Dropped:
                    self._dropped(event, message)
                    continue
                if parser.micro != micro_seen:  # off the common path: only on a microsecond stream
                    if not micro_seen:
                        log.info("binance %s sends times in microseconds (timeUnit=MICROSECOND): "
                                 "normalised to ms", self.plan.name)  # fmt: skip
                    stats.micro_times += parser.micro - micro_seen
                    micro_seen = parser.micro
                if not self._ids.fresh(event):
                    stats.duplicates += 1
                    continue
                if type(event) is Bbo:
                    stats.bbo += 1
                else:
                    stats.trades += 1
                on_event(event)
        except ConnectionClosed:
            pass  # a clean close ends the iteration instead; both are described below
        if ws.close_code is None:
            return "connection lost (no close frame)"
        return f"closed by peer ({ws.close_code} {ws.close_reason})".replace(" )", ")")

    def _dropped(self, event: Dropped, message: str | bytes) -> None:
        stats = self.stats
        stats.dropped += 1
        count = stats.dropped_by[event.reason] = stats.dropped_by.get(event.reason, 0) + 1
        self._throttle.warn(log, f"drop:{event.reason}", "binance %s dropped a %s (%d so far): %.120r",
                            self.plan.name, event.reason, count, message)  # fmt: skip

    def _control(self, event: Control) -> None:
        if event.event == "serverShutdown":
            log.info("binance %s announced serverShutdown; rotating", self.plan.name)
            self._shutdown_notice.set()
        else:
            log.info("binance %s control event %s", self.plan.name, event.event)


async def _close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 2.0)
