"""Order book and matching of the local CLOB.

One book per market (condition id), kept in YES terms: a NO BUY at p rests as a YES ask at 1-p and a
NO SELL at p as a YES bid at 1-p. That is how Polymarket matches complementary orders (mint/merge),
so a YES bid at 0.45 and a NO bid at 0.56 cross. Prices are integer pips (1e-4, the finest tick) and
sizes integer micro-shares (1e-6, the token decimals), so nothing drifts by float error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

PIPS = 10_000  # price units per 1.0; every Polymarket tick is a multiple of 0.0001
MICRO = 1_000_000  # token and pUSD decimals


def fmt_price(pips: int) -> str:
    """'0.45', '0.005', '1' — the shortest decimal form, as the API prints prices."""
    text = f"{pips / PIPS:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def fmt_size(micro: int) -> str:
    """'12.34', '5', '0.000001' — the shortest decimal form of a micro-unit amount."""
    whole, frac = divmod(micro, MICRO)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:06d}".rstrip("0")


def to_pips(text: str | float) -> int:
    return round(float(text) * PIPS)


def to_micro(text: str | float) -> int:
    return round(float(text) * MICRO)


_seq = itertools.count()


@dataclass(eq=False, slots=True)
class Order:
    """A resting or finished order. `side`/`price` are in the order's own token; `c_*` in YES terms."""

    id: str
    owner: str | None  # API key; None for external (test-injected) liquidity
    maker_address: str
    market: str
    asset_id: str
    outcome: str
    side: str
    price: int
    original: int
    order_type: str
    expiration: int
    created_at: float
    c_side: str
    c_price: int
    matched: int = 0
    status: str = "LIVE"
    trades: list[str] = field(default_factory=list)
    seq: int = field(default_factory=lambda: next(_seq))

    @property
    def remaining(self) -> int:
        return self.original - self.matched


@dataclass(eq=False, slots=True)
class Fill:
    maker: Order
    size: int  # micro-shares
    c_price: int  # YES-terms price of the maker level


class MarketBook:
    """Price-time priority book of one market, in YES terms."""

    def __init__(self, market: str, yes_token: str, no_token: str) -> None:
        self.market = market
        self.yes_token = yes_token
        self.no_token = no_token
        self.bids: dict[int, list[Order]] = {}
        self.asks: dict[int, list[Order]] = {}

    def canonical(self, asset_id: str, side: str, price: int) -> tuple[str, int]:
        if asset_id == self.yes_token:
            return side, price
        return ("SELL" if side == "BUY" else "BUY"), PIPS - price

    def own_price(self, asset_id: str, c_price: int) -> int:
        return c_price if asset_id == self.yes_token else PIPS - c_price

    def best(self) -> tuple[int | None, int | None]:
        return (max(self.bids) if self.bids else None), (min(self.asks) if self.asks else None)

    def crosses(self, c_side: str, c_price: int) -> bool:
        bid, ask = self.best()
        if c_side == "BUY":
            return ask is not None and ask <= c_price
        return bid is not None and bid >= c_price

    def fillable(self, c_side: str, c_price: int) -> int:
        """Size available to a taker up to its limit (for FOK checks)."""
        total = 0
        levels = self.asks if c_side == "BUY" else self.bids
        for p, orders in levels.items():
            if (c_side == "BUY" and p <= c_price) or (c_side == "SELL" and p >= c_price):
                total += sum(o.remaining for o in orders)
        return total

    def match(self, c_side: str, c_price: int, size: int) -> list[Fill]:
        """Take up to `size` from the opposite side at prices no worse than `c_price`."""
        fills: list[Fill] = []
        levels = self.asks if c_side == "BUY" else self.bids
        while size > 0 and levels:
            best = min(levels) if c_side == "BUY" else max(levels)
            if (c_side == "BUY" and best > c_price) or (c_side == "SELL" and best < c_price):
                break
            queue = levels[best]
            while size > 0 and queue:
                maker = queue[0]
                take = min(size, maker.remaining)
                maker.matched += take
                size -= take
                fills.append(Fill(maker, take, best))
                if maker.remaining == 0:
                    maker.status = "MATCHED"
                    queue.pop(0)
            if not queue:
                del levels[best]
        return fills

    def rest(self, order: Order) -> None:
        levels = self.bids if order.c_side == "BUY" else self.asks
        levels.setdefault(order.c_price, []).append(order)

    def remove(self, order: Order) -> bool:
        levels = self.bids if order.c_side == "BUY" else self.asks
        queue = levels.get(order.c_price)
        if not queue or order not in queue:
            return False
        queue.remove(order)
        if not queue:
            del levels[order.c_price]
        return True

    def level_total(self, c_side: str, c_price: int) -> int:
        levels = self.bids if c_side == "BUY" else self.asks
        return sum(o.remaining for o in levels.get(c_price, ()))

    def orders(self) -> Iterator[Order]:
        for levels in (self.bids, self.asks):
            for queue in levels.values():
                yield from queue

    def view(self, asset_id: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) of `asset_id` as (price pips, size micro), best first."""
        bids = [(p, sum(o.remaining for o in q)) for p, q in self.bids.items()]
        asks = [(p, sum(o.remaining for o in q)) for p, q in self.asks.items()]
        if asset_id == self.yes_token:
            return sorted(bids, reverse=True), sorted(asks)
        return sorted((PIPS - p, s) for p, s in asks)[::-1], sorted((PIPS - p, s) for p, s in bids)
