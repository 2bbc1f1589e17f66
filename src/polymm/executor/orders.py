"""OrderManager: converge our resting orders to the strategy's desired quotes.

Desired state is per token ("latest wins"): `submit({token: [Quote, ...]})` replaces what is
wanted on those tokens and wakes the converge loop; tokens not mentioned are left alone, a token
mapped to [] is flattened. One converge pass = diff -> cancels (awaited) -> risk + rate checks
-> sign -> post. Polymarket has no amend, so a changed price or size is cancel + new order;
an order whose price and remaining size still match is kept (no churn, keeps queue priority).

Safety rules:
- an order id is registered (PENDING) before its post leaves, so user-channel events and a
  post that times out can always be tied back to it;
- an ambiguous post (timeout/5xx) is never re-posted: its id is cancelled (idempotent), and the
  order counts against risk limits until the cancel is confirmed or a reconcile drops it;
- a replacement's cancel goes out first; its posts wait for the cancel's answer unless the hard
  limits already allow the old and the new quotes to rest together (overlap.py, OVERLAP_POSTS):
  then they go out at once, the old orders counting against the limits until the cancel is
  confirmed, so even a failed cancel cannot take exposure past them;
- nothing is placed while risk is halted or before the REST reconcile after a (re)connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polymm.executor.clob_gateway import CallResult, ClobGateway, SignedQuote
from polymm.executor.journal import Journal
from polymm.executor.overlap import OverlapDecision, OverlapMode, decide_overlap
from polymm.executor.ratelimit import TokenBucket
from polymm.executor.risk import RiskEngine
from polymm.executor.types import (
    Fill,
    LiveOrder,
    OrderState,
    Positions,
    Quote,
    Side,
    on_tick,
    same_price,
    same_size,
)
from polymm.executor.user_ws import OrderEvent, TradeEvent
from polymm.service.backoff import Backoff, sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.executor.orders")

# Signing alongside an in-flight cancel competes with it for the GIL and delays the cancel (the
# stale quote stays out longer). Measured: two orders (0.35 ms of signing) presigned got the new
# quotes out 0.25 ms sooner but the cancel 0.5 ms later. Only batches that take longer presign.
PRESIGN_MIN_MS = 1.0

_GONE = frozenset({"CANCELED", "CANCELLED", "MATCHED", "UNMATCHED"})


@dataclass(slots=True)
class Diff:
    keep: list[LiveOrder] = field(default_factory=list)
    cancel: list[LiveOrder] = field(default_factory=list)
    place: list[Quote] = field(default_factory=list)


def diff_quotes(
    live: Iterable[LiveOrder], desired: Mapping[str, Sequence[Quote]], size_tolerance: float = 0.0
) -> Diff:
    """Match desired quotes to live orders on the tokens in `desired`.

    A live order is kept when price matches and remaining size is within `size_tolerance`
    (a fraction of the desired size; 0 = exact to the cent). Orders already being cancelled or
    in doubt are neither kept nor cancelled again. Pending orders count as live, so a quote
    already in flight is not sent twice."""
    out = Diff()
    by_key: dict[tuple[str, Side], list[LiveOrder]] = {}
    for o in live:
        if o.token_id in desired and o.state in (OrderState.PENDING, OrderState.LIVE):
            by_key.setdefault((o.token_id, o.side), []).append(o)
    for token, quotes in desired.items():
        for side in (Side.BUY, Side.SELL):
            pool = by_key.pop((token, side), [])
            for q in quotes:
                if q.side is not side:
                    continue
                match = next((o for o in pool if _matches(o, q, size_tolerance)), None)
                if match is None:
                    out.place.append(q)
                else:
                    pool.remove(match)
                    out.keep.append(match)
            out.cancel.extend(pool)
    return out


def effective_desired(
    desired: Mapping[str, Sequence[Quote]], risk: RiskEngine, ticks: Mapping[str, str], now_ns: int
) -> dict[str, list[Quote]]:
    """What may rest now: nothing while halted or near expiry, the rest snapped to the current tick
    away from the touch. A module function so the backtester applies exactly the live rule."""
    out: dict[str, list[Quote]] = {}
    for token, quotes in desired.items():
        market = risk.token_market.get(token)
        gate = risk.market_quotable(market, now_ns) if market else None
        if risk.halted or gate is not None:
            out[token] = []
        else:
            tick = ticks.get(token)
            out[token] = [on_tick(q, tick) for q in quotes]
    return out


def _matches(o: LiveOrder, q: Quote, tol: float) -> bool:
    if not same_price(o.price, q.price):
        return False
    return same_size(o.remaining, q.size) or (tol > 0 and abs(o.remaining - q.size) <= tol * q.size)


@dataclass(slots=True)
class OrderStats:
    posted: int = 0
    accepted: int = 0
    rejected: int = 0
    ambiguous: int = 0
    cancels_sent: int = 0
    canceled: int = 0
    risk_rejects: int = 0
    rate_limited: int = 0
    fills: int = 0
    voided: int = 0
    strays_canceled: int = 0
    reconciles: int = 0
    overlapped: int = 0  # replacements posted alongside their cancel
    cancel_first: int = 0  # replacements that waited for the cancel's answer


class OrderManager:
    def __init__(
        self,
        gateway: ClobGateway,
        risk: RiskEngine,
        journal: Journal | None = None,
        *,
        order_bucket: TokenBucket | None = None,
        cancel_bucket: TokenBucket | None = None,
        size_tolerance: float = 0.0,
        overlap: OverlapMode = OverlapMode.AUTO,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.gw = gateway
        self.risk = risk
        self.journal = journal
        self.order_bucket = order_bucket or TokenBucket(40, 60)
        self.cancel_bucket = cancel_bucket or TokenBucket(80, 120)
        self.size_tolerance = size_tolerance
        self.overlap = overlap
        self._clock = clock
        self.orders: dict[str, LiveOrder] = {}
        self.positions = Positions()
        self.stats = OrderStats()
        self.on_fill: list[Callable[[Fill], None]] = []
        self.on_void: list[Callable[[Fill], None]] = []
        self._desired: dict[str, list[Quote]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._strays: set[str] = set()  # ids on the exchange we do not track: cancel them
        self._history: OrderedDict[str, LiveOrder] = OrderedDict()  # recently gone, for late trades
        self._throttle = Throttle(10.0)
        self._fail_backoff = Backoff(0.1, 2.0)
        self.reconciled = False  # REST view checked since the last (re)connect
        self.needs_reconcile = True

    # -- inputs ----------------------------------------------------------------------------------

    def submit(self, desired: Mapping[str, Sequence[Quote]]) -> None:
        """Replace the desired quotes of the given tokens and wake the converge loop."""
        for token, quotes in desired.items():
            self._desired[token] = list(quotes)
        self._wake.set()

    def wake(self) -> None:
        """Run a converge pass now (e.g. a kill switch cleared and held quotes may go out)."""
        self._wake.set()

    def clear_desired(self) -> None:
        """Forget all desired quotes (after a kill: nothing is re-placed until the strategy asks)."""
        self._desired = {t: [] for t in self._desired}

    def open_orders(self) -> list[LiveOrder]:
        return list(self.orders.values())

    # -- converge loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, idle_s: float = 0.5) -> None:
        """Converge whenever desired state changes, and every `idle_s` to retry deferred work."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle_s)
            if stop.is_set():
                break
            self._wake.clear()
            try:
                clean = await self.converge()
            except Exception:
                log.exception("converge pass failed")
                clean = False
            if clean:
                self._fail_backoff.reset()
            elif await sleep_or_stop(stop, self._fail_backoff.next_delay()):
                break

    async def converge(self) -> bool:
        """One pass; False if something failed or was deferred (the loop backs off)."""
        async with self._lock:
            return await self._converge()

    async def _converge(self) -> bool:
        now = self._clock()
        clean = True
        if self._strays:
            clean &= await self._cancel_ids(list(self._strays), "stray")
        unknown = [o for o in self.orders.values() if o.state is OrderState.UNKNOWN]
        if unknown:
            clean &= await self._cancel_orders(unknown, "ambiguous_post")
        desired = self._effective_desired(now)
        diff = diff_quotes(self.orders.values(), desired, self.size_tolerance)
        presigned: asyncio.Future[list[SignedQuote | tuple[Quote, str]]] | None = None
        if diff.cancel and diff.place and self.reconciled and not self.risk.halted:
            decision = self._decide_overlap(diff, now)
            if decision.overlap:
                return await self._overlap(diff) and clean
        if diff.cancel:
            sign_ms = len(diff.place) * self.gw.sign_ms_median
            if diff.place and sign_ms >= PRESIGN_MIN_MS and self.reconciled and not self.risk.halted:
                # Signing has no side effect: do it while the cancel is in flight, so the post can
                # leave the moment the cancel is confirmed. Risk still decides what gets posted.
                presigned = asyncio.ensure_future(self.gw.sign(diff.place))
            clean &= await self._cancel_orders(diff.cancel, "requote")
        if self.risk.halted or not self.reconciled or not diff.place:
            if presigned is not None:
                presigned.cancel()
            return clean
        return await self._place(diff.place, presigned) and clean

    async def _overlap(self, diff: Diff) -> bool:
        """Cancel and post without waiting for the cancel's answer. The posts start once the
        cancel's request is written: signing and building them earlier would compete with it for
        the GIL and hold the stale quotes' cancel back. The cancel runs inline (as in
        cancel-first, no extra loop iteration before it is handed to the pool). A failed cancel
        leaves the old orders tracked (LIVE again), as the decision counted them."""
        sent = asyncio.Event()
        posts = asyncio.ensure_future(self._place_when(sent, diff.place))
        try:
            cancelled = await self._cancel_orders(diff.cancel, "requote", sent)
        finally:
            sent.set()  # never sent (rate-limited, refused locally) or already answered: post now
        return await posts and cancelled

    async def _place_when(self, sent: asyncio.Event, quotes: list[Quote]) -> bool:
        await sent.wait()
        return await self._place(quotes)

    def _decide_overlap(self, diff: Diff, now: int) -> OverlapDecision:
        d = decide_overlap(
            self.overlap,
            self.risk,
            diff.place,
            diff.cancel,
            self.orders.values(),
            self.positions.shares,
            now,
        )
        if d.overlap:
            self.stats.overlapped += 1
        else:
            self.stats.cancel_first += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "requote %s reason=%s cancel=%d post=%d overlapped=%d cancel_first=%d",
                "overlap" if d.overlap else "cancel-first",
                d.reason,
                len(diff.cancel),
                len(diff.place),
                self.stats.overlapped,
                self.stats.cancel_first,
            )
        return d

    def _effective_desired(self, now: int) -> dict[str, list[Quote]]:
        return effective_desired(self._desired, self.risk, self.gw.tick, now)

    # -- cancels ---------------------------------------------------------------------------------

    async def _cancel_orders(
        self, orders: list[LiveOrder], why: str, sent: asyncio.Event | None = None
    ) -> bool:
        granted = self.cancel_bucket.take_up_to(len(orders))
        batch = orders[:granted]
        if not batch:
            self.stats.rate_limited += len(orders)
            return False
        for o in batch:
            o.state = OrderState.CANCELING
            self._journal("cancel_sent", o, reason=why)
        self.stats.cancels_sent += len(batch)
        ids = [o.order_id for o in batch]
        res = await (self.gw.cancel(ids) if sent is None else self.gw.cancel(ids, sent=sent))
        if not res.ok:
            for o in batch:
                if self.orders.get(o.order_id) is o:
                    # Unknown outcome: an order that was in doubt stays in doubt, others stay live.
                    o.state = OrderState.UNKNOWN if why == "ambiguous_post" else OrderState.LIVE
                    self._journal("cancel_failed", o, reason=res.kind.value, detail=res.error)
            self.needs_reconcile |= res.ambiguous
            return False
        self._apply_cancel_result(res, why)
        return granted == len(orders)

    async def _cancel_ids(self, ids: list[str], why: str) -> bool:
        granted = self.cancel_bucket.take_up_to(len(ids))
        batch = ids[:granted]
        if not batch:
            return False
        for oid in batch:
            self._journal_raw("cancel_sent", order_id=oid, reason=why)
        res = await self.gw.cancel(batch)
        if not res.ok:
            return False
        self._strays.difference_update(batch)
        self.stats.strays_canceled += len(batch)
        self._apply_cancel_result(res, why)
        return granted == len(ids)

    def _apply_cancel_result(self, res: CallResult, why: str) -> None:
        data = res.data if isinstance(res.data, dict) else {}
        for oid in data.get("canceled") or []:
            o = self._forget(str(oid))
            self.stats.canceled += 1
            self._journal_raw("canceled", order_id=str(oid), token_id=o.token_id if o else "", reason=why)
        for oid, reason in (data.get("not_canceled") or {}).items():
            # Not cancelable means not resting: already filled, cancelled or never accepted.
            self._forget(str(oid))
            self._journal_raw("cancel_rejected", order_id=str(oid), reason=why, detail=str(reason)[:200])

    async def cancel_all(self, reason: str) -> CallResult:
        """Kill-switch path: one cancel-all, not held back by the local rate limiter."""
        self.cancel_bucket.force_take(1 + len(self.orders))
        self._journal_raw("cancel_all_sent", reason=reason, detail=f"tracked={len(self.orders)}")
        res = await self.gw.cancel_all()
        if res.ok:
            data = res.data if isinstance(res.data, dict) else {}
            for oid in list(self.orders):
                self._forget(oid)
            self._journal_raw(
                "cancel_all_done", reason=reason, detail=f"canceled={len(data.get('canceled') or [])}"
            )
        else:
            self.needs_reconcile = True
            self._journal_raw("cancel_all_failed", reason=res.kind.value, detail=res.error)
        return res

    # -- posts -----------------------------------------------------------------------------------

    async def _signatures(
        self, approved: list[Quote], presigned: asyncio.Future[list[SignedQuote | tuple[Quote, str]]] | None
    ) -> list[SignedQuote | tuple[Quote, str]]:
        """Signatures for the approved quotes, from the speculative batch where it covers them."""
        if presigned is None:
            return await self.gw.sign(approved)
        try:
            done = await presigned
        except Exception:  # the speculative batch failed as a whole: sign again, normally
            return await self.gw.sign(approved)
        by_quote = {id(item.quote if isinstance(item, SignedQuote) else item[0]): item for item in done}
        missing = [q for q in approved if id(q) not in by_quote]
        extra = dict(zip(map(id, missing), await self.gw.sign(missing), strict=True)) if missing else {}
        return [by_quote.get(id(q)) or extra[id(q)] for q in approved]

    async def _place(
        self,
        quotes: list[Quote],
        presigned: asyncio.Future[list[SignedQuote | tuple[Quote, str]]] | None = None,
    ) -> bool:
        now = self._clock()
        clean = True
        approved: list[Quote] = []
        pending = list(self.orders.values())
        shares = self.positions.shares
        for q in quotes:
            reject = self.risk.check_order(q, pending, shares, now)
            if reject is not None:
                self.stats.risk_rejects += 1
                self._journal_quote(
                    "risk_reject",
                    q,
                    reason=reject.value,
                )
                self._throttle.warn(
                    log,
                    f"risk:{reject}",
                    "risk refused %s %s %.4f x %.2f: %s",
                    q.token_id,
                    q.side.value,
                    q.price,
                    q.size,
                    reject.value,
                )
                continue
            approved.append(q)
            # Later quotes in the same pass see this one as resting.
            pending.append(LiveOrder("?", q.token_id, "", q.side, q.price, q.size))
        granted = self.order_bucket.take_up_to(len(approved))
        if granted < len(approved):
            self.stats.rate_limited += len(approved) - granted
            clean = False
        approved = approved[:granted]
        if not approved:
            if presigned is not None:
                presigned.cancel()
            return clean
        signed_or_err = await self._signatures(approved, presigned)
        signed: list[SignedQuote] = []
        for item in signed_or_err:
            if isinstance(item, SignedQuote):
                signed.append(item)
            else:
                q, err = item
                self.stats.rejected += 1
                self._journal_quote(
                    "sign_failed",
                    q,
                    detail=err,
                )
        if self.risk.halted:  # a kill arrived while we were signing
            return False
        t_send = self._clock()
        for s in signed:
            q = s.quote
            market = self.risk.token_market.get(q.token_id, "")
            o = LiveOrder(s.order_id, q.token_id, market, q.side, q.price, q.size, created_ns=t_send)
            self.orders[s.order_id] = o
            self._journal(
                "order_sent", o, detail=f"sign_us={s.sign_ns // 1000} dry_run={self.gw.cfg.dry_run}"
            )
        self.risk.record_sent(t_send, len(signed))
        self.stats.posted += len(signed)
        outcomes = await self.gw.post(signed)
        now = self._clock()
        for out in outcomes:
            oid = out.signed.order_id
            o = self.orders.get(oid)
            if out.accepted:
                self.stats.accepted += 1
                if o is not None:
                    if o.state is OrderState.PENDING:
                        o.state = OrderState.LIVE
                    o.acked_ns = o.acked_ns or now
                    self._journal("ack", o, status=out.status, detail=f"rtt_us={(now - t_send) // 1000}")
                    if out.status.lower() == "matched":
                        self._forget(oid)  # filled on arrival; the trade event books the position
            elif out.ambiguous:
                self.stats.ambiguous += 1
                clean = False
                if o is not None:
                    o.state = OrderState.UNKNOWN
                    self._journal("post_ambiguous", o, reason=out.kind.value, detail=out.error)
                self._wake.set()  # next pass cancels it by id
            else:
                self.stats.rejected += 1
                clean &= out.kind.value != "skipped"
                self._forget(oid)
                self._journal_quote(
                    "reject",
                    out.signed.quote,
                    order_id=oid,
                    reason=out.kind.value,
                    detail=out.error,
                )
        return clean

    # -- reconcile -------------------------------------------------------------------------------

    async def reconcile(self) -> bool:
        """Align with the REST open-orders view: unknown there -> we drop it; unknown to us -> cancel."""
        async with self._lock:
            res = await self.gw.open_orders()
            if not res.ok:
                self._journal_raw("reconcile_failed", reason=res.kind.value, detail=res.error)
                return False
            rows = [r for r in (res.data or []) if isinstance(r, dict)]
            remote = {str(r.get("id")): r for r in rows if r.get("id")}
            dropped = 0
            for oid, o in list(self.orders.items()):
                if oid in remote:
                    row = remote[oid]
                    o.matched = max(o.matched, _num(row.get("size_matched")))
                    if o.state in (OrderState.PENDING, OrderState.UNKNOWN):
                        o.state = OrderState.LIVE
                elif o.state is OrderState.PENDING:
                    continue  # post still in flight (maybe after the snapshot): its answer decides
                else:
                    dropped += 1
                    self._forget(oid)
                    self._journal("reconcile_drop", o)
            strays = [oid for oid in remote if oid not in self.orders]
            self._strays.update(strays)
            for oid in strays:
                row = remote[oid]
                self._journal_raw(
                    "reconcile_stray",
                    order_id=oid,
                    token_id=str(row.get("asset_id", "")),
                    side=str(row.get("side", "")),
                    price=row.get("price"),
                    size=row.get("original_size"),
                )
            self.stats.reconciles += 1
            self.reconciled = True
            self.needs_reconcile = False
            self._journal_raw(
                "reconcile_done", detail=f"remote={len(remote)} dropped={dropped} strays={len(strays)}"
            )
            log.info(
                "reconciled: %d open on exchange, %d dropped, %d strays to cancel",
                len(remote),
                dropped,
                len(strays),
            )
        self._wake.set()
        return True

    def mark_unreconciled(self) -> None:
        """The user channel dropped: hold new orders until the next reconcile."""
        self.reconciled = False
        self.needs_reconcile = True

    # -- user channel --------------------------------------------------------------------------

    def on_order_event(self, ev: OrderEvent) -> None:
        o = self.orders.get(ev.order_id)
        if o is None:
            if ev.kind == "PLACEMENT" and ev.status not in _GONE and ev.order_id not in self._history:
                # Resting order of this key that we do not track (e.g. earlier session): cancel it.
                self._strays.add(ev.order_id)
                self._wake.set()
            return
        if ev.size_matched > o.matched:
            o.matched = ev.size_matched
        if ev.kind == "CANCELLATION" or ev.status in _GONE or o.remaining <= 0:
            self._forget(ev.order_id)
            self._journal("order_done", o, status=ev.status or ev.kind)
            self._wake.set()
            return
        if o.state is OrderState.PENDING:
            o.state = OrderState.LIVE
            o.acked_ns = o.acked_ns or ev.ts_ns
        self._journal("order_event", o, status=f"{ev.kind}/{ev.status}")

    def on_trade_event(self, ev: TradeEvent) -> None:
        if ev.status == "FAILED":
            for fill in self.positions.void(ev.trade_id):
                self.stats.voided += 1
                self._journal_quote(
                    "fill_void",
                    fill,
                    order_id=fill.order_id,
                    trade_id=fill.trade_id,
                )
                for cb in self.on_void:
                    cb(fill)
            self.needs_reconcile = True
            return
        if ev.status not in ("MATCHED", "MINED", "CONFIRMED"):
            return  # RETRYING: wait for the outcome
        for fill in self._our_fills(ev):
            if not self.positions.apply(fill):
                continue  # already booked at an earlier status
            self.stats.fills += 1
            o = self.orders.get(fill.order_id)
            if o is not None:
                booked = sum(f.size for k, f in self.positions.fills.items() if k[1] == fill.order_id)
                o.matched = max(o.matched, round(booked, 6))
                if o.remaining <= 0:
                    self._forget(fill.order_id)
            self._journal_quote(
                "fill",
                fill,
                market=fill.market,
                order_id=fill.order_id,
                trade_id=fill.trade_id,
                status=ev.status,
                detail=f"role={fill.role} pos={self.positions.get(fill.token_id)}",
            )
            for cb in self.on_fill:
                cb(fill)
        self._wake.set()

    def _our_fills(self, ev: TradeEvent) -> list[Fill]:
        me = self.gw.api_key
        fills = []
        for m in ev.maker_orders:
            if self._is_ours(m.order_id) or (me and m.owner == me):
                fills.append(
                    Fill(
                        ev.trade_id,
                        m.order_id,
                        m.asset_id or ev.asset_id,
                        ev.market,
                        Side(m.side) if m.side in ("BUY", "SELL") else self._side_of(m.order_id, ev),
                        m.price or ev.price,
                        m.matched_amount,
                        ev.ts_ns,
                        "MAKER",
                    )
                )
        if ev.taker_order_id and self._is_ours(ev.taker_order_id):
            fills.append(
                Fill(
                    ev.trade_id,
                    ev.taker_order_id,
                    ev.asset_id,
                    ev.market,
                    Side(ev.side),
                    ev.price,
                    ev.size,
                    ev.ts_ns,
                    "TAKER",
                )
            )
        return fills

    def _is_ours(self, order_id: str) -> bool:
        return order_id in self.orders or order_id in self._history

    def _side_of(self, order_id: str, ev: TradeEvent) -> Side:
        o = self.orders.get(order_id) or self._history.get(order_id)
        if o is not None:
            return o.side
        return Side.SELL if ev.side == "BUY" else Side.BUY  # a maker is on the other side of the taker

    # -- helpers ---------------------------------------------------------------------------------

    def _forget(self, order_id: str) -> LiveOrder | None:
        o = self.orders.pop(order_id, None)
        if o is not None:
            self._history[order_id] = o
            while len(self._history) > 10_000:
                self._history.popitem(last=False)
        return o

    def _journal(self, event: str, o: LiveOrder, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(
                event,
                token_id=o.token_id,
                market=o.market,
                side=o.side.value,
                price=o.price,
                size=o.remaining,
                order_id=o.order_id,
                **fields,
            )

    def _journal_raw(self, event: str, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(event, **fields)

    def _journal_quote(self, event: str, q: Quote | Fill, **fields: Any) -> None:
        """Journal an event about a quote or a fill: its token, side, price and size."""
        self._journal_raw(event, token_id=q.token_id, side=q.side.value, price=q.price, size=q.size, **fields)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
