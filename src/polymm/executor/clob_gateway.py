"""Async gateway to the Polymarket CLOB over the synchronous py-clob-client-v2.

- Every client call runs on a small dedicated thread pool, never on the event loop.
- Orders are signed on that pool too, and their order ids (the EIP-712 digest) are computed
  locally before posting, so an order whose post timed out can still be cancelled or found.
- Errors become typed `CallResult`s. Idempotent calls (cancel, cancel-all, open orders) are
  retried a few times with capped backoff; posts are never retried: an ambiguous post (timeout,
  5xx, 425) is reported as such and the caller resolves it by cancelling the known ids.
- After a 429 or 5xx the gateway cools down (jittered, capped backoff) and refuses new posts
  until it ends, so an outage cannot turn into a request storm. Cancels still go out.
- Secrets never reach logs or exception text: server messages are scrubbed and truncated.
- dry_run: everything is built and signed, nothing is sent; results say DRY_RUN.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import httpx
from py_clob_client_v2 import ApiCreds, ClobClient, OpenOrderParams, OrderArgs, PartialCreateOrderOptions
from py_clob_client_v2.clob_types import PostOrdersV2Args
from py_clob_client_v2.exceptions import PolyApiException, PolyException
from py_clob_client_v2.http_helpers import helpers as _http

from polymm.executor.signing import FastOrderBuilder, order_digest
from polymm.executor.types import MarketSpec, Quote
from polymm.service.backoff import Backoff
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.executor.gateway")
T = TypeVar("T")

MAX_POST_BATCH = 15
MAX_CANCEL_BATCH = 1000

# Per pool thread: who wants to hear that the request this job is making has been written.
_on_written = threading.local()


def _hook_request(request: httpx.Request) -> None:
    """httpx request hook: hand a pending "written" callback to httpcore's trace of this request."""
    notify: Callable[[], None] | None = getattr(_on_written, "notify", None)
    if notify is None:
        return
    _on_written.notify = None

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):  # http11.* or http2.*: the last byte left
            notify()

    request.extensions = {**request.extensions, "trace": trace}


def _notify_when_written(fn: Callable[[], T], notify: Callable[[], None]) -> Callable[[], T]:
    def run() -> T:
        _on_written.notify = notify
        try:
            return fn()
        finally:
            _on_written.notify = None

    return run


class CallKind(StrEnum):
    OK = "ok"
    DRY_RUN = "dry_run"
    REJECTED = "rejected"  # 4xx other than 425/429: definitive, nothing happened
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx or 425: may or may not have been applied
    NETWORK = "network"  # timeout / connection error: may or may not have been applied
    CLIENT_ERROR = "client_error"  # refused locally before sending (bad price, no creds)
    SKIPPED = "skipped"  # not sent: gateway cooling down after errors


_RETRYABLE = frozenset({CallKind.RATE_LIMITED, CallKind.SERVER_ERROR, CallKind.NETWORK})
_AMBIGUOUS = frozenset({CallKind.SERVER_ERROR, CallKind.NETWORK})


@dataclass(frozen=True, slots=True)
class CallResult:
    kind: CallKind
    data: Any = None
    status: int | None = None
    error: str = ""
    latency_ns: int = 0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.kind in (CallKind.OK, CallKind.DRY_RUN)

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE

    @property
    def ambiguous(self) -> bool:
        """The request may have taken effect even though we got no clean answer."""
        return self.kind in _AMBIGUOUS


