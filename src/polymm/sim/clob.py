"""A local Polymarket CLOB (REST + WebSocket) that the real `py_clob_client_v2` talks to.

REST (asyncio HTTP/1.1, keep-alive) implements what a market maker uses: L1 key creation and
derivation (EIP-712 ClobAuth), L2 HMAC auth with a clock-skew check, V2 order posting with EIP-712
signer recovery (orderID = digest), batches, the cancel family, open orders with cursor paging,
trades, the heartbeat dead-man switch, per-signer token buckets, and market data. Books are real:
resting orders of every owner plus anonymous "external" liquidity, matched price-time, YES/NO
complementary (see clob_book).

WebSocket (`<ws_url>/ws/market`, `<ws_url>/ws/user`): book snapshots, batched price_change,
last_trade_price, tick_size_change, best_bid_ask; user order (PLACEMENT/UPDATE/CANCELLATION) and
trade (MATCHED -> MINED -> CONFIRMED) events; text PING -> PONG.

Runs on the caller's event loop (`await sim.start()`), or in its own thread (`sim.start_in_thread()`)
for synchronous callers. Test hooks are plain methods, safe to call from either thread.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from polymm.sim.clob_auth import (
    EXCHANGE_V2,
    NEG_RISK_EXCHANGE_V2,
    V1_ONLY_FIELDS,
    ApiKey,
    AuthError,
    derive_api_key,
    parse_v2_order,
    verify_hmac,
    verify_l1,
)
from polymm.sim.clob_book import (
    MICRO,
    PIPS,
    Fill,
    MarketBook,
    Order,
    fmt_price,
    fmt_size,
    to_micro,
    to_pips,
)
from polymm.sim.clob_http import HttpServer, Request, Response

log = logging.getLogger("polymm.sim.clob")

INITIAL_CURSOR = "MA=="  # base64("0")
END_CURSOR = "LTE="  # base64("-1")
ORDER_TYPES = ("GTC", "GTD", "FOK", "FAK")
MAX_BATCH = 15
MAX_CANCEL_BATCH = 1000
VALID_TICKS = {1000, 100, 50, 25, 10, 1}  # 0.1 .. 0.0001 in pips

T = TypeVar("T")


class HttpError(Exception):
    """Turns into `{"error": message}` with `status`; `reason` feeds the reject counters."""

    def __init__(self, status: int, message: str, reason: str = "", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers or {}


class OrderRejectedError(Exception):
    """An order refused by the matching engine's checks (400 on /order, an errorMsg in /orders)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(slots=True)
class Market:
    condition_id: str
    yes_token: str
    no_token: str
    tick: int  # pips
    neg_risk: bool
    min_size: int  # micro-shares
    book: MarketBook
    last_trade: tuple[int, str] | None = None  # (YES price pips, side)


