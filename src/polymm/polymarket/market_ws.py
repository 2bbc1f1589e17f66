"""Polymarket market-channel client: sharded connections, books, keep-alive, resync.

- Tokens are spread over shards of at most `max_per_connection` assets (sockets with ~500 stall).
- Each shard connection sends the `{"type":"market",...}` first frame once; later changes go as
  `{"operation":...}` frames, written by one writer task per connection so that frames never
  interleave and a token added while the handshake is in flight is not lost.
- Keep-alive is the text `PING` every `ping_interval_s`. A connection that delivers no data for
  `silence_timeout_s` is closed ("silent freeze": PONGs keep coming but the data stops), and any
  connection with no inbound frame at all for that long is dead.
- On every disconnect the shard's books are invalidated before anything else; the reconnect's
  (re)subscribe brings fresh `book` snapshots, which is the only way a book becomes valid again.

Callbacks are synchronous and run on the event loop; an exception in one is logged and counted,
never allowed to kill the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from polymm.polymarket.book import OrderBook
from polymm.polymarket.messages import (
    BookEvent,
    DecodeStats,
    Event,
    FrameDecoder,
    MarketResolvedEvent,
    NewMarketEvent,
    PriceChangeEvent,
    TickSizeChangeEvent,
    TradeEvent,
)
from polymm.service.backoff import Backoff, sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.polymarket.market_ws")

DEFAULT_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"

OnBook = Callable[[str, OrderBook, int, int, str], None]  # token, book, recv_ts, exch_ts, hash
# token, price, size, side, exch_ts, recv_ts, fee_rate_bps (text as sent), transaction_hash
OnTrade = Callable[[str, float, float, str, int, int, str | None, str], None]
OnEvent = Callable[[str, dict[str, Any]], None]

_encode = msgspec.json.Encoder().encode


class FeedStats(DecodeStats):
    connects: int = 0
    reconnects: int = 0
    silence_closes: int = 0
    book_updates: int = 0  # on_book calls
    trades: int = 0
    ignored: int = 0  # updates for tokens not subscribed, or for invalid books
    callback_errors: int = 0
    last_message_ns: int = 0  # any inbound frame, PONG included
    last_data_ns: int = 0  # last frame that was not PONG


class _Shard:
    """One connection's worth of tokens and its live state."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"market-{index}"
        self.tokens: set[str] = set()  # what we want
        self.live: set[str] = set()  # what the current connection has been told
        self.resync: set[str] = set()  # live assets whose book must be requested again
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()  # ends this shard only (emptied, or the feed stopping)
        self.dirty = asyncio.Event()  # tokens changed: the writer syncs `live` to `tokens`
        self.connected = False
        self.last_data_ns = 0
        self.last_frame_ns = 0