@dataclass(frozen=True, slots=True)
class SignedQuote:
    quote: Quote
    order: Any  # SignedOrderV2
    order_id: str
    sign_ns: int  # time spent signing


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What happened to one order of a post batch."""

    signed: SignedQuote
    kind: CallKind
    accepted: bool  # resting or matched per the exchange (or dry run)
    status: str = ""  # live / matched / delayed / unmatched from the exchange
    error: str = ""

    @property
    def ambiguous(self) -> bool:
        return self.kind in _AMBIGUOUS


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str
    private_key: str = field(repr=False)
    chain_id: int = 137
    signature_type: int = 0
    funder: str | None = None
    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    api_passphrase: str = field(default="", repr=False)
    dry_run: bool = False
    post_only: bool = True  # maker-only quoting: the exchange refuses a crossing post
    threads: int = 4
    http_timeout_s: float = 3.0
    max_attempts: int = 3  # for idempotent calls only
    backoff_initial_s: float = 0.05
    backoff_cap_s: float = 2.0
    cooldown_cap_s: float = 5.0


class _Client(ClobClient):
    # The stock client polls /data/trades for up to 30 s when a post matched, blocking a worker
    # thread; the user channel already tells us about fills, so hand the response back as is.
    def _resolve_transactions_hashes(self, response: Any) -> Any:
        return response


class ClobGateway:
    def __init__(self, cfg: GatewayConfig, markets: Iterable[MarketSpec] = ()) -> None:
        self.cfg = cfg
        self._pool = ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="clob")
        self._client: _Client | None = None
        self._creds: ApiCreds | None = None
        self.tick: dict[str, str] = {}
        self.neg_risk: dict[str, bool] = {}
        self.token_market: dict[str, str] = {}
        for m in markets:
            for t in m.token_ids:
                self.tick[t] = m.tick_size
                self.neg_risk[t] = m.neg_risk
                self.token_market[t] = m.condition_id
        self._builder: FastOrderBuilder | None = None
        self._throttle = Throttle(10.0)
        self._cooldown = Backoff(0.2, cfg.cooldown_cap_s)
        self.cooldown_until = 0.0
        self.requests = 0  # requests actually handed to the HTTP client
        self.errors: dict[CallKind, int] = {}
        self.sign_ms_median = 0.0
        self._secrets = tuple(s for s in (cfg.private_key, cfg.api_secret, cfg.api_passphrase) if s)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the client, get L2 creds, warm tick/neg-risk/version caches, measure signing."""
        await self._run(self._start_sync)
        log.info(
            "gateway ready: address=%s api_key=%s tokens=%d dry_run=%s sign_ms=%.3f",
            self.address,
            self.api_key,
            len(self.tick),
            self.cfg.dry_run,
            self.sign_ms_median,
        )

    def _start_sync(self) -> None:
        cfg = self.cfg
        if not cfg.dry_run:
            # The library keeps one module-level httpx client with a 5 s timeout. A stuck request
            # must not outlive the heartbeat window, so use our own (shorter) timeout.
            _http._http_client = httpx.Client(
                http2=True, timeout=cfg.http_timeout_s, event_hooks={"request": [_hook_request]}
            )
        # Its own per-request error log is unthrottled; we log a throttled, scrubbed line instead.
        logging.getLogger(_http.__name__).setLevel(logging.CRITICAL)
        creds = None
        if cfg.api_key and cfg.api_secret and cfg.api_passphrase:
            creds = ApiCreds(cfg.api_key, cfg.api_secret, cfg.api_passphrase)
        elif cfg.dry_run:
            creds = ApiCreds("dry-run", "ZHJ5LXJ1bg==", "dry-run")
        client = _Client(
            cfg.host,
            cfg.chain_id,
            key=cfg.private_key,
            creds=creds,
            signature_type=cfg.signature_type,
            funder=cfg.funder,
        )
        if creds is None:
            self.requests += 2
            try:
                creds = client.create_or_derive_api_key()
            except PolyException as exc:
                raise RuntimeError(f"could not create or derive API creds: {self._describe(exc)}") from None
            client.set_api_creds(creds)
        self._creds = creds
        self._secrets = tuple(s for s in (cfg.private_key, creds.api_secret, creds.api_passphrase) if s)
        self._client = client
        self._builder = client.builder = FastOrderBuilder(client.builder)
        if cfg.dry_run:
            self._seed_caches()
        else:
            for token in self.tick:
                self.requests += 2
                self.tick[token] = str(client.get_tick_size(token))
                self.neg_risk[token] = bool(client.get_neg_risk(token))
        self.sign_ms_median = self._measure_signing()

    def _seed_caches(self) -> None:
        # Dry run must not touch the network: put the configured tick/neg-risk into the client's
        # private caches so create_order never asks the server.
        client = self._require()
        client._ClobClient__tick_sizes.update(self.tick)  # type: ignore[attr-defined]
        client._ClobClient__neg_risk.update(self.neg_risk)  # type: ignore[attr-defined]
        client._ClobClient__cached_version = 2  # type: ignore[attr-defined]

    def _measure_signing(self, n: int = 20) -> float:
        """Sign throwaway orders (never posted); also warms the client's version cache."""
        if not self.tick:
            return 0.0
        token = next(iter(self.tick))
        tick = float(self.tick[token])
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            self._sign_one(Quote(token, "BUY", tick, 5.0))  # type: ignore[arg-type]
            samples.append((time.perf_counter_ns() - t0) / 1e6)
        return statistics.median(samples)

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    @property
    def address(self) -> str:
        return self._require().get_address()

    @property
    def api_key(self) -> str:
        return self._creds.api_key if self._creds else ""

    def user_ws_auth(self) -> dict[str, str]:
        """The `auth` object of the user-channel subscribe frame."""
        c = self._creds
        if c is None:
            raise RuntimeError("gateway not started")
        return {"apiKey": c.api_key, "secret": c.api_secret, "passphrase": c.api_passphrase}

    def set_tick_size(self, token_id: str, tick: str) -> None:
        """A tick_size_change from the market feed: sign future orders on the new grid."""
        self.tick[token_id] = tick
        if self._client is not None:
            self._client._ClobClient__tick_sizes[token_id] = tick  # type: ignore[attr-defined]

    @property
    def cooling_down(self) -> bool:
        return time.monotonic() < self.cooldown_until

    # -- signing ---------------------------------------------------------------------------------

    async def sign(self, quotes: Sequence[Quote]) -> list[SignedQuote | tuple[Quote, str]]:
        """Sign on the pool; each item is a SignedQuote, or (quote, error) if refused locally."""
        return await self._run(self._sign_many, list(quotes))

    def _sign_many(self, quotes: list[Quote]) -> list[SignedQuote | tuple[Quote, str]]:
        out: list[SignedQuote | tuple[Quote, str]] = []
        for q in quotes:
            try:
                out.append(self._sign_one(q))
            except (PolyException, ValueError, KeyError) as exc:
                out.append((q, self._describe(exc)))
        return out

    def _sign_one(self, q: Quote) -> SignedQuote:
        client = self._require()
        t0 = time.perf_counter_ns()
        neg = self.neg_risk.get(q.token_id, False)
        opts = PartialCreateOrderOptions(tick_size=self.tick.get(q.token_id), neg_risk=neg)  # type: ignore[arg-type]
        order = client.create_order(
            OrderArgs(token_id=q.token_id, price=q.price, size=q.size, side=str(q.side)), opts
        )
        order_id = getattr(order, "order_id", "")  # the fast path hashed it while signing
        if not order_id:  # POLY_1271 orders are built by the library alone
            assert self._builder is not None  # set together with the client
            order_id = order_digest(order, self._builder.exchange(neg).app_domain_separator)
        return SignedQuote(q, order, order_id, time.perf_counter_ns() - t0)

    # -- orders ----------------------------------------------------------------------------------

    async def post(self, signed: Sequence[SignedQuote]) -> list[PostOutcome]:
        """Post signed orders in batches of 15 (batches in parallel). Never retried."""
        if not signed:
            return []
        if self.cfg.dry_run:
            for s in signed:
                log.info(
                    "DRY_RUN post %s %s %.4f x %.2f id=%s",
                    s.quote.token_id,
                    s.quote.side,
                    s.quote.price,
                    s.quote.size,
                    s.order_id,
                )
            return [PostOutcome(s, CallKind.DRY_RUN, True, "live") for s in signed]
        if self.cooling_down:
            return [PostOutcome(s, CallKind.SKIPPED, False, error="cooling down") for s in signed]
        batches = [list(signed[i : i + MAX_POST_BATCH]) for i in range(0, len(signed), MAX_POST_BATCH)]
        results = await asyncio.gather(*(self._post_batch(b) for b in batches))
        return [o for batch in results for o in batch]

    async def _post_batch(self, batch: list[SignedQuote]) -> list[PostOutcome]:
        client = self._require()
        args = [PostOrdersV2Args(order=s.order, orderType="GTC") for s in batch]
        res = await self._call("post_orders", functools.partial(client.post_orders, args, self.cfg.post_only))
        if not res.ok:
            return [PostOutcome(s, res.kind, False, error=res.error) for s in batch]
        rows = res.data if isinstance(res.data, list) else []
        by_id = {str(r.get("orderID") or r.get("orderId") or ""): r for r in rows if isinstance(r, dict)}
        out = []
        for i, s in enumerate(batch):
            row = by_id.get(s.order_id)
            if row is None and i < len(rows) and isinstance(rows[i], dict) and not rows[i].get("orderID"):
                row = rows[i]  # failed entries may carry no id; the response keeps request order
            if row is None:
                # Answer without this order: we cannot tell whether it rests. Treat as ambiguous.
                out.append(PostOutcome(s, CallKind.SERVER_ERROR, False, error="missing in response"))
                continue
            success = bool(row.get("success", True)) and not row.get("errorMsg")
            status = str(row.get("status") or "")
            if success:
                out.append(PostOutcome(s, CallKind.OK, True, status))
            else:
                err = self._scrub(str(row.get("errorMsg") or "rejected"))
                self._throttle.warn(log, "post_reject", "order rejected: %s", err)
                out.append(PostOutcome(s, CallKind.REJECTED, False, status, err))
        return out

    async def cancel(self, order_ids: Sequence[str], *, sent: asyncio.Event | None = None) -> CallResult:
        """Cancel by id (batches of 1000, retried: cancelling is idempotent).
        data = {"canceled": [ids], "not_canceled": {id: reason}}.
        `sent` is set once the (first) request has been written to the connection, or at once if
        nothing is to be sent; a request that fails before that never sets it."""
        ids = list(dict.fromkeys(order_ids))
        if (not ids or self.cfg.dry_run) and sent is not None:
            sent.set()  # nothing goes out: nothing to wait for
        if not ids:
            return CallResult(CallKind.OK, {"canceled": [], "not_canceled": {}})
        if self.cfg.dry_run:
            log.info("DRY_RUN cancel %d orders", len(ids))
            return CallResult(CallKind.DRY_RUN, {"canceled": ids, "not_canceled": {}})
        client = self._require()
        notify = None
        if sent is not None:
            loop = asyncio.get_running_loop()
            notify = functools.partial(loop.call_soon_threadsafe, sent.set)
        canceled: list[str] = []
        not_canceled: dict[str, str] = {}
        last: CallResult | None = None
        for i in range(0, len(ids), MAX_CANCEL_BATCH):
            chunk = ids[i : i + MAX_CANCEL_BATCH]
            call: Callable[[], Any] = functools.partial(client.cancel_orders, chunk)
            if notify is not None:
                call = _notify_when_written(call, notify)
            last = await self._call_retry("cancel_orders", call)
            if not last.ok:
                return last
            data = last.data if isinstance(last.data, dict) else {}
            canceled.extend(data.get("canceled") or [])
            not_canceled.update(data.get("not_canceled") or {})
        assert last is not None
        return CallResult(
            last.kind, {"canceled": canceled, "not_canceled": not_canceled}, attempts=last.attempts
        )

    async def cancel_all(self) -> CallResult:
        if self.cfg.dry_run:
            log.info("DRY_RUN cancel_all")
            return CallResult(CallKind.DRY_RUN, {"canceled": [], "not_canceled": {}})
        return await self._call_retry("cancel_all", self._require().cancel_all)

    async def open_orders(self, market: str | None = None, asset_id: str | None = None) -> CallResult:
        """All open orders of this API key (the client follows next_cursor); data = list[dict]."""
        if self.cfg.dry_run:
            return CallResult(CallKind.DRY_RUN, [])
        params = OpenOrderParams(market=market, asset_id=asset_id)
        return await self._call_retry(
            "open_orders", functools.partial(self._require().get_open_orders, params)
        )

    async def heartbeat(self, heartbeat_id: str) -> CallResult:
        """One POST /v1/heartbeats; not retried here (the heartbeat loop owns the cadence)."""
        if self.cfg.dry_run:
            return CallResult(CallKind.DRY_RUN, {"heartbeat_id": heartbeat_id or "dry-run"})
        return await self._call("heartbeat", functools.partial(self._require().post_heartbeat, heartbeat_id))

    # -- plumbing --------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _call(self, name: str, fn: Callable[[], Any]) -> CallResult:
        t0 = time.perf_counter_ns()
        self.requests += 1
        try:
            data = await self._run(fn)
        except PolyApiException as exc:
            body = exc.error_msg if isinstance(exc.error_msg, dict) else None  # e.g. expected heartbeat id
            result = CallResult(_classify(exc.status_code), body, exc.status_code, self._describe(exc))
        except (PolyException, ValueError) as exc:
            self.requests -= 1  # refused by the client before any request left
            result = CallResult(CallKind.CLIENT_ERROR, None, None, self._describe(exc))
        except Exception as exc:  # unknown failure mid-request: treat as ambiguous, never as "not sent"
            result = CallResult(CallKind.NETWORK, None, None, f"{type(exc).__name__}: {self._describe(exc)}")
        else:
            if isinstance(data, dict) and data.get("error"):
                result = CallResult(CallKind.REJECTED, data, 200, self._scrub(str(data["error"])))
            else:
                self._cooldown.reset()
                return CallResult(CallKind.OK, data, 200, latency_ns=time.perf_counter_ns() - t0)
        result = CallResult(
            result.kind, result.data, result.status, result.error, time.perf_counter_ns() - t0
        )
        self.errors[result.kind] = self.errors.get(result.kind, 0) + 1
        if result.kind in (CallKind.RATE_LIMITED, CallKind.SERVER_ERROR, CallKind.NETWORK):
            self.cooldown_until = max(self.cooldown_until, time.monotonic() + self._cooldown.next_delay())
        self._throttle.warn(
            log,
            f"{name}:{result.kind}",
            "%s failed: %s status=%s %s",
            name,
            result.kind.value,
            result.status,
            result.error,
        )
        return result

    async def _call_retry(self, name: str, fn: Callable[[], Any]) -> CallResult:
        """Bounded retries with capped jittered backoff, for idempotent calls only."""
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_cap_s)
        attempt = 0
        while True:
            attempt += 1
            res = await self._call(name, fn)
            if res.ok or not res.retryable or attempt >= self.cfg.max_attempts:
                return CallResult(res.kind, res.data, res.status, res.error, res.latency_ns, attempt)
            await asyncio.sleep(backoff.next_delay())

    def _require(self) -> _Client:
        if self._client is None:
            raise RuntimeError("gateway not started")
        return self._client

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, PolyApiException):
            text = str(exc.error_msg)
        elif isinstance(exc, PolyException):
            text = str(exc.msg)
        else:
            text = str(exc)
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, "***")
        return text[:300]


def _classify(status: int | None) -> CallKind:
    if status is None:
        return CallKind.NETWORK
    if status == 429:
        return CallKind.RATE_LIMITED
    if status == 425 or status >= 500:
        return CallKind.SERVER_ERROR
    return CallKind.REJECTED
