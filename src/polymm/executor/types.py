"""Small value types shared by the executor modules.

Prices are floats already on the market's tick grid and sizes are shares with 2 decimals, as the
CLOB takes them; `same_price`/`same_size` compare at that precision so float noise never causes a
cancel/replace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderState(StrEnum):
    PENDING = "PENDING"  # signed and sent, no answer yet
    LIVE = "LIVE"  # acknowledged, resting
    CANCELING = "CANCELING"  # cancel sent, no answer yet
    UNKNOWN = "UNKNOWN"  # post outcome ambiguous (timeout/5xx): resolved by cancel or reconcile


def same_price(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def same_size(a: float, b: float) -> bool:
    return abs(a - b) < 0.005  # sizes have 2 decimals


@dataclass(frozen=True, slots=True)
class Quote:
    """One resting order the strategy wants: token, side, price (on tick) and size (shares)."""

    token_id: str
    side: Side
    price: float
    size: float


def on_tick(q: Quote, tick: str | None) -> Quote:
    """`q` on the tick grid, rounded away from the touch (bids down, asks up), never towards it.

    The client would round to the nearest tick instead, which can move a bid up into the spread
    and makes the desired price differ from the live one on every pass (endless cancel/replace)."""
    if not tick:
        return q
    n = round(1 / float(tick))
    ticks = q.price * n
    snapped = math.floor(ticks + 1e-9) if q.side is Side.BUY else math.ceil(ticks - 1e-9)
    price = snapped / n
    return q if same_price(price, q.price) else Quote(q.token_id, q.side, price, q.size)


@dataclass(slots=True)
class LiveOrder:
    """An order of ours the executor believes may be resting on the book."""

    order_id: str
    token_id: str
    market: str  # condition id
    side: Side
    price: float
    size: float  # original size
    matched: float = 0.0
    state: OrderState = OrderState.PENDING
    created_ns: int = 0
    acked_ns: int = 0

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.size - self.matched, 6))

    @property
    def notional(self) -> float:
        return self.price * self.remaining


@dataclass(frozen=True, slots=True)
class Fill:
    """One match of one of our orders, from a user-channel trade event."""

    trade_id: str
    order_id: str
    token_id: str
    market: str
    side: Side  # our side
    price: float
    size: float
    ts_ns: int
    role: str = "MAKER"  # MAKER or TAKER


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What the executor needs to know about one market it quotes."""

    condition_id: str
    token_ids: tuple[str, ...]
    end_ts_s: float = 0.0  # 0 = no expiry known
    tick_size: str = "0.01"
    neg_risk: bool = False
    min_order_size: float = 5.0


@dataclass(slots=True)
class Positions:
    """Net shares per token, from fills (BUY adds, SELL subtracts); FAILED trades are voided."""

    shares: dict[str, float] = field(default_factory=dict)
    fills: dict[tuple[str, str], Fill] = field(default_factory=dict)  # (trade_id, order_id) -> fill

    def apply(self, fill: Fill) -> bool:
        """Book a fill once; False if this (trade, order) pair was already booked."""
        key = (fill.trade_id, fill.order_id)
        if key in self.fills:
            return False
        self.fills[key] = fill
        sign = 1.0 if fill.side is Side.BUY else -1.0
        self.shares[fill.token_id] = round(self.shares.get(fill.token_id, 0.0) + sign * fill.size, 6)
        return True

    def void(self, trade_id: str) -> list[Fill]:
        """Reverse every booked fill of a trade that FAILED on chain."""
        voided = [f for key, f in self.fills.items() if key[0] == trade_id]
        for fill in voided:
            del self.fills[(fill.trade_id, fill.order_id)]
            sign = 1.0 if fill.side is Side.BUY else -1.0
            self.shares[fill.token_id] = round(self.shares.get(fill.token_id, 0.0) - sign * fill.size, 6)
        return voided

    def get(self, token_id: str) -> float:
        return self.shares.get(token_id, 0.0)