class MarketFeed:
    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        url: str = DEFAULT_URL,
        on_book: OnBook | None = None,
        on_trade: OnTrade | None = None,
        on_event: OnEvent | None = None,
        max_per_connection: int = 200,
        ping_interval_s: float = 10.0,
        silence_timeout_s: float = 30.0,
        open_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.1,
        backoff_cap_s: float = 5.0,
        max_message_bytes: int = 16 << 20,
        custom_feature_enabled: bool = True,
    ) -> None:
        if max_per_connection < 1:
            raise ValueError("max_per_connection must be >= 1")
        self.url = url
        self._on_book = on_book
        self._on_trade = on_trade
        self._on_event = on_event
        self.max_per_connection = max_per_connection
        self.ping_interval_s = ping_interval_s
        self.silence_timeout_s = silence_timeout_s
        self.open_timeout_s = open_timeout_s
        self._backoff_args = (backoff_initial_s, backoff_cap_s)
        self.max_message_bytes = max_message_bytes
        self.custom_feature_enabled = custom_feature_enabled
        self.stats = FeedStats()
        self._decoder = FrameDecoder(self.stats)
        self._throttle = Throttle(5.0)
        self.books: dict[str, OrderBook] = {}
        self._shards: list[_Shard] = []
        self._shard_of: dict[str, _Shard] = {}
        self._running = False
        self.subscribe(tokens)

    # -- public API --------------------------------------------------------------------------------

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(self._shard_of)

    @property
    def connected(self) -> bool:
        """True when every shard that has tokens is connected."""
        active = [s for s in self._shards if s.tokens]
        return bool(active) and all(s.connected for s in active)

    @property
    def connections(self) -> int:
        return sum(1 for s in self._shards if s.connected)

    def shard_tokens(self) -> list[frozenset[str]]:
        return [frozenset(s.tokens) for s in self._shards if s.tokens]

    def last_message_age(self) -> float:
        """Seconds since the last inbound frame on any connection (inf before the first)."""
        if not self.stats.last_message_ns:
            return float("inf")
        return (time.time_ns() - self.stats.last_message_ns) / 1e9

    def subscribe(self, tokens: Iterable[str]) -> set[str]:
        """Add tokens (synchronous; the wire frames follow from each shard's writer). Returns the new ones."""
        added = {t for t in tokens if t and t not in self._shard_of}
        touched: set[_Shard] = set()
        for token in sorted(added):
            shard = self._shard_with_room()
            shard.tokens.add(token)
            self._shard_of[token] = shard
            self.books[token] = OrderBook(token)
            if token in shard.live:  # unsubscribe not yet sent: the server will not resend the book
                shard.resync.add(token)
            touched.add(shard)
        for shard in touched:
            self._wake(shard)
        return added

    def unsubscribe(self, tokens: Iterable[str]) -> set[str]:
        removed = {t for t in tokens if t in self._shard_of}
        touched: set[_Shard] = set()
        for token in removed:
            shard = self._shard_of.pop(token)
            shard.tokens.discard(token)
            book = self.books.pop(token, None)
            if book is not None:
                book.invalidate()  # anyone still holding it must not trade on it
            touched.add(shard)
        for shard in touched:
            self._wake(shard)
        return removed

    async def run(self, stop: asyncio.Event) -> None:
        """Run every shard until `stop` is set; returns after all connections are closed."""
        self._running = True
        try:
            for shard in self._shards:
                self._wake(shard)
            await stop.wait()
        finally:
            self._running = False
            shards = [s for s in self._shards if s.task is not None]
            for shard in shards:
                shard.stop.set()
            tasks = [s.task for s in shards if s.task is not None]
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=3.0)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for shard in shards:
                shard.task = None

    # -- sharding ----------------------------------------------------------------------------------

    def _shard_with_room(self) -> _Shard:
        for shard in self._shards:
            if len(shard.tokens) < self.max_per_connection:
                return shard
        shard = _Shard(len(self._shards))
        self._shards.append(shard)
        return shard

    def _wake(self, shard: _Shard) -> None:
        """Start, sync or stop a shard's connection so that it matches its token set."""
        if not self._running:
            return
        if shard.tokens and (shard.task is None or shard.task.done()):
            shard.stop = asyncio.Event()
            shard.live = set()
            shard.task = asyncio.create_task(self._run_shard(shard), name=f"polymarket-{shard.name}")
        elif not shard.tokens and shard.task is not None:
            shard.stop.set()  # an empty connection has nothing to say; close it
        else:
            shard.dirty.set()

    # -- one connection ----------------------------------------------------------------------------

    async def _run_shard(self, shard: _Shard) -> None:
        backoff = Backoff(*self._backoff_args)
        down_since = time.time_ns()
        reason = "start"
        while not shard.stop.is_set() and shard.tokens:
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.open_timeout_s,
                    close_timeout=1.0,
                    max_size=self.max_message_bytes,
                    compression=None,
                    ping_interval=None,  # Polymarket's keep-alive is the text PING below
                )
            except Exception as exc:  # refused, DNS, TLS, HTTP status, timeout: all mean "try later"
                delay = backoff.next_delay()
                self._throttle.warn(
                    log, f"connect-{shard.index}", "polymarket %s connect failed: %s; retry in %.2fs",
                    shard.name, exc, delay,
                )  # fmt: skip
                if await sleep_or_stop(shard.stop, delay):
                    break
                continue
            if shard.stop.is_set() or not shard.tokens:  # emptied or stopped during the handshake
                await _close_quietly(ws)
                break
            self.stats.connects += 1
            if reason != "start":
                self.stats.reconnects += 1
            up_since = time.time_ns()
            reason = await self._serve(shard, ws, down_since, reason, backoff)
            down_since = time.time_ns()
            self._lost(shard, reason, up_since)
            if shard.stop.is_set():
                break
            if await sleep_or_stop(shard.stop, backoff.next_delay()):
                break
        shard.connected = False
        if self._running and shard.tokens:
            # Tokens came back while this shard was closing: start it again once this task is done.
            asyncio.get_running_loop().call_soon(self._wake, shard)

    async def _serve(
        self, shard: _Shard, ws: ClientConnection, down_since: int, prev_reason: str, backoff: Backoff
    ) -> str:
        """Subscribe, then pump frames until the connection dies; returns why it ended."""
        reconnect = prev_reason != "start"
        tokens = sorted(shard.tokens)
        custom = self.custom_feature_enabled
        first = {"type": "market", "assets_ids": tokens, "custom_feature_enabled": custom}
        try:
            await ws.send(_encode(first).decode())
        except ConnectionClosed:
            await _close_quietly(ws)
            return "closed during subscribe"
        shard.ws = ws
        shard.live = set(tokens)
        shard.connected = True
        now = time.time_ns()
        shard.last_frame_ns = shard.last_data_ns = now
        down_ms = round((now - down_since) / 1e6, 3)
        if reconnect:
            log.info("polymarket %s reconnected after %.0f ms down (%s)", shard.name, down_ms, prev_reason)
        else:
            log.info("polymarket %s connected: %d assets", shard.name, len(tokens))
        self._emit(
            "connected",
            {"conn": shard.name, "assets": len(tokens), "reconnect": reconnect,
             "down_ms": down_ms if reconnect else 0.0, "reason": prev_reason},
        )  # fmt: skip
        self._emit("resubscribed" if reconnect else "subscribed", {"conn": shard.name, "assets_ids": tokens})
        reader = asyncio.create_task(self._read(shard, ws, backoff))
        writer = asyncio.create_task(self._write(shard, ws))
        stopper = asyncio.create_task(shard.stop.wait())
        try:
            done, _ = await asyncio.wait({reader, writer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                return "stop"
            task = reader if reader in done else writer
            if task.cancelled():
                return "cancelled"
            exc = task.exception()
            if exc is not None:
                return f"error: {exc!r}"
            return task.result()
        finally:
            for task in (reader, writer, stopper):
                task.cancel()
            await asyncio.gather(reader, writer, stopper, return_exceptions=True)
            shard.ws = None
            shard.connected = False
            await _close_quietly(ws)

    async def _write(self, shard: _Shard, ws: ClientConnection) -> str:
        """The only task that sends on `ws`: subscription changes, PINGs, and the silence watchdog."""
        next_ping = time.monotonic() + self.ping_interval_s
        check = min(self.ping_interval_s, self.silence_timeout_s / 4, 0.5)
        try:
            while True:
                if shard.dirty.is_set():
                    shard.dirty.clear()
                    await self._sync(shard, ws)
                now_ns = time.time_ns()
                quiet_s = (now_ns - shard.last_frame_ns) / 1e9
                if quiet_s > self.silence_timeout_s:
                    self.stats.silence_closes += 1
                    return f"no frames for {quiet_s:.1f}s (dead)"
                data_quiet_s = (now_ns - shard.last_data_ns) / 1e9
                if shard.live and data_quiet_s > self.silence_timeout_s:
                    self.stats.silence_closes += 1
                    return f"no data for {data_quiet_s:.1f}s (silent freeze)"
                if time.monotonic() >= next_ping:
                    await ws.send("PING")
                    next_ping = time.monotonic() + self.ping_interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(shard.dirty.wait(), check)
        except ConnectionClosed:
            return _close_reason(ws)

    async def _sync(self, shard: _Shard, ws: ClientConnection) -> None:
        add = sorted(shard.tokens - shard.live)
        remove = sorted(shard.live - shard.tokens)
        resync = sorted((shard.resync & shard.tokens) - set(add))
        shard.resync.clear()
        if remove:
            await ws.send(_encode({"operation": "unsubscribe", "assets_ids": remove}).decode())
            shard.live.difference_update(remove)
            self._emit("unsubscribed", {"conn": shard.name, "assets_ids": remove})
        if add:
            await ws.send(_encode({"operation": "subscribe", "assets_ids": add}).decode())
            shard.live.update(add)
            self._emit("subscribed", {"conn": shard.name, "assets_ids": add})
            shard.last_data_ns = time.time_ns()  # give the new assets' snapshots a full timeout
        if resync:
            # Every subscribe makes the server push a full book: the documented resync.
            await ws.send(_encode({"operation": "subscribe", "assets_ids": resync}).decode())
            self._emit("resubscribed", {"conn": shard.name, "assets_ids": resync})

    async def _read(self, shard: _Shard, ws: ClientConnection, backoff: Backoff) -> str:
        stats = self.stats
        decode = self._decoder.decode
        first_data = True
        try:
            async for frame in ws:
                recv_ts = time.time_ns()
                shard.last_frame_ns = recv_ts
                stats.last_message_ns = recv_ts
                if frame == "PONG":  # keep-alive only: proves the socket, not the data flow
                    stats.frames += 1
                    stats.pongs += 1
                    continue
                events = decode(frame)
                shard.last_data_ns = recv_ts
                stats.last_data_ns = recv_ts
                if first_data:
                    first_data = False
                    backoff.reset()  # only a connection that delivers data counts as healthy
                for event in events:
                    self._dispatch(event, recv_ts)
        except ConnectionClosed:
            pass
        return _close_reason(ws)

    def _lost(self, shard: _Shard, reason: str, up_since: int) -> None:
        """Invalidate the shard's books first, then tell the embedder about the gap."""
        invalidated = []
        for token in shard.tokens | shard.live:
            book = self.books.get(token)
            if book is not None and book.valid:
                book.invalidate()
                invalidated.append(token)
        shard.live = set()
        shard.resync.clear()
        if reason == "stop":
            return
        log.warning("polymarket %s disconnected: %s", shard.name, reason)
        if invalidated:
            detail = {"conn": shard.name, "assets_ids": invalidated, "reason": "disconnect"}
            self._emit("book_invalidated", detail)
        self._emit(
            "disconnected",
            {"conn": shard.name, "reason": reason, "up_s": round((time.time_ns() - up_since) / 1e9, 3),
             "at_ns": time.time_ns(), "last_data_ns": shard.last_data_ns},
        )  # fmt: skip

    # -- events ------------------------------------------------------------------------------------

    def _dispatch(self, event: Event, recv_ts: int) -> None:
        kind = type(event)
        if kind is PriceChangeEvent:
            self._price_change(event, recv_ts)  # type: ignore[arg-type]
        elif kind is BookEvent:
            self._book(event, recv_ts)  # type: ignore[arg-type]
        elif kind is TradeEvent:
            self._trade(event, recv_ts)  # type: ignore[arg-type]
        elif kind is TickSizeChangeEvent:
            self._tick_size(event)  # type: ignore[arg-type]
        elif kind is MarketResolvedEvent:
            ev: MarketResolvedEvent = event  # type: ignore[assignment]
            self._emit(
                "market_resolved",
                {"market": ev.market, "assets_ids": ev.assets_ids, "winning_asset_id": ev.winning_asset_id,
                 "winning_outcome": ev.winning_outcome, "timestamp": ev.timestamp, "recv_ts": recv_ts},
            )  # fmt: skip
        elif kind is NewMarketEvent:
            nm: NewMarketEvent = event  # type: ignore[assignment]
            self._emit(
                "new_market",
                {"market": nm.market, "slug": nm.slug, "assets_ids": nm.assets_ids, "recv_ts": recv_ts},
            )
        # best_bid_ask carries nothing the book does not already know

    def _book(self, event: BookEvent, recv_ts: int) -> None:
        book = self.books.get(event.asset_id)
        if book is None:
            self.stats.ignored += 1
            return
        book.apply_snapshot(event.bids, event.asks, event.timestamp, event.hash, event.market)
        self._notify_book(book, recv_ts)

    def _price_change(self, event: PriceChangeEvent, recv_ts: int) -> None:
        books = self.books
        touched: dict[str, OrderBook] = {}
        ts = event.timestamp
        for change in event.price_changes:
            book = books.get(change.asset_id)
            if book is None or not book.apply_level(change.side, change.price, change.size, ts, change.hash):
                self.stats.ignored += 1
                continue
            touched[change.asset_id] = book
        for book in touched.values():  # one callback per asset per event: the batch is atomic
            self._notify_book(book, recv_ts)

    def _notify_book(self, book: OrderBook, recv_ts: int) -> None:
        self.stats.book_updates += 1
        if self._on_book is None:
            return
        try:
            self._on_book(book.token_id, book, recv_ts, book.timestamp, book.hash)
        except Exception:
            self._callback_failed("on_book")

    def _trade(self, event: TradeEvent, recv_ts: int) -> None:
        if event.asset_id not in self.books:
            self.stats.ignored += 1
            return
        self.stats.trades += 1
        if self._on_trade is None:
            return
        try:
            self._on_trade(
                event.asset_id, event.price, event.size, event.side, event.timestamp, recv_ts,
                event.fee_text, event.transaction_hash,
            )  # fmt: skip
        except Exception:
            self._callback_failed("on_trade")

    def _tick_size(self, event: TickSizeChangeEvent) -> None:
        book = self.books.get(event.asset_id)
        if book is None:
            return
        book.invalidate()  # levels on the old grid are meaningless; wait for the next snapshot
        book.set_tick_size(event.new_tick_size)
        detail = {"asset_id": event.asset_id, "market": event.market, "old_tick_size": event.old_tick_size,
                  "new_tick_size": event.new_tick_size, "timestamp": event.timestamp}  # fmt: skip
        self._emit("tick_size_change", detail)
        self._emit("book_invalidated", {"assets_ids": [event.asset_id], "reason": "tick_size_change"})
        shard = self._shard_of.get(event.asset_id)
        if shard is not None and shard.ws is not None:
            # Resubscribing the one asset is the documented way to get its book back now.
            shard.resync.add(event.asset_id)
            shard.dirty.set()

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            self._callback_failed("on_event")

    def _callback_failed(self, name: str) -> None:
        self.stats.callback_errors += 1
        self._throttle.warn(log, f"cb-{name}", "polymarket %s callback raised", name, exc_info=True)


def _close_reason(ws: ClientConnection) -> str:
    if ws.close_code is None:
        return "connection lost (no close frame)"
    return f"closed by peer ({ws.close_code} {ws.close_reason})".replace(" )", ")")


async def _close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 2.0)