@dataclass(slots=True)
class Trade:
    id: str
    taker: Order
    fills: list[Fill]
    size: int
    price: int  # in the taker's token
    match_time: int
    status: str = "MATCHED"
    tx_hash: str = ""
    last_update: int = 0


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    last: float

    def take(self, n: float, now: float) -> float:
        """Spend n tokens; 0 if allowed, else seconds until they would be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate if self.rate > 0 else 1.0


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int
    path: str | None
    method: str | None
    apply: bool
    retry_after: float


@dataclass(slots=True)
class _Delay:
    remaining: int
    seconds: float
    path: str | None
    method: str | None


@dataclass(eq=False)
class _WsClient:
    conn: ServerConnection
    kind: str  # "market" | "user"
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    subscribed: bool = False
    assets: set[str] = field(default_factory=set)
    markets: set[str] | None = None  # user channel: None = all markets
    api_key: str | None = None
    custom: bool = False


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def _offset(cursor: str) -> int:
    try:
        return max(0, int(base64.b64decode(cursor).decode()))
    except Exception as exc:
        raise HttpError(400, "invalid next_cursor", "bad_request") from exc


def _tick_pips(tick_size: float | str) -> int:
    pips = to_pips(tick_size)
    if pips not in VALID_TICKS:
        raise ValueError(f"unsupported tick size {tick_size}")
    return pips


class ClobSim:
    """The simulated exchange. See the module docstring; constructor knobs are all test-tunable."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        chain_id: int = 137,
        heartbeat_timeout_s: float = 10.0,
        max_clock_skew_s: float = 30.0,
        order_rate: float = 40.0,
        order_burst: float = 60.0,
        cancel_rate: float = 80.0,
        cancel_burst: float = 120.0,
        page_size: int = 100,
        trade_confirm_delay_s: float | None = 0.05,
        gtd_threshold_s: float = 60.0,
        sweep_interval_s: float = 0.05,
        latency_s: float = 0.0,
        heartbeat_chain: bool = False,
        server_secret: bytes = b"polymm-clob-sim",
    ) -> None:
        self.host = host
        self.chain_id = chain_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_clock_skew_s = max_clock_skew_s
        self.order_rate, self.order_burst = order_rate, order_burst
        self.cancel_rate, self.cancel_burst = cancel_rate, cancel_burst
        self.page_size = page_size
        self.trade_confirm_delay_s = trade_confirm_delay_s
        self.gtd_threshold_s = gtd_threshold_s
        self.sweep_interval_s = sweep_interval_s
        self.latency_s = latency_s
        # Strict chaining (unverified against production): each heartbeat must echo the id returned
        # by the previous one, else 400 {"error", "heartbeat_id": expected} and it doesn't count.
        self.heartbeat_chain = heartbeat_chain
        self._heartbeat_ids: dict[str, str] = {}
        self._server_secret = server_secret
        self._http = HttpServer(self._handle, host, port)
        self._ws_port_cfg = ws_port
        self._ws: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Future[None]] = set()  # fire-and-forget closes, kept alive until done

        self.markets: dict[str, Market] = {}  # condition id -> market
        self._token_market: dict[str, Market] = {}
        self.keys: dict[str, ApiKey] = {}  # api key -> creds
        self.orders: dict[str, Order] = {}  # every order ever accepted, by id
        self._live: dict[str, Order] = {}  # the resting ones
        self.trades: dict[str, Trade] = {}
        self._heartbeats: dict[str, float] = {}  # api key -> monotonic time of the last heartbeat
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._fail_trades = 0
        self._ws_clients: set[_WsClient] = set()
        self.counters: Counter[str] = Counter()
        self.request_log: list[tuple[int, str, str]] | None = None  # set to [] to record arrivals
        self.answer_log: list[tuple[int, str, str]] | None = None  # set to [] to record answers
        self.order_log: list[tuple[int, dict[str, Any]]] | None = None  # [] records owned-order events
        self.rejects: Counter[str] = Counter()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_port(self) -> int:
        assert self._ws is not None, "not started"
        return self._ws.sockets[0].getsockname()[1]  # type: ignore[no-any-return]

    @property
    def ws_url(self) -> str:
        """Base for `<ws_url>/ws/market` and `<ws_url>/ws/user`."""
        return f"ws://{self.host}:{self.ws_port}"

    async def start(self) -> ClobSim:
        self._loop = asyncio.get_running_loop()
        await self._http.start()
        self._ws = await serve(self._ws_handler, self.host, self._ws_port_cfg, ping_interval=None)
        self._tasks.append(asyncio.create_task(self._sweeper(), name="clob-sim-sweeper"))
        log.info("clob sim on %s, ws %s", self.url, self.ws_url)
        return self

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self._http.stop()
        if self._ws is not None:
            self._ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 2)
            self._ws = None

    async def __aenter__(self) -> ClobSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> ClobSim:
        """Run the sim on its own loop in a daemon thread, for synchronous callers."""
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            # finish what's left (connection handlers, timers' tasks) the way asyncio.run does
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="clob-sim", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the sim's loop thread (directly if we're already there or it isn't threaded)."""
        if self._thread is None or self._loop is None or threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(10)

    # -- configuration and test hooks --------------------------------------------------------------

    def add_market(
        self,
        condition_id: str,
        yes_token: str,
        no_token: str,
        tick_size: float = 0.01,
        neg_risk: bool = False,
        min_size: float = 5,
    ) -> None:
        def do() -> None:
            m = Market(
                condition_id,
                str(yes_token),
                str(no_token),
                _tick_pips(tick_size),
                neg_risk,
                to_micro(min_size),
                MarketBook(condition_id, str(yes_token), str(no_token)),
            )
            self.markets[condition_id] = m
            self._token_market[m.yes_token] = m
            self._token_market[m.no_token] = m

        self._call(do)

    def set_tick_size(self, token: str, tick_size: float) -> None:
        """Change a market's tick (both tokens) and announce it on the market channel."""

        def do() -> None:
            m = self._market_of(token)
            old, m.tick = m.tick, _tick_pips(tick_size)
            ts = self._now_ms()
            for asset in (m.yes_token, m.no_token):
                self._publish_market(
                    asset,
                    {
                        "event_type": "tick_size_change",
                        "asset_id": asset,
                        "market": m.condition_id,
                        "old_tick_size": fmt_price(old),
                        "new_tick_size": fmt_price(m.tick),
                        "timestamp": ts,
                    },
                )

        self._call(do)

    def add_external_order(self, token: str, side: str, price: float, size: float) -> str:
        """Anonymous resting liquidity (matches first if it crosses). Returns its order id."""
        return self._call(self._external, str(token), side.upper(), price, size, "GTC")

    def take(self, token: str, side: str, price: float, size: float) -> float:
        """An anonymous FAK taker: hits resting orders up to `price`; returns the size filled."""
        oid = self._call(self._external, str(token), side.upper(), price, size, "FAK")
        return self.orders[oid].matched / MICRO

    def cancel_external(self, order_id: str) -> bool:
        return self._call(
            lambda: self._cancel(self.orders[order_id], "external") if order_id in self.orders else False
        )

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        path: str | None = None,
        method: str | None = None,
        apply: bool = False,
        retry_after: float = 1.0,
    ) -> None:
        """Answer the next n matching requests with `status` ({"error": "injected ..."}).

        `apply=True` processes the request first (the order rests, the cancel happens) and still
        answers with the error: the "timed out but it went through" case to reconcile.
        """
        self._call(
            self._failures.append,
            _Failure(n, status, path, method.upper() if method else None, apply, retry_after),
        )

    def delay_next(
        self, n: int = 1, seconds: float = 0.1, *, path: str | None = None, method: str | None = None
    ) -> None:
        """Hold the next n matching requests `seconds` before handling them (a slow venue: a
        delayed cancel leaves its orders resting that long). Other connections go on meanwhile."""
        self._call(self._delays.append, _Delay(n, seconds, path, method.upper() if method else None))

    def fail_next_trades(self, n: int = 1) -> None:
        """The next n trades go MATCHED -> FAILED instead of MINED -> CONFIRMED."""

        def do() -> None:
            self._fail_trades += n

        self._call(do)

    def drop_ws(self) -> None:
        """Close every WebSocket connection (both channels)."""

        def do() -> None:
            for c in list(self._ws_clients):
                task = asyncio.ensure_future(c.conn.close(1012, "sim drop"))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)

        self._call(do)

    def drop_http(self) -> None:
        """Close every open HTTP keep-alive connection."""
        self._call(self._http.drop_connections)

    def creds_for(self, address: str, nonce: int = 0) -> ApiKey:
        """The credentials /auth/derive-api-key would return (registers them), to skip L1 in tests."""

        def do() -> ApiKey:
            k = derive_api_key(self._server_secret, address, nonce)
            self.keys[k.key] = k
            return k

        return self._call(do)

    def orders_of(self, api_key: str, live_only: bool = True) -> list[dict[str, Any]]:
        """Orders of an API key as /data/orders shows them (all statuses if not live_only)."""

        def do() -> list[dict[str, Any]]:
            return [
                self._order_json(o)
                for o in self.orders.values()
                if o.owner == api_key and (o.status == "LIVE" or not live_only)
            ]

        return self._call(do)

    def book(self, token: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids best first, asks best first) of a token as floats."""

        def do() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
            bids, asks = self._market_of(token).book.view(str(token))
            return [(p / PIPS, s / MICRO) for p, s in bids], [(p / PIPS, s / MICRO) for p, s in asks]

        return self._call(do)

    def trades_of(self, api_key: str) -> list[dict[str, Any]]:
        return self._call(
            lambda: [self._trade_json(t, api_key) for t in self.trades.values() if self._involves(t, api_key)]
        )

    # -- HTTP dispatch -----------------------------------------------------------------------------

    async def _handle(self, req: Request) -> Response:
        self.counters["http_requests"] += 1
        if self.request_log is not None:  # benchmarks: when did each request reach the venue
            self.request_log.append((time.time_ns(), req.method, req.path))
        delay = self.latency_s + self._take_delay(req)
        if delay:
            await asyncio.sleep(delay)
        response = self._respond(req)
        if self.answer_log is not None:  # tests: when did the venue answer (e.g. confirm a cancel)
            self.answer_log.append((time.time_ns(), req.method, req.path))
        return response

    def _respond(self, req: Request) -> Response:
        failure = self._take_failure(req)
        if failure is not None and not failure.apply:
            return self._failure_response(failure)
        try:
            status, body, headers = self._route(req)
        except HttpError as exc:
            if exc.reason:
                self.rejects[exc.reason] += 1
            status, body, headers = exc.status, {"error": exc.message}, exc.headers
        if failure is not None:
            return self._failure_response(failure)
        return Response(status, _dumps(body), headers)

    def _take_delay(self, req: Request) -> float:
        for d in self._delays:
            if (d.path is None or req.path == d.path) and (d.method is None or req.method == d.method):
                d.remaining -= 1
                if d.remaining <= 0:
                    self._delays.remove(d)
                return d.seconds
        return 0.0

    def _take_failure(self, req: Request) -> _Failure | None:
        for f in self._failures:
            if (f.path is None or req.path == f.path) and (f.method is None or req.method == f.method):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._failures.remove(f)
                self.rejects["injected"] += 1
                return f
        return None

    @staticmethod
    def _failure_response(f: _Failure) -> Response:
        headers = {"Retry-After": str(math.ceil(f.retry_after))} if f.status == 429 else {}
        return Response(f.status, _dumps({"error": f"injected error {f.status}"}), headers)

    def _route(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        handler = self._routes.get((req.method, req.path))
        if handler is None:
            for (method, prefix), h in self._prefix_routes.items():
                if req.method == method and req.path.startswith(prefix) and len(req.path) > len(prefix):
                    handler = h
                    break
        if handler is None:
            raise HttpError(404, f"not found: {req.method} {req.path}")
        out = handler(self, req)
        if isinstance(out, tuple):
            return out
        return 200, out, {}

    # -- auth helpers ------------------------------------------------------------------------------

    def _check_ts(self, ts: str) -> None:
        try:
            skew = abs(int(ts) - time.time())
        except ValueError as exc:
            raise HttpError(401, "Unauthorized/Invalid timestamp", "stale_timestamp") from exc
        if skew > self.max_clock_skew_s:
            raise HttpError(401, "Unauthorized/Invalid timestamp", "stale_timestamp")

    def _l1(self, req: Request) -> tuple[str, int]:
        h = req.headers
        try:
            address, sig, ts, nonce = (
                h["poly_address"],
                h["poly_signature"],
                h["poly_timestamp"],
                int(h.get("poly_nonce") or 0),
            )
        except (KeyError, ValueError) as exc:
            raise HttpError(401, "Invalid L1 Request headers", "l1_auth") from exc
        self._check_ts(ts)
        try:
            return verify_l1(self.chain_id, address, sig, ts, nonce), nonce
        except AuthError as exc:
            raise HttpError(401, "Invalid L1 Request headers", "l1_auth") from exc

    def _l2(self, req: Request) -> ApiKey:
        h = req.headers
        key = self.keys.get(h.get("poly_api_key", ""))
        if (
            key is None
            or h.get("poly_passphrase") != key.passphrase
            or h.get("poly_address", "").lower() != key.address.lower()
        ):
            raise HttpError(401, "Unauthorized/Invalid api key", "l2_auth")
        ts = h.get("poly_timestamp", "")
        self._check_ts(ts)
        body = req.body.decode("utf-8", "replace")
        if not verify_hmac(key.secret, h.get("poly_signature", ""), ts, req.method, req.path, body):
            raise HttpError(401, "Unauthorized/Invalid api key", "l2_auth")
        return key

    def _rate(self, key: ApiKey, kind: str, cost: float) -> None:
        rate, burst = (
            (self.order_rate, self.order_burst) if kind == "order" else (self.cancel_rate, self.cancel_burst)
        )
        now = time.monotonic()
        b = self._buckets.get((key.address, kind))
        if b is None:
            b = self._buckets[(key.address, kind)] = _Bucket(rate, burst, burst, now)
        wait = b.take(cost, now)
        if wait > 0:
            raise HttpError(
                429,
                "Too Many Requests",
                "rate_limited",
                {"Retry-After": str(max(1, math.ceil(wait))), "Poly-RateLimit-Remaining": "0"},
            )

    @staticmethod
    def _json(req: Request) -> Any:
        if not req.body:
            return None
        try:
            return json.loads(req.body)
        except ValueError as exc:
            raise HttpError(400, "Invalid JSON body", "bad_request") from exc

    def _market_of(self, token: str) -> Market:
        m = self._token_market.get(str(token))
        if m is None:
            raise HttpError(404, "No orderbook exists for the requested token id", "unknown_token")
        return m

    def _token_q(self, req: Request) -> Market:
        token = req.query.get("token_id", "")
        if not token:
            raise HttpError(400, "Invalid payload: token_id required", "bad_request")
        return self._market_of(token)

    # -- public endpoints --------------------------------------------------------------------------

    def _h_ok(self, req: Request) -> Any:
        return "OK"

    def _h_time(self, req: Request) -> Any:
        return int(time.time())

    def _h_version(self, req: Request) -> Any:
        return {"version": 2}

    def _h_tick(self, req: Request) -> Any:
        return {"minimum_tick_size": self._token_q(req).tick / PIPS}

    def _h_neg_risk(self, req: Request) -> Any:
        return {"neg_risk": self._token_q(req).neg_risk}

    def _h_fee_rate(self, req: Request) -> Any:
        self._token_q(req)
        return {"base_fee": 0}

    def _h_book(self, req: Request) -> Any:
        m = self._token_q(req)
        return self._book_json(m, req.query["token_id"])

    def _h_books(self, req: Request) -> Any:
        items = self._json(req) or []
        return [self._book_json(self._market_of(str(i["token_id"])), str(i["token_id"])) for i in items]

    def _best(self, m: Market, token: str) -> tuple[int | None, int | None]:
        bids, asks = m.book.view(token)
        return (bids[0][0] if bids else None), (asks[0][0] if asks else None)

    def _h_midpoint(self, req: Request) -> Any:
        m = self._token_q(req)
        bid, ask = self._best(m, req.query["token_id"])
        if bid is None or ask is None:
            raise HttpError(404, "No orderbook exists for the requested token id")
        return {"mid": fmt_price((bid + ask) // 2) if (bid + ask) % 2 == 0 else str((bid + ask) / 2 / PIPS)}

    def _h_price(self, req: Request) -> Any:
        m = self._token_q(req)
        bid, ask = self._best(m, req.query["token_id"])
        # side=BUY asks "what would I pay" (best ask), like the real endpoint
        p = ask if req.query.get("side", "BUY").upper() == "BUY" else bid
        if p is None:
            raise HttpError(404, "No orderbook exists for the requested token id")
        return {"price": fmt_price(p)}

    def _h_spread(self, req: Request) -> Any:
        m = self._token_q(req)
        bid, ask = self._best(m, req.query["token_id"])
        return {"spread": fmt_price(ask - bid) if bid is not None and ask is not None else "0"}

    def _h_last_trade(self, req: Request) -> Any:
        m = self._token_q(req)
        token = req.query["token_id"]
        if m.last_trade is None:
            return {"price": "0.5", "side": ""}
        p, side = m.last_trade
        if token == m.no_token:
            p, side = PIPS - p, ("SELL" if side == "BUY" else "BUY")
        return {"price": fmt_price(p), "side": side}

    def _h_market_by_token(self, req: Request) -> Any:
        m = self._market_of(req.path.rsplit("/", 1)[1])
        return {
            "condition_id": m.condition_id,
            "primary_token_id": m.yes_token,
            "secondary_token_id": m.no_token,
        }

    def _h_clob_market(self, req: Request) -> Any:
        m = self.markets.get(req.path.rsplit("/", 1)[1])
        if m is None:
            raise HttpError(404, "market not found")
        return {
            "c": m.condition_id,
            "t": [{"t": m.yes_token, "o": "Yes"}, {"t": m.no_token, "o": "No"}],
            "mts": m.tick / PIPS,
            "mos": m.min_size / MICRO,
            "nr": m.neg_risk,
            "fd": {"r": 0.0, "e": 0.0},
        }

    def _h_market(self, req: Request) -> Any:
        m = self.markets.get(req.path.rsplit("/", 1)[1])
        if m is None:
            raise HttpError(404, "market not found")
        return self._market_json(m)

    def _h_markets(self, req: Request) -> Any:
        data = [self._market_json(m) for m in self.markets.values()]
        return {"data": data, "next_cursor": END_CURSOR, "limit": len(data), "count": len(data)}

    def _market_json(self, m: Market) -> dict[str, Any]:
        return {
            "condition_id": m.condition_id,
            "active": True,
            "closed": False,
            "accepting_orders": True,
            "enable_order_book": True,
            "minimum_order_size": m.min_size / MICRO,
            "minimum_tick_size": m.tick / PIPS,
            "neg_risk": m.neg_risk,
            "tokens": [
                {"token_id": m.yes_token, "outcome": "Yes"},
                {"token_id": m.no_token, "outcome": "No"},
            ],
        }

    # -- auth endpoints ----------------------------------------------------------------------------

    def _h_create_key(self, req: Request) -> Any:
        address, nonce = self._l1(req)
        k = derive_api_key(self._server_secret, address, nonce)
        if k.key in self.keys:
            # The real endpoint refuses to create a key that exists for this nonce; clients then derive.
            raise HttpError(400, "Could not create api key", "key_exists")
        self.keys[k.key] = k
        self.counters["api_keys_created"] += 1
        return {"apiKey": k.key, "secret": k.secret, "passphrase": k.passphrase}

    def _h_derive_key(self, req: Request) -> Any:
        address, nonce = self._l1(req)
        k = derive_api_key(self._server_secret, address, nonce)
        self.keys[k.key] = k
        self.counters["api_keys_derived"] += 1
        return {"apiKey": k.key, "secret": k.secret, "passphrase": k.passphrase}

    def _h_api_keys(self, req: Request) -> Any:
        key = self._l2(req)
        return {"apiKeys": [k.key for k in self.keys.values() if k.address == key.address]}

    def _h_delete_key(self, req: Request) -> Any:
        key = self._l2(req)
        self._cancel_where(lambda o: o.owner == key.key, "key_deleted")
        self.keys.pop(key.key, None)
        return "OK"

    def _h_closed_only(self, req: Request) -> Any:
        self._l2(req)
        return {"closed_only": False}

    def _h_balance(self, req: Request) -> Any:
        self._l2(req)
        big = str(10**15)
        return {
            "balance": str(1_000_000 * MICRO),
            "allowances": {EXCHANGE_V2: big, NEG_RISK_EXCHANGE_V2: big},
        }

    def _h_balance_update(self, req: Request) -> Any:
        self._l2(req)
        return {}

    def _h_scoring(self, req: Request) -> Any:
        self._l2(req)
        return {"scoring": False}

    def _h_scorings(self, req: Request) -> Any:
        self._l2(req)
        return {oid: False for oid in (self._json(req) or [])}

    def _h_heartbeat(self, req: Request) -> Any:
        key = self._l2(req)
        body = self._json(req) or {}
        sent = str(body.get("heartbeat_id") or "") if isinstance(body, dict) else ""
        expected = self._heartbeat_ids.get(key.key)
        if self.heartbeat_chain and expected is not None and sent != expected:
            self.rejects["heartbeat_id"] += 1
            return 400, {"error": "Invalid heartbeat id", "heartbeat_id": expected}, {}
        self._heartbeats[key.key] = time.monotonic()
        self._heartbeat_ids[key.key] = new_id = uuid.uuid4().hex
        self.counters["heartbeats"] += 1
        return {"status": "ok", "heartbeat_id": new_id}

    # -- orders ------------------------------------------------------------------------------------

    def _h_post_order(self, req: Request) -> Any:
        key = self._l2(req)
        payload = self._json(req)
        if not isinstance(payload, dict):
            raise HttpError(400, "Invalid order payload", "bad_request")
        self._rate(key, "order", 1)
        try:
            return self._place(key, payload)
        except OrderRejectedError as exc:
            raise HttpError(400, exc.message, exc.reason) from exc

    def _h_post_orders(self, req: Request) -> Any:
        key = self._l2(req)
        payload = self._json(req)
        if not isinstance(payload, list) or not payload:
            raise HttpError(400, "Invalid orders payload", "bad_request")
        if len(payload) > MAX_BATCH:
            raise HttpError(400, f"Too many orders in payload, max allowed is {MAX_BATCH}", "batch_too_large")
        self._rate(key, "order", len(payload))
        out = []
        for item in payload:
            try:
                if not isinstance(item, dict):
                    raise OrderRejectedError("Invalid order payload", "bad_request")
                out.append(self._place(key, item))
            except OrderRejectedError as exc:
                self.rejects[exc.reason] += 1
                out.append(
                    {
                        "success": False,
                        "errorMsg": exc.message,
                        "orderID": "",
                        "status": "",
                        "takingAmount": "",
                        "makingAmount": "",
                        "tradeIDs": [],
                        "transactionsHashes": [],
                    }
                )
        return out

    def _place(self, key: ApiKey, payload: dict[str, Any]) -> dict[str, Any]:
        self.counters["orders_posted"] += 1
        raw = payload.get("order")
        if not isinstance(raw, dict):
            raise OrderRejectedError("Invalid order payload", "bad_request")
        if any(f in raw for f in V1_ONLY_FIELDS) or "timestamp" not in raw:
            raise OrderRejectedError("order_version_mismatch", "version_mismatch")
        if payload.get("owner") != key.key:
            raise OrderRejectedError("the order owner has to be the owner of the API KEY", "owner")
        order_type = str(payload.get("orderType") or "GTC").upper()
        if order_type not in ORDER_TYPES:
            raise OrderRejectedError(f"invalid order type {order_type}", "bad_request")
        post_only = bool(payload.get("postOnly"))
        if post_only and order_type not in ("GTC", "GTD"):
            raise OrderRejectedError("post-only is only allowed for GTC and GTD orders", "bad_request")
        m = self._token_market.get(str(raw.get("tokenId")))
        if m is None:
            raise OrderRejectedError("Invalid token id", "unknown_token")
        try:
            so = parse_v2_order(raw, self.chain_id, m.neg_risk)
        except AuthError as exc:
            raise OrderRejectedError(f"invalid signature: {exc}", "signature") from exc
        except ValueError as exc:
            raise OrderRejectedError(str(exc), "bad_request") from exc
        # Who may sign: EOA orders are the key's own wallet; proxy/safe orders are signed by the
        # key's EOA for the funder; POLY_1271 carries the funder as signer, the EOA signs inside.
        if so.recovered.lower() != key.address.lower() or (so.signature_type == 0 and so.maker != so.signer):
            raise OrderRejectedError("invalid signature: signer is not the API key's address", "signature")
        oid = so.order_hash
        if oid in self.orders:
            raise OrderRejectedError(f"order {oid} is invalid. Duplicated.", "duplicated")
        if so.maker_amount <= 0 or so.taker_amount <= 0:
            raise OrderRejectedError(f"order {oid} is invalid. Amounts must be positive", "bad_request")

        if so.side == "BUY":
            ratio, size = Fraction(so.maker_amount, so.taker_amount), so.taker_amount
        else:
            ratio, size = Fraction(so.taker_amount, so.maker_amount), so.maker_amount
        exact = ratio * PIPS
        market_order = order_type in ("FOK", "FAK")
        if market_order:
            # Market orders carry amounts rounded at amount precision; the ratio is only ~the price.
            price = max(1, min(PIPS - 1, round(exact)))
        else:
            if exact.denominator != 1 or int(exact) % m.tick:
                raise OrderRejectedError(
                    f"order {oid} is invalid. Price ({float(ratio)}) breaks minimum tick size rule: "
                    f"{fmt_price(m.tick)}",
                    "tick_size",
                )
            price = int(exact)
            if not m.tick <= price <= PIPS - m.tick:
                raise OrderRejectedError(
                    f"order {oid} is invalid. Price ({fmt_price(price)}) out of range "
                    f"[{fmt_price(m.tick)}, {fmt_price(PIPS - m.tick)}]",
                    "tick_size",
                )
            if size < m.min_size:
                raise OrderRejectedError(
                    f"order {oid} is invalid. Size ({fmt_size(size)}) lower than the minimum: "
                    f"{fmt_size(m.min_size)}",
                    "min_size",
                )
        now = time.time()
        if order_type == "GTD" and so.expiration <= now + self.gtd_threshold_s:
            raise OrderRejectedError(
                f"order {oid} is invalid. The order expiration date must be after now + "
                f"{int(self.gtd_threshold_s)}s",
                "expiration",
            )
        c_side, c_price = m.book.canonical(so.token_id, so.side, price)
        if post_only and m.book.crosses(c_side, c_price):
            raise OrderRejectedError("invalid post-only order: order crosses book", "post_only_cross")
        if order_type == "FOK" and m.book.fillable(c_side, c_price) < size:
            raise OrderRejectedError(
                f"order {oid} couldn't be fully filled. FOK orders are fully filled or killed.",
                "fok_not_filled",
            )
        if order_type == "FAK" and not m.book.crosses(c_side, c_price):
            raise OrderRejectedError(
                "no orders found to match with FAK order. FAK orders are partially filled or killed "
                "if no match is found.",
                "fak_no_match",
            )
        order = Order(
            id=oid,
            owner=key.key,
            maker_address=so.maker,
            market=m.condition_id,
            asset_id=so.token_id,
            outcome="Yes" if so.token_id == m.yes_token else "No",
            side=so.side,
            price=price,
            original=size,
            order_type=order_type,
            expiration=so.expiration,
            created_at=now,
            c_side=c_side,
            c_price=c_price,
        )
        self.counters["orders_accepted"] += 1
        trade = self._submit(m, order)
        status = "matched" if order.matched else "live"
        taking = making = ""
        if trade is not None:
            shares = trade.size
            usdc = sum(f.size * m.book.own_price(order.asset_id, f.c_price) for f in trade.fills) // PIPS
            taking, making = (
                (fmt_size(shares), fmt_size(usdc))
                if order.side == "BUY"
                else (fmt_size(usdc), fmt_size(shares))
            )
        return {
            "success": True,
            "errorMsg": "",
            "orderID": oid,
            "status": status,
            "takingAmount": taking,
            "makingAmount": making,
            "tradeIDs": [trade.id] if trade else [],
            "transactionsHashes": [trade.tx_hash] if trade else [],
        }

    def _external(self, token: str, side: str, price: float, size: float, order_type: str) -> str:
        m = self._market_of(token)
        p = to_pips(price)
        c_side, c_price = m.book.canonical(token, side, p)
        order = Order(
            id="0x" + uuid.uuid4().hex + uuid.uuid4().hex,
            owner=None,
            maker_address="0x" + "00" * 20,
            market=m.condition_id,
            asset_id=token,
            outcome="Yes" if token == m.yes_token else "No",
            side=side,
            price=p,
            original=to_micro(size),
            order_type=order_type,
            expiration=0,
            created_at=time.time(),
            c_side=c_side,
            c_price=c_price,
        )
        self._submit(m, order)
        return order.id

    def _submit(self, m: Market, order: Order) -> Trade | None:
        """Match `order`, rest what's left if it's a resting type, and publish everything."""
        self.orders[order.id] = order
        before = m.book.best()
        fills = m.book.match(order.c_side, order.c_price, order.remaining)
        order.matched = sum(f.size for f in fills)
        touched: set[tuple[str, int]] = {
            ("SELL" if order.c_side == "BUY" else "BUY", f.c_price) for f in fills
        }
        rests = order.order_type in ("GTC", "GTD") and order.remaining > 0
        if rests:
            m.book.rest(order)
            touched.add((order.c_side, order.c_price))
        # FOK/FAK: what filled stays filled (MATCHED), the rest is killed
        order.status = "LIVE" if rests else ("MATCHED" if order.matched else "CANCELED")
        if rests:
            self._live[order.id] = order
        for f in fills:
            if f.maker.remaining == 0:
                self._live.pop(f.maker.id, None)

        trade = None
        if fills:
            trade = self._record_trade(m, order, fills)
        # order events before trade events, so a maker sees PLACEMENT of its own order first
        if order.owner is not None:
            self._publish_order(order, "PLACEMENT")
        if trade is not None:
            for f in fills:
                if f.maker.owner is not None:
                    self._publish_order(f.maker, "UPDATE")
            self._publish_trade(trade)
            self._publish_last_trade(m, trade)
        self._publish_levels(m, touched, before)
        return trade

    def _record_trade(self, m: Market, taker: Order, fills: list[Fill]) -> Trade:
        tid = str(uuid.uuid4())
        size = sum(f.size for f in fills)
        # The trade's price is the worst level reached, in the taker's token (one level in practice).
        price = m.book.own_price(taker.asset_id, fills[-1].c_price)
        trade = Trade(
            id=tid,
            taker=taker,
            fills=fills,
            size=size,
            price=price,
            match_time=int(time.time()),
            tx_hash="0x" + hashlib.sha256(tid.encode()).hexdigest(),
            last_update=int(time.time()),
        )
        self.trades[tid] = trade
        taker.trades.append(tid)
        for f in fills:
            f.maker.trades.append(tid)
        m.last_trade = (fills[-1].c_price, taker.c_side)
        self.counters["trades"] += 1
        if self._fail_trades > 0:
            self._fail_trades -= 1
            self._later(self.trade_confirm_delay_s or 0.05, self._advance_trade, trade, "FAILED")
        elif self.trade_confirm_delay_s is not None:
            self._later(self.trade_confirm_delay_s, self._advance_trade, trade, "MINED")
            self._later(2 * self.trade_confirm_delay_s, self._advance_trade, trade, "CONFIRMED")
        return trade

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            self._loop.call_later(delay, fn, *args)

    def _advance_trade(self, trade: Trade, status: str) -> None:
        if trade.status in ("FAILED", "CONFIRMED"):
            return
        trade.status = status
        trade.last_update = int(time.time())
        self._publish_trade(trade)

    # -- cancels -----------------------------------------------------------------------------------

    def _cancel(self, order: Order, why: str) -> bool:
        if order.status != "LIVE":
            return False
        m = self.markets[order.market]
        before = m.book.best()
        m.book.remove(order)
        self._live.pop(order.id, None)
        order.status = "CANCELED"
        self.counters["orders_canceled"] += 1
        self.counters[f"canceled_by_{why}"] += 1
        if order.owner is not None:
            self._publish_order(order, "CANCELLATION")
        self._publish_levels(m, {(order.c_side, order.c_price)}, before)
        return True

    def _cancel_where(self, pred: Callable[[Order], bool], why: str) -> list[str]:
        return [o.id for o in list(self._live.values()) if pred(o) and self._cancel(o, why)]

    def _cancel_ids(self, key: ApiKey, ids: list[str]) -> dict[str, Any]:
        canceled: list[str] = []
        not_canceled: dict[str, str] = {}
        for oid in ids:
            o = self.orders.get(oid)
            if o is None or o.owner != key.key:
                not_canceled[oid] = "Order not found or already canceled"
            elif o.status == "MATCHED":
                not_canceled[oid] = "Order already matched"
            elif o.status != "LIVE" or not self._cancel(o, "request"):
                not_canceled[oid] = "Order not found or already canceled"
            else:
                canceled.append(oid)
        return {"canceled": canceled, "not_canceled": not_canceled}

    def _h_cancel(self, req: Request) -> Any:
        key = self._l2(req)
        body = self._json(req)
        if not isinstance(body, dict) or not body.get("orderID"):
            raise HttpError(400, "Invalid payload: orderID required", "bad_request")
        self._rate(key, "cancel", 1)
        self.counters["cancel_requests"] += 1
        return self._cancel_ids(key, [str(body["orderID"])])

    def _h_cancel_orders(self, req: Request) -> Any:
        key = self._l2(req)
        body = self._json(req)
        if not isinstance(body, list):
            raise HttpError(400, "Invalid payload: list of order ids required", "bad_request")
        if len(body) > MAX_CANCEL_BATCH:
            raise HttpError(400, f"Too many order ids, max allowed is {MAX_CANCEL_BATCH}", "batch_too_large")
        self._rate(key, "cancel", max(1, len(body)))
        self.counters["cancel_requests"] += 1
        return self._cancel_ids(key, [str(i) for i in body])

    def _h_cancel_all(self, req: Request) -> Any:
        key = self._l2(req)
        n = sum(1 for o in self._live.values() if o.owner == key.key)
        self._rate(key, "cancel", 1 + n)
        self.counters["cancel_requests"] += 1
        return {"canceled": self._cancel_where(lambda o: o.owner == key.key, "request"), "not_canceled": {}}

    def _h_cancel_market(self, req: Request) -> Any:
        key = self._l2(req)
        body = self._json(req) or {}
        market, asset = body.get("market") or None, body.get("asset_id") or None

        def pred(o: Order) -> bool:
            return (
                o.owner == key.key
                and (market is None or o.market == market)
                and (asset is None or o.asset_id == asset)
            )

        n = sum(1 for o in self._live.values() if pred(o))
        self._rate(key, "cancel", 1 + n)
        self.counters["cancel_requests"] += 1
        return {"canceled": self._cancel_where(pred, "request"), "not_canceled": {}}

    # -- queries -----------------------------------------------------------------------------------

    def _page(self, items: list[dict[str, Any]], cursor: str) -> dict[str, Any]:
        if cursor == END_CURSOR:
            return {"data": [], "next_cursor": END_CURSOR, "limit": self.page_size, "count": 0}
        start = _offset(cursor or INITIAL_CURSOR)
        page = items[start : start + self.page_size]
        nxt = start + self.page_size
        return {
            "data": page,
            "next_cursor": _cursor(nxt) if nxt < len(items) else END_CURSOR,
            "limit": self.page_size,
            "count": len(page),
        }

    def _h_orders(self, req: Request) -> Any:
        key = self._l2(req)
        q = req.query
        items = [
            self._order_json(o)
            for o in sorted(self._live.values(), key=lambda o: o.seq)
            if o.owner == key.key
            and (not q.get("market") or o.market == q["market"])
            and (not q.get("asset_id") or o.asset_id == q["asset_id"])
            and (not q.get("id") or o.id == q["id"])
        ]
        return self._page(items, q.get("next_cursor", INITIAL_CURSOR))

    def _h_order(self, req: Request) -> Any:
        key = self._l2(req)
        o = self.orders.get(req.path.rsplit("/", 1)[1])
        if o is None or o.owner != key.key:
            raise HttpError(404, "order not found", "not_found")
        return self._order_json(o)

    def _involves(self, t: Trade, api_key: str) -> bool:
        return t.taker.owner == api_key or any(f.maker.owner == api_key for f in t.fills)

    def _h_trades(self, req: Request) -> Any:
        key = self._l2(req)
        q = req.query
        items = [
            self._trade_json(t, key.key)
            for t in self.trades.values()
            if self._involves(t, key.key)
            and (not q.get("id") or t.id == q["id"])
            and (not q.get("market") or t.taker.market == q["market"])
            and (not q.get("asset_id") or t.taker.asset_id == q["asset_id"])
            and (not q.get("after") or t.match_time > int(q["after"]))
            and (not q.get("before") or t.match_time < int(q["before"]))
        ]
        return self._page(items, q.get("next_cursor", INITIAL_CURSOR))

    # -- JSON shapes -------------------------------------------------------------------------------

    def _order_json(self, o: Order) -> dict[str, Any]:
        return {
            "id": o.id,
            "status": o.status,
            "owner": o.owner or "",
            "maker_address": o.maker_address,
            "market": o.market,
            "asset_id": o.asset_id,
            "side": o.side,
            "original_size": fmt_size(o.original),
            "size_matched": fmt_size(o.matched),
            "price": fmt_price(o.price),
            "outcome": o.outcome,
            "expiration": str(o.expiration),
            "order_type": o.order_type,
            "associate_trades": list(o.trades),
            "created_at": int(o.created_at),
        }

    def _trade_json(self, t: Trade, viewer: str | None) -> dict[str, Any]:
        taker = t.taker
        m = self.markets[taker.market]
        return {
            "id": t.id,
            "taker_order_id": taker.id,
            "market": taker.market,
            "asset_id": taker.asset_id,
            "side": taker.side,
            "size": fmt_size(t.size),
            "fee_rate_bps": "0",
            "price": fmt_price(t.price),
            "status": t.status,
            "match_time": str(t.match_time),
            "last_update": str(t.last_update),
            "outcome": taker.outcome,
            "bucket_index": 0,
            "owner": taker.owner or "",
            "maker_address": taker.maker_address,
            "transaction_hash": t.tx_hash,
            "trader_side": "TAKER" if viewer is not None and taker.owner == viewer else "MAKER",
            "maker_orders": [
                {
                    "order_id": f.maker.id,
                    "owner": f.maker.owner or "",
                    "maker_address": f.maker.maker_address,
                    "matched_amount": fmt_size(f.size),
                    "price": fmt_price(m.book.own_price(f.maker.asset_id, f.c_price)),
                    "fee_rate_bps": "0",
                    "asset_id": f.maker.asset_id,
                    "outcome": f.maker.outcome,
                    "side": f.maker.side,
                }
                for f in t.fills
            ],
        }

    def _book_json(self, m: Market, token: str) -> dict[str, Any]:
        bids, asks = m.book.view(token)
        last = "0.5"
        if m.last_trade is not None:
            last = fmt_price(m.book.own_price(token, m.last_trade[0]))
        book = {
            "market": m.condition_id,
            "asset_id": token,
            "timestamp": self._now_ms(),
            "hash": "",
            # like the real /book: bids ascending, asks descending (best last)
            "bids": [{"price": fmt_price(p), "size": fmt_size(s)} for p, s in reversed(bids)],
            "asks": [{"price": fmt_price(p), "size": fmt_size(s)} for p, s in reversed(asks)],
            "min_order_size": fmt_size(m.min_size),
            "tick_size": fmt_price(m.tick),
            "neg_risk": m.neg_risk,
            "last_trade_price": last,
        }
        book["hash"] = hashlib.sha1(json.dumps(book, separators=(",", ":")).encode()).hexdigest()
        return book

    @staticmethod
    def _now_ms() -> str:
        return str(int(time.time() * 1000))

    # -- background: dead-man switch, GTD expiry ---------------------------------------------------

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                self._sweep()
            except Exception:
                log.exception("sweep failed")

    def _sweep(self) -> None:
        mono, now = time.monotonic(), time.time()
        # Once a key has sent a heartbeat it stays armed: with none for heartbeat_timeout_s, all its
        # orders go, including ones placed later, until heartbeats resume.
        for api_key, last in self._heartbeats.items():
            if mono - last > self.heartbeat_timeout_s:
                gone = self._cancel_where(lambda o, k=api_key: o.owner == k, "heartbeat")
                if gone:
                    self.counters["deadman_fired"] += 1
                    log.info("dead-man switch: cancelled %d orders of %s", len(gone), api_key)
        self._cancel_where(
            lambda o: o.order_type == "GTD" and o.expiration - self.gtd_threshold_s <= now, "expiration"
        )

    # -- WebSocket ---------------------------------------------------------------------------------

    async def _ws_handler(self, conn: ServerConnection) -> None:
        path = (conn.request.path if conn.request else "").split("?")[0].rstrip("/")
        if path not in ("/ws/market", "/ws/user"):
            await conn.close(1008, "unknown path")
            return
        client = _WsClient(conn, path.rsplit("/", 1)[1])
        self.counters[f"ws_{client.kind}_connections"] += 1
        sender = asyncio.create_task(self._ws_sender(client))
        try:
            async for raw in conn:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                if text.strip() == "PING":
                    client.queue.put_nowait("PONG")
                    continue
                try:
                    msg = json.loads(text)
                except ValueError:
                    client.queue.put_nowait("INVALID OPERATION")
                    continue
                if not isinstance(msg, dict):
                    client.queue.put_nowait("INVALID OPERATION")
                elif client.kind == "market":
                    self._ws_market_msg(client, msg)
                elif not self._ws_user_msg(client, msg):
                    await conn.close(1008, "invalid auth")
                    break
        except ConnectionClosed:
            pass
        finally:
            self._ws_clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _ws_sender(self, client: _WsClient) -> None:
        # One writer per connection keeps frames in the order they were published.
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.conn.send(await client.queue.get())

    def _ws_market_msg(self, client: _WsClient, msg: dict[str, Any]) -> None:
        assets = [str(a) for a in msg.get("assets_ids") or []]
        if not client.subscribed:
            if msg.get("type", "").lower() != "market":
                client.queue.put_nowait("INVALID OPERATION")
                return
            client.subscribed = True
            client.custom = bool(msg.get("custom_feature_enabled"))
            self._ws_clients.add(client)
            self._ws_subscribe_assets(client, assets)
            return
        op = msg.get("operation")
        if op == "subscribe":
            self._ws_subscribe_assets(client, assets)
        elif op == "unsubscribe":
            client.assets.difference_update(assets)
        else:
            client.queue.put_nowait("INVALID OPERATION")

    def _ws_subscribe_assets(self, client: _WsClient, assets: list[str]) -> None:
        client.assets.update(assets)
        books = []
        for a in assets:
            m = self._token_market.get(a)
            if m is not None:
                ev = self._book_json(m, a)
                books.append(
                    {
                        "event_type": "book",
                        **{k: ev[k] for k in ("asset_id", "market", "bids", "asks", "timestamp", "hash")},
                    }
                )
        if books:
            client.queue.put_nowait(json.dumps(books, separators=(",", ":")))

    def _ws_user_msg(self, client: _WsClient, msg: dict[str, Any]) -> bool:
        if not client.subscribed:
            auth = msg.get("auth") or {}
            key = self.keys.get(str(auth.get("apiKey", "")))
            if (
                msg.get("type", "").lower() != "user"
                or key is None
                or auth.get("secret") != key.secret
                or auth.get("passphrase") != key.passphrase
            ):
                self.rejects["ws_auth"] += 1
                return False
            client.subscribed = True
            client.api_key = key.key
            markets = msg.get("markets")
            client.markets = {str(x) for x in markets} if markets else None
            self._ws_clients.add(client)
            return True
        op = msg.get("operation")
        markets = {str(x) for x in msg.get("markets") or []}
        if op == "subscribe" and client.markets is not None:
            client.markets |= markets
        elif op == "unsubscribe":
            client.markets = (client.markets or set(self.markets)) - markets
        elif op not in ("subscribe", "unsubscribe"):
            client.queue.put_nowait("INVALID OPERATION")
        return True

    # -- publishing --------------------------------------------------------------------------------

    def _publish_market(self, asset: str, event: dict[str, Any]) -> None:
        text = ""
        for c in self._ws_clients:
            if c.kind == "market" and asset in c.assets:
                text = text or json.dumps(event, separators=(",", ":"))
                c.queue.put_nowait(text)

    def _publish_user(self, api_key: str | None, market: str, event: dict[str, Any]) -> None:
        if api_key is None:
            return
        text = ""
        for c in self._ws_clients:
            if c.kind == "user" and c.api_key == api_key and (c.markets is None or market in c.markets):
                text = text or json.dumps(event, separators=(",", ":"))
                c.queue.put_nowait(text)

    def _publish_order(self, o: Order, kind: str) -> None:
        ev = self._order_json(o)
        ev.update(
            event_type="order",
            type=kind,
            status=o.status,
            created_at=str(int(o.created_at)),
            timestamp=str(int(time.time())),
        )
        if self.order_log is not None:  # tests: replay exactly what rested when (exposure checks)
            self.order_log.append((time.time_ns(), dict(ev)))
        self._publish_user(o.owner, o.market, ev)

    def _publish_trade(self, t: Trade) -> None:
        owners = {t.taker.owner} | {f.maker.owner for f in t.fills}
        for owner in owners:
            if owner is None:
                continue
            ev = self._trade_json(t, owner)
            ev.update(event_type="trade", type="TRADE", timestamp=str(int(time.time())))
            self._publish_user(owner, t.taker.market, ev)

    def _publish_last_trade(self, m: Market, t: Trade) -> None:
        ts = self._now_ms()
        sides = {t.taker.asset_id: (t.price, t.taker.side)}
        for f in t.fills:
            if f.maker.asset_id != t.taker.asset_id and f.maker.asset_id not in sides:
                # A mint/merge match trades the other token too, on the maker's side of it.
                sides[f.maker.asset_id] = (
                    m.book.own_price(f.maker.asset_id, f.c_price),
                    "BUY" if f.maker.side == "SELL" else "SELL",
                )
        for asset, (price, side) in sides.items():
            self._publish_market(
                asset,
                {
                    "event_type": "last_trade_price",
                    "asset_id": asset,
                    "market": m.condition_id,
                    "price": fmt_price(price),
                    "size": fmt_size(t.size),
                    "side": side,
                    "fee_rate_bps": "0",
                    "timestamp": ts,
                },
            )

    def _publish_levels(
        self, m: Market, touched: set[tuple[str, int]], before: tuple[int | None, int | None]
    ) -> None:
        if not touched or not any(c.kind == "market" for c in self._ws_clients):
            return
        ts = self._now_ms()
        bid, ask = m.book.best()
        best = {
            m.yes_token: (bid, ask),
            m.no_token: (PIPS - ask if ask is not None else None, PIPS - bid if bid is not None else None),
        }
        digest = hashlib.sha1(f"{m.condition_id}{ts}{sorted(touched)}".encode()).hexdigest()
        changes: list[dict[str, Any]] = []
        for c_side, c_price in sorted(touched):
            size = fmt_size(m.book.level_total(c_side, c_price))
            for asset in (m.yes_token, m.no_token):
                side = c_side if asset == m.yes_token else ("SELL" if c_side == "BUY" else "BUY")
                bb, ba = best[asset]
                changes.append(
                    {
                        "asset_id": asset,
                        "price": fmt_price(m.book.own_price(asset, c_price)),
                        "size": size,
                        "side": side,
                        "hash": digest,
                        "best_bid": fmt_price(bb) if bb is not None else "0",
                        "best_ask": fmt_price(ba) if ba is not None else "1",
                    }
                )
        for c in self._ws_clients:
            if c.kind != "market":
                continue
            mine = [ch for ch in changes if ch["asset_id"] in c.assets]
            if mine:
                ev = {
                    "event_type": "price_change",
                    "market": m.condition_id,
                    "timestamp": ts,
                    "price_changes": mine,
                }
                c.queue.put_nowait(json.dumps(ev, separators=(",", ":")))
        if (bid, ask) != before:
            for asset in (m.yes_token, m.no_token):
                bb, ba = best[asset]
                ev = {
                    "event_type": "best_bid_ask",
                    "asset_id": asset,
                    "market": m.condition_id,
                    "best_bid": fmt_price(bb) if bb is not None else "0",
                    "best_ask": fmt_price(ba) if ba is not None else "1",
                    "spread": fmt_price(ba - bb) if bb is not None and ba is not None else "1",
                    "timestamp": ts,
                }
                text = json.dumps(ev, separators=(",", ":"))
                for c in self._ws_clients:
                    if c.kind == "market" and c.custom and asset in c.assets:
                        c.queue.put_nowait(text)

    # -- routing tables (built once; handlers take (self, request)) --------------------------------

    _routes: dict[tuple[str, str], Callable[[ClobSim, Request], Any]] = {
        ("GET", "/"): _h_ok,
        ("GET", "/ok"): _h_ok,
        ("GET", "/time"): _h_time,
        ("GET", "/version"): _h_version,
        ("GET", "/tick-size"): _h_tick,
        ("GET", "/neg-risk"): _h_neg_risk,
        ("GET", "/fee-rate"): _h_fee_rate,
        ("GET", "/book"): _h_book,
        ("POST", "/books"): _h_books,
        ("GET", "/midpoint"): _h_midpoint,
        ("GET", "/price"): _h_price,
        ("GET", "/spread"): _h_spread,
        ("GET", "/last-trade-price"): _h_last_trade,
        ("GET", "/markets"): _h_markets,
        ("POST", "/auth/api-key"): _h_create_key,
        ("GET", "/auth/derive-api-key"): _h_derive_key,
        ("GET", "/auth/api-keys"): _h_api_keys,
        ("DELETE", "/auth/api-key"): _h_delete_key,
        ("GET", "/auth/ban-status/closed-only"): _h_closed_only,
        ("GET", "/balance-allowance"): _h_balance,
        ("GET", "/balance-allowance/update"): _h_balance_update,
        ("GET", "/order-scoring"): _h_scoring,
        ("POST", "/orders-scoring"): _h_scorings,
        ("POST", "/v1/heartbeats"): _h_heartbeat,
        ("POST", "/heartbeats"): _h_heartbeat,
        ("POST", "/order"): _h_post_order,
        ("POST", "/orders"): _h_post_orders,
        ("DELETE", "/order"): _h_cancel,
        ("DELETE", "/orders"): _h_cancel_orders,
        ("DELETE", "/cancel-all"): _h_cancel_all,
        ("DELETE", "/cancel-market-orders"): _h_cancel_market,
        ("GET", "/data/orders"): _h_orders,
        ("GET", "/data/trades"): _h_trades,
    }
    _prefix_routes: dict[tuple[str, str], Callable[[ClobSim, Request], Any]] = {
        ("GET", "/data/order/"): _h_order,
        ("GET", "/markets-by-token/"): _h_market_by_token,
        ("GET", "/clob-markets/"): _h_clob_market,
        ("GET", "/markets/"): _h_market,
    }


# -- CLI ------------------------------------------------------------------------------------------


def _parse_market(text: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected <condition_id>:<yes_token>:<no_token>")
    return parts[0], parts[1], parts[2]


async def _amain(args: argparse.Namespace) -> None:
    sim = ClobSim(
        host=args.host,
        port=args.port,
        ws_port=args.ws_port,
        chain_id=args.chain_id,
        heartbeat_timeout_s=args.heartbeat_timeout,
    )
    for cond, yes, no in args.market:
        sim.add_market(
            cond, yes, no, tick_size=args.tick_size, neg_risk=args.neg_risk, min_size=args.min_size
        )
    await sim.start()
    external: list[ExternalOrder] = []
    for cond, yes, no in args.market:
        # a little two-sided external depth so the book isn't empty
        for i in range(1, args.depth + 1):
            for side, price in (("BUY", round(0.5 - i * 0.01, 4)), ("SELL", round(0.5 + i * 0.01, 4))):
                external.append(
                    ExternalOrder(yes, side, price, 100, sim.add_external_order(yes, side, price, 100))
                )
        del cond, no
    print(f"CLOB_URL={sim.url}", flush=True)
    print(f"CLOB_WS_URL={sim.ws_url}", flush=True)
    print(f"market channel: {sim.ws_url}/ws/market  user channel: {sim.ws_url}/ws/user", flush=True)
    try:
        flows = []
        if args.takers > 0:
            flows.append(
                _anonymous_takers(sim, [yes for _, yes, _ in args.market], args.takers, args.min_size)
            )
        if args.churn > 0:
            flows.append(external_churn(sim, external, args.churn))
        await asyncio.gather(*flows, asyncio.Event().wait())
    finally:
        await sim.stop()


@dataclass
class ExternalOrder:
    token: str
    side: str
    price: float
    size: float
    order_id: str


async def external_churn(sim: ClobSim, orders: list[ExternalOrder], every_s: float) -> None:
    """Other makers requoting: every `every_s` one external order (in turn) is cancelled and placed
    again, same price and size. The market channel stays live (as a real market's does) while the
    book keeps its shape, so a quiet test market never trips a stale-feed kill switch."""
    for n in itertools.count():
        await asyncio.sleep(every_s)
        if not orders:
            continue
        order = orders[n % len(orders)]
        sim.cancel_external(order.order_id)
        order.order_id = sim.add_external_order(order.token, order.side, order.price, order.size)


async def _anonymous_takers(sim: ClobSim, tokens: list[str], every_s: float, size: float) -> None:
    """Market flow for demos: every `every_s` an anonymous FAK order takes `size` at the best price,
    alternating buy and sell, so the market channel carries trades (resting quotes get filled)."""
    for n in itertools.count():
        await asyncio.sleep(every_s)
        side, limit = ("BUY", 0.99) if n % 2 == 0 else ("SELL", 0.01)
        for token in tokens:
            sim.take(token, side, limit, size)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m polymm.sim.clob", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ws-port", type=int, default=0)
    p.add_argument("--chain-id", type=int, default=137)
    p.add_argument("--market", type=_parse_market, action="append", default=[], metavar="COND:YES:NO")
    p.add_argument("--tick-size", type=float, default=0.01)
    p.add_argument("--min-size", type=float, default=5)
    p.add_argument("--neg-risk", action="store_true")
    p.add_argument("--depth", type=int, default=5, help="external levels per side around 0.50 (0 = none)")
    p.add_argument("--heartbeat-timeout", type=float, default=10.0)
    p.add_argument("--takers", type=float, default=0, metavar="SECS",
                   help="an anonymous taker hits the best price every SECS seconds (0 = none)")  # fmt: skip
    p.add_argument("--churn", type=float, default=0, metavar="SECS",
                   help="every SECS an external order is cancelled and placed again (0 = never)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_amain(args))


if __name__ == "__main__":
    main()
