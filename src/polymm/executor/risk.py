"""Hard limits and kill switches. Pure: no I/O, time comes in as arguments.

Two kinds of stop:
- order checks (`check_order`) refuse one order with a `Reject` reason and change nothing else;
- kill switches (`KillReason`) stop all quoting; the caller cancels everything at once.
  Condition kills (stale data, feed or heartbeat down) clear themselves when the condition
  clears; latching kills (limit breach, SIGTERM, manual) stay until an operator clears them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from polymm.executor.types import LiveOrder, MarketSpec, Quote, Side

log = logging.getLogger("polymm.executor.risk")


class KillReason(StrEnum):
    BINANCE_STALE = "binance_stale"
    POLY_FEED_DOWN = "poly_feed_down"
    USER_WS_DOWN = "user_ws_down"
    HEARTBEAT_FAILED = "heartbeat_failed"
    LIMIT_BREACHED = "limit_breached"
    SIGTERM = "sigterm"
    MANUAL = "manual"


LATCHING = frozenset({KillReason.LIMIT_BREACHED, KillReason.SIGTERM, KillReason.MANUAL})


class Reject(StrEnum):
    KILLED = "killed"
    NEAR_EXPIRY = "near_expiry"
    UNKNOWN_MARKET = "unknown_market"
    BAD_QUOTE = "bad_quote"
    POSITION_TOKEN = "position_token"
    POSITION_MARKET = "position_market"
    OPEN_ORDERS = "open_orders"
    NOTIONAL = "notional"
    ORDER_RATE = "order_rate"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_position_per_token: float = 500.0  # shares, worst case if every resting order fills
    max_position_per_market: float = 1000.0  # gross shares over the market's tokens, worst case
    max_open_orders: int = 40
    max_notional: float = 2000.0  # pUSD: sum of price x remaining over resting orders
    max_orders_per_s: int = 30  # new orders accepted by risk in any 1 s window
    binance_stale_ms: float = 500.0
    poly_feed_stale_ms: float = 5000.0
    stop_before_expiry_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Health:
    """Inputs to the kill-switch evaluation, sampled by the caller."""

    now_ns: int
    binance_last_ns: int  # arrival of the last Binance update (0 = never)
    poly_feed_up: bool
    poly_feed_last_ns: int
    user_ws_up: bool
    heartbeat_ok: bool


class RiskEngine:
    def __init__(self, limits: RiskLimits, markets: Iterable[MarketSpec]) -> None:
        self.limits = limits
        self.markets: dict[str, MarketSpec] = {m.condition_id: m for m in markets}
        self.token_market: dict[str, str] = {
            t: m.condition_id for m in self.markets.values() for t in m.token_ids
        }
        self.active: dict[KillReason, str] = {}  # reason -> detail
        self._order_times: deque[int] = deque()
        self.rejects: dict[Reject, int] = {}

    # -- kill switches ----------------------------------------------------------------------------

    @property
    def halted(self) -> bool:
        return bool(self.active)

    def trip(self, reason: KillReason, detail: str = "", *, starting: bool = False) -> bool:
        """Activate a kill switch; True if it was not active before (caller cancels everything).

        `starting`: the service has not quoted yet, so this is a wait, not an alarm.
        """
        if reason in self.active:
            return False
        stopping = KillReason.SIGTERM in self.active
        self.active[reason] = detail
        if starting:
            log.info("waiting before quoting: %s %s", reason.value, detail)
        elif stopping:  # inputs going away during a clean stop are expected, not alarms
            log.info("while stopping: %s %s", reason.value, detail)
        elif reason is KillReason.SIGTERM:
            log.warning("KILL %s %s", reason.value, detail)
        else:
            log.error("KILL %s %s", reason.value, detail)
        return True

    def clear(self, reason: KillReason, *, starting: bool = False) -> bool:
        if self.active.pop(reason, None) is None:
            return False
        log.log(logging.INFO if starting else logging.WARNING, "kill switch cleared: %s", reason.value)
        return True

    def evaluate(self, h: Health, *, starting: bool = False) -> tuple[list[KillReason], list[KillReason]]:
        """Trip or clear the condition kills from current health; returns (tripped, cleared)."""
        lim = self.limits
        conditions: dict[KillReason, str | None] = {
            KillReason.BINANCE_STALE: (
                None
                if h.binance_last_ns and (h.now_ns - h.binance_last_ns) <= lim.binance_stale_ms * 1e6
                else f"age_ms={_age_ms(h.now_ns, h.binance_last_ns)}"
            ),
            KillReason.POLY_FEED_DOWN: (
                None
                if h.poly_feed_up
                and h.poly_feed_last_ns
                and (h.now_ns - h.poly_feed_last_ns) <= lim.poly_feed_stale_ms * 1e6
                else f"up={h.poly_feed_up} age_ms={_age_ms(h.now_ns, h.poly_feed_last_ns)}"
            ),
            KillReason.USER_WS_DOWN: None if h.user_ws_up else "user channel disconnected",
            KillReason.HEARTBEAT_FAILED: None if h.heartbeat_ok else "no accepted heartbeat",
        }
        tripped: list[KillReason] = []
        cleared: list[KillReason] = []
        for reason, bad in conditions.items():
            if bad is not None:
                if self.trip(reason, bad, starting=starting):
                    tripped.append(reason)
            elif self.clear(reason, starting=starting):
                cleared.append(reason)
        return tripped, cleared

    # -- per-market gating ---------------------------------------------------------------------

    def market_quotable(self, condition_id: str, now_ns: int) -> Reject | None:
        spec = self.markets.get(condition_id)
        if spec is None:
            return Reject.UNKNOWN_MARKET
        if spec.end_ts_s and now_ns / 1e9 >= spec.end_ts_s - self.limits.stop_before_expiry_s:
            return Reject.NEAR_EXPIRY
        return None

    # -- order checks ----------------------------------------------------------------------------

    def check_order(
        self,
        quote: Quote,
        open_orders: Iterable[LiveOrder],
        positions: dict[str, float],
        now_ns: int,
    ) -> Reject | None:
        """Would resting `quote` next to `open_orders` keep every hard limit, even if all filled?"""
        reason = self._check(quote, list(open_orders), positions, now_ns)
        if reason is not None:
            self.rejects[reason] = self.rejects.get(reason, 0) + 1
        return reason

    def would_reject(
        self,
        quote: Quote,
        open_orders: Iterable[LiveOrder],
        positions: dict[str, float],
        now_ns: int,
    ) -> Reject | None:
        """`check_order` for a what-if question (overlap.py): the same checks, nothing counted."""
        return self._check(quote, list(open_orders), positions, now_ns)

    def record_sent(self, now_ns: int, n: int = 1) -> None:
        """Count orders that passed and were sent, for the rate limit."""
        self._order_times.extend([now_ns] * n)

    def _check(
        self, quote: Quote, orders: list[LiveOrder], positions: dict[str, float], now_ns: int
    ) -> Reject | None:
        lim = self.limits
        if self.active:
            return Reject.KILLED
        market = self.token_market.get(quote.token_id)
        if market is None:
            return Reject.UNKNOWN_MARKET
        gate = self.market_quotable(market, now_ns)
        if gate is not None:
            return gate
        if not (0.0 < quote.price < 1.0) or quote.size <= 0 or quote.size != quote.size:
            return Reject.BAD_QUOTE
        if len(orders) + 1 > lim.max_open_orders:
            return Reject.OPEN_ORDERS
        if sum(o.notional for o in orders) + quote.price * quote.size > lim.max_notional + 1e-9:
            return Reject.NOTIONAL
        long_, short = _worst_case(quote.token_id, orders, positions, extra=quote)
        if max(long_, -short) > lim.max_position_per_token + 1e-9:
            return Reject.POSITION_TOKEN
        gross = 0.0
        for token in self.markets[market].token_ids:
            lo, sh = _worst_case(token, orders, positions, extra=quote if token == quote.token_id else None)
            gross += max(abs(lo), abs(sh))
        if gross > lim.max_position_per_market + 1e-9:
            return Reject.POSITION_MARKET
        window_start = now_ns - 1_000_000_000
        while self._order_times and self._order_times[0] < window_start:
            self._order_times.popleft()
        if len(self._order_times) + 1 > lim.max_orders_per_s:
            return Reject.ORDER_RATE
        return None

    def position_breach(self, positions: dict[str, float]) -> str | None:
        """A filled position over a limit (e.g. fills we did not expect): a latching kill."""
        lim = self.limits
        for token, shares in positions.items():
            if abs(shares) > lim.max_position_per_token + 1e-9:
                return f"token {token} position {shares}"
        for spec in self.markets.values():
            gross = sum(abs(positions.get(t, 0.0)) for t in spec.token_ids)
            if gross > lim.max_position_per_market + 1e-9:
                return f"market {spec.condition_id} gross position {gross}"
        return None


def _worst_case(
    token: str, orders: list[LiveOrder], positions: dict[str, float], extra: Quote | None
) -> tuple[float, float]:
    """(position if every resting BUY fills, position if every resting SELL fills)."""
    pos = positions.get(token, 0.0)
    buys = sum(o.remaining for o in orders if o.token_id == token and o.side is Side.BUY)
    sells = sum(o.remaining for o in orders if o.token_id == token and o.side is Side.SELL)
    if extra is not None and extra.token_id == token:
        if extra.side is Side.BUY:
            buys += extra.size
        else:
            sells += extra.size
    return pos + buys, pos - sells


def _age_ms(now_ns: int, last_ns: int) -> str:
    return "never" if not last_ns else f"{(now_ns - last_ns) / 1e6:.0f}"
