"""The backtest loop: recorded events in receive order -> the executor's strategy and rules -> venue.

What runs here is the executor's own code: the strategy behind `ExecutorAdapter` (the executor's
QuoteSource), `effective_desired` (tick snapping away from the touch, nothing while halted or
near expiry), `diff_quotes` (keep / cancel / post), `RiskEngine` (order checks, position breach,
the Binance-stale and Polymarket-feed kill switches evaluated on recorded stamps), the executor's
token buckets, and the converge discipline of `OrderManager`: one pass at a time, cancels first
and awaited, then risk checks and the post, the pass ending when the post is answered; a decision
that arrives while a pass is in flight waits for it ("latest wins"). Only the network and the
venue are simulated (polymm.backtest.latency, polymm.backtest.venue).

Time is the Amsterdam receive clock of the data (`recv_ts`). Scheduled work (venue arrivals,
answers, fill notices, the strategy timer and the executor's supervisor) runs before any recorded
event with a later or equal stamp.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polymm.backtest.gaps import GAP_KINDS, Gap, detail_of, touches
from polymm.backtest.latency import LatencyModel
from polymm.backtest.merge import BBO, BTRADE, EVENTS, L2, PTRADE, Chunk
from polymm.backtest.venue import Book, FillParams, SimOrder, Venue
from polymm.executor.orders import diff_quotes, effective_desired
from polymm.executor.ratelimit import TokenBucket
from polymm.executor.risk import LATCHING, Health, KillReason, RiskEngine, RiskLimits
from polymm.executor.types import Fill, LiveOrder, MarketSpec, OrderState, Positions, Quote, Side
from polymm.relay.events import Bbo
from polymm.strategy.markets import MarketConfig

log = logging.getLogger("polymm.backtest")

MAX_POST_BATCH = 15  # the gateway's batch size: one post request per 15 orders

# Scheduled work at the same instant: the venue first (what the feed shows at t includes it).
_ARRIVE, _VENUE_CANCEL, _VENUE_CANCEL_ALL, _ACK, _CANCEL_DONE, _CANCEL_ALL_DONE, _FILL, _PLACE, _PASS_END = (
    range(9)
)


@dataclass(frozen=True, slots=True)
class Fees:
    maker_bps: float = 0.0  # charged on maker fills: bps x min(p, 1 - p) x size (Polymarket's formula)
    rebate_bps: float = 0.0  # paid back on maker fills, same base


@dataclass
class EngineConfig:
    markets: list[MarketConfig]
    limits: RiskLimits
    latency: LatencyModel
    fill: FillParams = field(default_factory=FillParams)
    fees: dict[str, Fees] = field(default_factory=dict)  # condition_id -> fees
    timer_s: float = 0.25  # STRATEGY_TIMER_SECS
    supervise_s: float = 0.02  # the executor's supervisor cadence
    sample_s: float = 1.0  # equity / inventory / plot sampling
    orders_per_s: float = 40.0
    orders_burst: float = 60.0
    cancels_per_s: float = 80.0
    cancels_burst: float = 120.0
    size_tolerance: float = 0.0


@dataclass
class OrderRecord:
    order_id: str
    token_id: str
    market: str
    side: str
    price: float
    size: float
    sent_ns: int
    rest_ns: int = 0
    end_ns: int = 0
    status: str = "sent"  # rested | rejected_cross | canceled | filled | open
    filled: float = 0.0
    queue_ahead: float = 0.0
    cancel_sent_ns: int = 0


@dataclass
class FillRecord:
    ts_ns: int
    token_id: str
    market: str
    side: str
    price: float
    size: float
    fee: float
    order_id: str
    trade_id: str


@dataclass
class Counters:
    events: int = 0
    bbo: int = 0
    l2: int = 0
    ptrades: int = 0
    btrades: int = 0
    collector_events: int = 0
    decisions: int = 0
    passes: int = 0
    posts: int = 0  # orders sent
    post_requests: int = 0
    cancels: int = 0  # orders a cancel was sent for
    cancel_requests: int = 0
    cancel_alls: int = 0
    risk_rejects: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    cross_rejects: int = 0
    strategy_errors: int = 0
    kills: dict[str, int] = field(default_factory=dict)


class Backtest:
    def __init__(self, cfg: EngineConfig, adapter: Any, specs: list[MarketSpec]) -> None:
        self.cfg = cfg
        self.adapter = adapter  # ExecutorAdapter (or any QuoteSource)
        self.ctx = getattr(adapter, "ctx", None)
        self.specs = specs
        self.now = 0
        self.risk = RiskEngine(cfg.limits, specs)
        self.ticks: dict[str, str] = {t: m.tick_size for m in specs for t in m.token_ids}
        self.venue = Venue(cfg.fill)
        self.positions = Positions()
        self.orders: dict[str, LiveOrder] = {}
        self.records: dict[str, OrderRecord] = {}
        self.fills: list[FillRecord] = []
        self.gaps: list[Gap] = []
        self.resolutions: dict[str, tuple[str, int]] = {}  # condition_id -> (winning token, ts)
        self.counters = Counters()
        self.cash = 0.0
        self.fees_paid = 0.0
        clock = lambda: self.now / 1e9  # noqa: E731 - the buckets' clock is the replay clock
        self.order_bucket = TokenBucket(cfg.orders_per_s, cfg.orders_burst, clock)
        self.cancel_bucket = TokenBucket(cfg.cancels_per_s, cfg.cancels_burst, clock)
        self._desired: dict[str, list[Quote]] = {}
        self._busy = False
        self._wake = False
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._next_id = 0
        self._armed = False
        self._cancel_first: set[str] = set()
        self._cancel_all_at = -1  # send time of the last cancel-all the venue executed
        self.binance_last_ns = 0
        self.poly_up = False
        self.poly_last_ns = 0
        self._timer_ns = int(cfg.timer_s * 1e9)
        self._supervise_ns = int(cfg.supervise_s * 1e9)
        self._sample_ns = int(cfg.sample_s * 1e9)
        self._next_timer = 0
        self._next_supervise = 0
        self._next_sample = 0
        self.symbols = {m.binance_symbol.upper() for m in cfg.markets}
        self.tokens = {t for m in specs for t in m.token_ids}
        self.token_market = {t: m.condition_id for m in specs for t in m.token_ids}
        self.fee_of = {t: cfg.fees.get(m.condition_id, Fees()) for m in specs for t in m.token_ids}
        # Series for the report (sampled every sample_s, plus every mid change for markouts).
        self.mids: dict[str, tuple[list[int], list[float]]] = {t: ([], []) for t in self.tokens}
        self.samples: list[dict[str, Any]] = []
        self.uptime_ticks: dict[str, list[int]] = {m.condition_id: [0, 0] for m in specs}  # quoted, total
        self.first_ns = 0
        self.progress: Callable[[int], None] | None = None
        self._fair_view = _fair_view(adapter)

    # -- scheduling ---------------------------------------------------------------------------------

    def _at(self, t: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, payload))

    def advance(self, t: int) -> None:
        """Run everything scheduled up to and including t, in time order."""
        heap = self._heap
        while True:
            nxt = heap[0][0] if heap else t + 1
            if self._next_supervise <= t and self._armed and not self.risk.active:
                self._skip_fresh_ticks(min(t, nxt, self._next_timer, self._next_sample))
            periodic = min(self._next_timer, self._next_supervise, self._next_sample)
            if nxt > t and periodic > t:
                return
            if periodic <= nxt and periodic <= t:
                self.now = max(self.now, periodic)
                if self._next_supervise == periodic:
                    self._next_supervise = periodic + self._supervise_ns
                    self._supervise()
                if self._next_timer == periodic:
                    self._next_timer = periodic + self._timer_ns
                    self._timer()
                if self._next_sample == periodic:
                    self._next_sample = periodic + self._sample_ns
                    self._sample()
                continue
            when, kind, _, payload = heapq.heappop(heap)
            self.now = max(self.now, when)
            self._run(kind, payload)

    def _skip_fresh_ticks(self, limit: int) -> None:
        """Run the supervisor ticks up to `limit` (inclusive) that would take `_supervise`'s fast
        path, i.e. do nothing: armed, no kill active, both feeds fresh. Nothing else runs before
        `limit` (it is at most the next scheduled work, timer and sample; at the same instant the
        supervisor goes first), so none of what the check reads changes in between: the same
        check per tick, without a pass of the scheduling loop each (50 per second)."""
        p = self._next_supervise
        b, pl = self.binance_last_ns, self.poly_last_ns
        if not (b and self.poly_up and pl):
            return
        lim = self.cfg.limits
        stale_b, stale_p = lim.binance_stale_ms * 1e6, lim.poly_feed_stale_ms * 1e6
        step = self._supervise_ns
        now = self.now
        while p <= limit:
            if p > now:
                now = p
            if not (now - b <= stale_b and now - pl <= stale_p):
                break
            p += step
        self.now = now
        self._next_supervise = p

    def start(self, t: int) -> None:
        self.now = self.first_ns = t
        self._next_timer = t + self._timer_ns
        self._next_supervise = t
        self._next_sample = t
        # Like the service: halted on whatever is not healthy yet, quietly, before anything runs.
        self.risk.evaluate(self._health(), starting=True)

    # -- the replay -----------------------------------------------------------------------------------

    def run_chunk(self, chunk: Chunk) -> None:
        ts, kinds, rows = chunk.ts, chunk.kind, chunk.row
        bbo, l2, ptr, ev = chunk.bbo, chunk.l2, chunk.ptrades, chunk.events
        c = self.counters
        heap = self._heap
        on_bbo = self._on_bbo
        for i in range(len(ts)):
            t = ts[i]
            if (
                (heap and heap[0][0] <= t)
                or self._next_supervise <= t
                or self._next_timer <= t
                or (self._next_sample <= t)
            ):
                self.advance(t)
            if t > self.now:
                self.now = t
            k = kinds[i]
            r = rows[i]
            if k == BBO:
                on_bbo(bbo, r)  # type: ignore[arg-type]
            elif k == L2:
                self._on_l2(l2, r)
            elif k == PTRADE:
                self._on_ptrade(ptr, r)
            elif k == EVENTS:
                self._on_event(ev, r)
            elif k == BTRADE:
                c.btrades += 1
            if self.progress is not None and (i & 0x3FFF) == 0:
                self.progress(t)
        c.events += len(ts)

    def _on_bbo(self, cols: Any, r: int) -> None:
        self.counters.bbo += 1
        d = cols.cols
        ev = Bbo(
            cols.part[r],
            d["sender_recv_ts"][r] or 0,
            d["exch_ts"][r] or 0,
            d["txn_ts"][r] or 0,
            d["update_id"][r] or 0,
            d["bid"][r],
            d["bid_qty"][r],
            d["ask"][r],
            d["ask_qty"][r],
            d["relay_seq"][r] or 0,
            0,
            self.now,
        )
        self.binance_last_ns = self.now  # engine.on_binance: arrival time
        self._ask(self.adapter.on_binance_bbo, ev)

    def _on_l2(self, rows: Any, r: int) -> None:
        self.counters.l2 += 1
        token = rows.token[r]
        book = self.venue.book(token)
        bo, ao = rows.bo, rows.ao
        b0, b1, a0, a1 = bo[r], bo[r + 1], ao[r], ao[r + 1]
        book.bid_px = rows.bid_px[b0:b1].tolist()
        book.bid_sz = rows.bid_sz[b0:b1].tolist()
        book.ask_px = rows.ask_px[a0:a1].tolist()
        book.ask_sz = rows.ask_sz[a0:a1].tolist()
        book.ts = self.now
        self.poly_up, self.poly_last_ns = True, self.now  # engine.set_poly_feed(True, recv_ts)
        mid = book.mid()
        if mid is not None:
            times, values = self.mids[token]
            if not values or values[-1] != mid:
                times.append(self.now)
                values.append(mid)
        for o, size in self.venue.on_book(token, book, self.now):
            self._venue_fill(o, size)
        self._ask(self.adapter.on_polymarket_book, token, book, self.now)

    def _on_ptrade(self, cols: Any, r: int) -> None:
        self.counters.ptrades += 1
        d = cols.cols
        token = cols.part[r]
        self.poly_last_ns = self.now
        side = d["side"][r] or ""
        for o, size in self.venue.on_trade(token, d["price"][r], d["size"][r], side, self.now):
            self._venue_fill(o, size)

    def _on_event(self, cols: Any, r: int) -> None:
        self.counters.collector_events += 1
        d = cols.cols
        source, kind, key = d["source"][r] or "", d["kind"][r] or "", d["key"][r] or ""
        detail = detail_of(d["detail"][r])
        if kind == "market_resolved":
            market, winner = str(detail.get("market", "")), str(detail.get("winning_asset_id", ""))
            if winner in self.tokens:
                self.resolutions[self.token_market[winner]] = (winner, self.now)
            elif market in self.uptime_ticks:
                self.resolutions[market] = (winner, self.now)
            return
        if kind == "tick_size_change" and key in self.tokens and detail.get("new_tick_size") is not None:
            tick = str(detail["new_tick_size"])
            self.ticks[key] = tick  # gateway.set_tick_size
            regrid = getattr(self.adapter, "on_tick_size_change", None)
            if regrid is not None:
                self._ask(regrid, key, float(tick))
            return
        if (source, kind) not in GAP_KINDS or not touches(source, key, detail, self.symbols, self.tokens):
            return
        if kind == "book_invalidated" and detail.get("reason") == "tick_size_change":
            return  # not a hole: the book is re-sent at once
        self.gaps.append(Gap(self.now, source, kind, key, d["detail"][r] or ""))
        if source == "polymarket" and kind == "disconnected":
            self.poly_up = False  # engine.set_poly_feed(False)
        if kind == "book_invalidated":
            for token in detail.get("assets_ids") or []:
                if token in self.venue.books:
                    self.venue.books[token] = Book()  # unknown until the next snapshot
        reason = KillReason.BINANCE_STALE if source == "binance" else KillReason.POLY_FEED_DOWN
        self._trip(reason, f"recorded gap: {source} {kind} {key}".strip())

    # -- strategy -------------------------------------------------------------------------------------

    def _ask(self, callback: Callable[..., Any], *args: Any) -> None:
        if self.ctx is not None:
            self.ctx.halted = self.risk.halted
        try:
            desired = callback(*args)
        except Exception:
            self.counters.strategy_errors += 1
            if self.counters.strategy_errors <= 3:
                log.warning("strategy %s raised", getattr(callback, "__name__", "?"), exc_info=True)
            return
        if desired is not None:
            self.counters.decisions += 1
            for token, quotes in desired.items():
                self._desired[token] = list(quotes)
            self._converge()

    def _timer(self) -> None:
        self._ask(self.adapter.on_timer, self.now)

    # -- executor: converge ---------------------------------------------------------------------------

    def _converge(self) -> None:
        if self._busy:
            self._wake = True
            return
        self.counters.passes += 1
        now = self.now
        desired = effective_desired(self._desired, self.risk, self.ticks, now)
        diff = diff_quotes(self.orders.values(), desired, self.cfg.size_tolerance)
        self._busy = True
        if diff.cancel:
            granted = self.cancel_bucket.take_up_to(len(diff.cancel))
            batch = diff.cancel[:granted]
            if not batch:
                self.counters.rate_limited += len(diff.cancel)
                self._wake = True  # the converge loop backs off (0.1 s), then tries again
                self._at(now + 100_000_000, _PASS_END, None)
                return
            rtt = self.cfg.latency.cancel_rtt_ns(now)
            for o in batch:
                o.state = OrderState.CANCELING
                rec = self.records[o.order_id]
                rec.cancel_sent_ns = now
                self._at(now + rtt, _VENUE_CANCEL, o.order_id)
            self.counters.cancels += len(batch)
            self.counters.cancel_requests += 1
            self._at(now + rtt, _CANCEL_DONE, ([o.order_id for o in batch], diff.place))
            return
        self._place(diff.place)

    def _place(self, quotes: list[Quote]) -> None:
        now = self.now
        if self.risk.halted or not quotes:
            self._end_pass()
            return
        approved: list[Quote] = []
        pending = list(self.orders.values())
        for q in quotes:
            reject = self.risk.check_order(q, pending, self.positions.shares, now)
            if reject is not None:
                why = reject.value
                self.counters.risk_rejects[why] = self.counters.risk_rejects.get(why, 0) + 1
                continue
            approved.append(q)
            pending.append(LiveOrder("?", q.token_id, "", q.side, q.price, q.size))
        granted = self.order_bucket.take_up_to(len(approved))
        limited = granted < len(approved)
        if limited:
            self.counters.rate_limited += len(approved) - granted
            self._wake = True  # not clean: another pass once this one is answered
        approved = approved[:granted]
        if not approved:
            if limited:  # nothing may go out now: the loop backs off (0.1 s), then tries again
                self._at(now + 100_000_000, _PASS_END, None)
            else:
                self._end_pass()
            return
        rtt = self.cfg.latency.post_rtt_ns(now)
        ids = []
        for q in approved:
            self._next_id += 1
            oid = f"bt-{self._next_id:08d}"
            market = self.token_market.get(q.token_id, "")
            self.orders[oid] = LiveOrder(oid, q.token_id, market, q.side, q.price, q.size, created_ns=now)
            self.records[oid] = OrderRecord(oid, q.token_id, market, q.side.value, q.price, q.size, now)
            self._at(now + rtt, _ARRIVE, oid)
            ids.append(oid)
        self.risk.record_sent(now, len(approved))
        self.counters.posts += len(approved)
        self.counters.post_requests += math.ceil(len(approved) / MAX_POST_BATCH)
        self._at(now + rtt, _ACK, ids)

    def _end_pass(self) -> None:
        self._busy = False
        if self._wake:
            self._wake = False
            self._converge()

    # -- scheduled work ---------------------------------------------------------------------------------

    def _run(self, kind: int, payload: Any) -> None:
        now = self.now
        if kind == _ARRIVE:
            rec = self.records[payload]
            o = SimOrder(payload, rec.token_id, Side(rec.side), rec.price, rec.size)
            if payload in self._cancel_first or self._cancel_all_at > rec.sent_ns:
                self._cancel_first.discard(payload)
                rec.status, rec.end_ns = "canceled", now
            elif self.venue.arrive(o, now):
                rec.status, rec.rest_ns, rec.queue_ahead = "rested", now, o.queue0
            else:
                rec.status, rec.end_ns = "rejected_cross", now
                self.counters.cross_rejects += 1
        elif kind == _ACK:
            for oid in payload:
                o = self.orders.get(oid)
                rec = self.records[oid]
                if o is None:
                    continue
                if rec.status == "rejected_cross":
                    del self.orders[oid]  # the CLOB refused it (post-only would cross)
                elif o.state is OrderState.PENDING:
                    o.state = OrderState.LIVE
                    o.acked_ns = now
            self._end_pass()
        elif kind == _VENUE_CANCEL:
            rec = self.records[payload]
            if self.venue.cancel(payload):
                rec.status, rec.end_ns = "canceled", now
            elif rec.status == "sent":  # the cancel overtook its post: the order never rests
                self._cancel_first.add(payload)
        elif kind == _CANCEL_DONE:
            ids, place = payload
            for oid in ids:
                self.orders.pop(oid, None)  # canceled, or not cancelable because filled: gone
            self._place(place)
        elif kind == _VENUE_CANCEL_ALL:
            self._cancel_all_at = max(self._cancel_all_at, payload)
            for oid in self.venue.cancel_all():
                rec = self.records[oid]
                rec.status, rec.end_ns = "canceled", now
        elif kind == _CANCEL_ALL_DONE:
            for oid in payload:
                self.orders.pop(oid, None)
        elif kind == _FILL:
            self._fill_notice(payload)
        elif kind == _PASS_END:
            self._end_pass()

    def _venue_fill(self, o: SimOrder, size: float) -> None:
        if size <= 0:
            return
        rec = self.records[o.order_id]
        rec.filled = round(rec.filled + size, 6)
        if o.remaining <= 0:
            rec.status, rec.end_ns = "filled", self.now
        # The fill notice travels back like the feed did: the user channel shows it at this stamp.
        self._at(self.now, _FILL, (o.order_id, size, self.now))

    def _fill_notice(self, payload: tuple[str, float, int]) -> None:
        oid, size, ts = payload
        rec = self.records[oid]
        side = Side(rec.side)
        fee_cfg = self.fee_of.get(rec.token_id, Fees())
        fee = (fee_cfg.maker_bps - fee_cfg.rebate_bps) / 1e4 * min(rec.price, 1 - rec.price) * size
        trade_id = f"bt-trade-{len(self.fills) + 1:08d}"
        fill = Fill(trade_id, oid, rec.token_id, rec.market, side, rec.price, size, ts, "MAKER")
        self.positions.apply(fill)
        self.cash += rec.price * size * (1 if side is Side.SELL else -1) - fee
        self.fees_paid += fee
        self.fills.append(
            FillRecord(ts, rec.token_id, rec.market, rec.side, rec.price, size, fee, oid, trade_id)
        )
        o = self.orders.get(oid)
        if o is not None:
            o.matched = round(o.matched + size, 6)
            if o.remaining <= 0:
                del self.orders[oid]
        breach = self.risk.position_breach(self.positions.shares)  # Executor._on_fill
        if breach is not None:
            self._trip(KillReason.LIMIT_BREACHED, breach)
        self._ask(self.adapter.on_fill, fill)

    # -- kill switches ------------------------------------------------------------------------------------

    def _health(self) -> Health:
        return Health(self.now, self.binance_last_ns, self.poly_up, self.poly_last_ns, True, True)

    def _supervise(self) -> None:
        if self._armed and not self.risk.active:
            # Fast path of RiskEngine.evaluate for the common case: everything fresh, nothing to do.
            lim = self.cfg.limits
            now = self.now
            if (
                self.binance_last_ns
                and now - self.binance_last_ns <= lim.binance_stale_ms * 1e6
                and self.poly_up
                and self.poly_last_ns
                and now - self.poly_last_ns <= lim.poly_feed_stale_ms * 1e6
            ):
                return
        if not self._armed:
            self.risk.evaluate(self._health(), starting=True)
            if not self.risk.halted:
                self._armed = True
                self._resumed()
            return
        tripped, cleared = self.risk.evaluate(self._health())
        if cleared:
            self._resumed()
        for reason in tripped:
            self._kill_effects(reason)

    def _trip(self, reason: KillReason, detail: str) -> None:
        quiet = not self._armed and reason not in LATCHING
        if not self.risk.trip(reason, detail, starting=quiet) or quiet:
            return
        self._kill_effects(reason)

    def _kill_effects(self, reason: KillReason) -> None:
        self.counters.kills[reason.value] = self.counters.kills.get(reason.value, 0) + 1
        self._desired = {t: [] for t in self._desired}  # orders.clear_desired
        self._cancel_all()

    def _cancel_all(self) -> None:
        rtt = self.cfg.latency.cancel_rtt_ns(self.now)
        self.counters.cancel_alls += 1
        self.cancel_bucket.force_take(1 + len(self.orders))
        self._at(self.now + rtt, _VENUE_CANCEL_ALL, self.now)
        self._at(self.now + rtt, _CANCEL_ALL_DONE, list(self.orders))

    def _resumed(self) -> None:
        if self.risk.halted:
            return
        self._converge()  # orders.wake()
        self._ask(self.adapter.on_timer, self.now)  # the service's on_resume

    # -- sampling ---------------------------------------------------------------------------------------

    def _sample(self) -> None:
        marked = 0.0
        inventory: dict[str, float] = {}
        for token, shares in self.positions.shares.items():
            inventory[token] = shares
            mid = self.venue.books[token].mid() if token in self.venue.books else None
            marked += shares * (mid if mid is not None else 0.0)
        quotes: dict[str, tuple[float | None, float | None]] = {}
        for token, resting in self.venue.resting.items():
            bids = [o.price for o in resting if o.side is Side.BUY]
            asks = [o.price for o in resting if o.side is Side.SELL]
            quotes[token] = (max(bids) if bids else None, min(asks) if asks else None)
        books = {
            t: (b.best_bid()[0] if b.bid_px else None, b.best_ask()[0] if b.ask_px else None)
            for t, b in self.venue.books.items()
        }
        for spec in self.specs:
            quoted = any(self.venue.resting.get(t) for t in spec.token_ids)
            ticks = self.uptime_ticks[spec.condition_id]
            ticks[0] += int(quoted)
            ticks[1] += 1
        self.samples.append(
            {
                "ts": self.now,
                "equity": self.cash + marked,
                "cash": self.cash,
                "inventory": inventory,
                "quotes": quotes,
                "books": books,
                "fair": self._fair_view(),
            }
        )

    def finish(self, end_ns: int) -> None:
        """End of the range: drain what is scheduled, then stop like SIGTERM (cancel everything)."""
        self.advance(end_ns)
        self.now = max(self.now, end_ns)
        self.risk.trip(KillReason.SIGTERM, "end of backtest range")
        self._cancel_all()
        while self._heap:
            when, kind, _, payload = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            self._run(kind, payload)
        for rec in self.records.values():
            if rec.status in ("rested", "sent"):
                rec.status = "open"


def _fair_view(adapter: Any) -> Callable[[], dict[str, float]]:
    """The reference strategy's fair value per YES token, for the plots (other strategies: none)."""
    strategy = getattr(adapter, "strategy", None)
    markets = getattr(strategy, "markets", None)
    if not isinstance(markets, list) or not markets or not hasattr(markets[0], "fair"):
        return dict

    def view() -> dict[str, float]:
        return {m.yes: m.fair for m in markets if m.fair is not None}

    return view
