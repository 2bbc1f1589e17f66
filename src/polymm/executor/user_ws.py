"""Polymarket user channel: our order and trade events, pushed over an authenticated WebSocket.

One connection: first frame {"type":"user","auth":{...},"markets":[condition ids]}, a text PING
every 10 s (the server answers PONG), and a reconnect with jittered backoff when the socket
closes or goes silent. Frames are one event or a JSON array of events; anything malformed is
counted and skipped, never fatal. Callers get typed events plus connect/disconnect callbacks:
disconnect means "stop quoting" (we are blind to fills), connect means "reconcile first".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from polymm.service.backoff import Backoff, sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.executor.user_ws")


@dataclass(frozen=True, slots=True)
class OrderEvent:
    kind: str  # PLACEMENT | UPDATE | CANCELLATION
    order_id: str
    market: str
    asset_id: str
    side: str
    price: float
    original_size: float
    size_matched: float
    status: str
    owner: str
    ts_ns: int  # receive time


@dataclass(frozen=True, slots=True)
class MakerOrder:
    order_id: str
    owner: str
    matched_amount: float
    price: float
    asset_id: str
    side: str


@dataclass(frozen=True, slots=True)
class TradeEvent:
    trade_id: str
    status: str  # MATCHED | MINED | CONFIRMED | RETRYING | FAILED
    market: str
    asset_id: str
    side: str  # taker side
    price: float
    size: float
    taker_order_id: str
    trader_side: str  # TAKER | MAKER, from our point of view
    owner: str
    maker_orders: tuple[MakerOrder, ...]
    ts_ns: int


OrderCallback = Callable[[OrderEvent], None]
TradeCallback = Callable[[TradeEvent], None]
StateCallback = Callable[[], None]


def _f(value: Any) -> float:
    return float(value) if value not in (None, "") else 0.0


def parse_event(obj: dict[str, Any], now_ns: int) -> OrderEvent | TradeEvent | None:
    """Typed event from one decoded object; None for events we do not use. Raises on bad shape."""
    etype = obj.get("event_type")
    if etype == "order":
        return OrderEvent(
            kind=str(obj.get("type", "")).upper(),
            order_id=str(obj["id"]),
            market=str(obj.get("market", "")),
            asset_id=str(obj.get("asset_id", "")),
            side=str(obj.get("side", "")).upper(),
            price=_f(obj.get("price")),
            original_size=_f(obj.get("original_size")),
            size_matched=_f(obj.get("size_matched")),
            status=str(obj.get("status", "")).upper(),
            owner=str(obj.get("owner", "")),
            ts_ns=now_ns,
        )
    if etype == "trade":
        makers = tuple(
            MakerOrder(
                order_id=str(m["order_id"]),
                owner=str(m.get("owner", "")),
                matched_amount=_f(m.get("matched_amount")),
                price=_f(m.get("price")),
                asset_id=str(m.get("asset_id", "")),
                side=str(m.get("side", "")).upper(),
            )
            for m in obj.get("maker_orders") or ()
        )
        return TradeEvent(
            trade_id=str(obj["id"]),
            status=str(obj.get("status", "")).upper(),
            market=str(obj.get("market", "")),
            asset_id=str(obj.get("asset_id", "")),
            side=str(obj.get("side", "")).upper(),
            price=_f(obj.get("price")),
            size=_f(obj.get("size")),
            taker_order_id=str(obj.get("taker_order_id", "")),
            trader_side=str(obj.get("trader_side", "")).upper(),
            owner=str(obj.get("owner", "")),
            maker_orders=makers,
            ts_ns=now_ns,
        )
    return None


class UserChannel:
    def __init__(
        self,
        url: str,
        auth: Callable[[], dict[str, str]],
        markets: Sequence[str],
        *,
        on_order: OrderCallback,
        on_trade: TradeCallback,
        on_connect: StateCallback | None = None,
        on_disconnect: StateCallback | None = None,
        ping_interval_s: float = 10.0,
        silence_timeout_s: float = 30.0,
        backoff_cap_s: float = 5.0,
    ) -> None:
        self.url = url
        self._auth = auth  # a callable, so the secret lives only in the gateway
        self.markets = list(markets)
        self._on_order = on_order
        self._on_trade = on_trade
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self.ping_interval_s = ping_interval_s
        self.silence_timeout_s = silence_timeout_s
        self._backoff = Backoff(0.1, backoff_cap_s)
        self._throttle = Throttle(10.0)
        self._ws: ClientConnection | None = None
        self.connected = False
        self.connects = 0
        self.malformed = 0
        self.events = 0
        self.last_frame_ns = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with connect(self.url, ping_interval=None, max_size=2**22, open_timeout=5) as ws:
                    self._ws = ws
                    await ws.send(
                        msgspec.json.encode(
                            {"type": "user", "auth": self._auth(), "markets": self.markets}
                        ).decode()
                    )
                    self.connects += 1
                    self.connected = True
                    self.last_frame_ns = time.time_ns()
                    log.info(
                        "user channel connected (%d markets, connect #%d)", len(self.markets), self.connects
                    )
                    if self._on_connect is not None:
                        self._on_connect()
                    await self._session(ws, stop)
            except (OSError, WebSocketException, TimeoutError) as exc:
                self._throttle.warn(log, "conn", "user channel error: %s", type(exc).__name__)
            finally:
                self._ws = None
                if self.connected:
                    self.connected = False
                    log.warning("user channel disconnected")
                    if self._on_disconnect is not None:
                        self._on_disconnect()
            if stop.is_set():
                break
            delay = self._backoff.next_delay()
            if await sleep_or_stop(stop, delay):
                break

    async def drop(self) -> None:
        """Close the current socket (tests, or an operator forcing a resync)."""
        if self._ws is not None:
            await self._ws.close()

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        pinger = asyncio.create_task(self._ping(ws))
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                recv = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {recv, stopper}, timeout=self.silence_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                if recv not in done:
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketException):
                        await recv
                    if stopper in done:
                        return
                    self._throttle.warn(
                        log, "silent", "user channel silent for %.0fs, reconnecting", self.silence_timeout_s
                    )
                    return
                self._handle(recv.result())
        finally:
            pinger.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(WebSocketException):
            while True:
                await asyncio.sleep(self.ping_interval_s)
                await ws.send("PING")

    def _handle(self, frame: str | bytes) -> None:
        now = time.time_ns()
        self.last_frame_ns = now
        self._backoff.reset()
        if frame in ("PONG", b"PONG"):
            return
        try:
            decoded = msgspec.json.decode(frame)
        except msgspec.DecodeError:
            self._malformed("undecodable frame")
            return
        items = decoded if isinstance(decoded, list) else [decoded]
        for item in items:
            if not isinstance(item, dict):
                self._malformed("not an object")
                continue
            try:
                event = parse_event(item, now)
            except (KeyError, ValueError, TypeError):
                self._malformed(f"bad {item.get('event_type')} event")
                continue
            if event is None:
                continue
            self.events += 1
            # A callback bug must not kill the channel (we would go blind to fills); log it loudly.
            try:
                if isinstance(event, OrderEvent):
                    self._on_order(event)
                else:
                    self._on_trade(event)
            except Exception:
                log.exception("user event handler failed for %s", type(event).__name__)

    def _malformed(self, what: str) -> None:
        self.malformed += 1
        self._throttle.warn(log, "malformed", "user channel: %s (%d malformed so far)", what, self.malformed)
