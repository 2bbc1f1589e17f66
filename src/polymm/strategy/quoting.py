"""Turn a fair probability into YES bid/ask prices and sizes on the market's tick grid.

Prices are integer ticks (`n` = ticks per unit = 1 / tick: 10, 100, 200, 400, 1000 or 10000), so
0.0025 and 0.005 grids round exactly and `ticks / n` is the float nearest the decimal price.

Rules, in order:
- half-spread = max(min_edge, k * uncertainty); both quotes shift by -skew * net / net_limit
  (long YES -> lower both: buy less eagerly, sell more eagerly);
- bid rounds down, ask rounds up; neither goes through fair value (the skew may pull the
  position-reducing side up to fair, never beyond);
- post-only: bid < best ask and ask > best bid (stepping back one tick from the touch); a side
  whose price leaves [tick, 1 - tick] is dropped, never clamped towards the fair;
- sizes floor to 2 decimals, are cut to what the position limits (per token and net) and the
  pUSD budget allow, and a side below the market's minimum size is dropped.

The YES ask is either a NO bid at 1 - ask ("both" mode: no YES inventory needed) or a YES sell
("yes_only" mode: capped at the YES held, since the CLOB will not sell what we do not own).

Cost (Python 3.11 on the shared 2 vCPU dev box, timeit, 100k-200k loops): `make_quotes` ~3.8 us,
`needs_requote` ~0.5 us; a whole ReferenceStrategy.on_binance_bbo decision for one market (vol
update + fair value and greeks + quotes + requote check + output) ~8.3 us. Re-measure the first two
with `python -m polymm.strategy.quoting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class QuoteParams:
    ticks_per_unit: int
    min_edge: float
    quote_size: float
    min_size: float
    max_position: float  # shares per token
    max_net: float  # |YES - NO| shares
    max_notional: float  # pUSD: inventory cost + resting buys
    skew: float = 0.0  # probability shift at |net| = max_net
    uncertainty_k: float = 1.0
    yes_only: bool = False

    @classmethod
    def for_tick(cls, tick: float, **kw: float | bool) -> QuoteParams:
        return cls(ticks_per_unit=ticks_per_unit(tick), **kw)  # type: ignore[arg-type]


class TwoSided(NamedTuple):
    """Desired YES quotes. Ticks of 0 mean "no quote on this side". (A NamedTuple: cheapest to build.)"""

    n: int  # ticks per unit
    bid_ticks: int = 0
    bid_size: float = 0.0
    ask_ticks: int = 0
    ask_size: float = 0.0

    @property
    def bid(self) -> float | None:
        return self.bid_ticks / self.n if self.bid_ticks else None

    @property
    def ask(self) -> float | None:
        return self.ask_ticks / self.n if self.ask_ticks else None

    @property
    def no_bid(self) -> float | None:
        """The YES ask as a NO bid: buying NO at 1 - a is selling YES at a."""
        return (self.n - self.ask_ticks) / self.n if self.ask_ticks else None

    @property
    def empty(self) -> bool:
        return not self.bid_ticks and not self.ask_ticks


def ticks_per_unit(tick: float) -> int:
    n = round(1.0 / tick)
    if n <= 1 or abs(n * tick - 1.0) > 1e-9:
        raise ValueError(f"tick {tick} does not divide 1")
    return n


def to_ticks(price: float, n: int, *, up: bool) -> int:
    """Price -> ticks, rounding up (asks) or down (bids); EPS absorbs float noise on exact ticks."""
    x = price * n
    return math.ceil(x - _EPS) if up else math.floor(x + _EPS)


def floor_size(size: float) -> float:
    return math.floor(size * 100.0 + _EPS) / 100.0


def make_quotes(
    fair: float,
    p: QuoteParams,
    *,
    uncertainty: float = 0.0,
    yes_shares: float = 0.0,
    no_shares: float = 0.0,
    spent: float = 0.0,
    best_bid: float | None = None,
    best_ask: float | None = None,
) -> TwoSided:
    """YES quotes around `fair`. Positions are shares held (>= 0); `spent` is pUSD already in
    inventory; best_bid/best_ask are the YES book in YES terms (None: that side is empty)."""
    n = p.ticks_per_unit
    top = n - 1
    half = p.uncertainty_k * uncertainty
    if half < p.min_edge:
        half = p.min_edge
    net = yes_shares - no_shares
    max_net = p.max_net
    lean = net / max_net
    lean = 1.0 if lean > 1.0 else -1.0 if lean < -1.0 else lean
    center = fair - p.skew * lean
    fair_x = fair * n
    bid_t = math.floor((center - half) * n + _EPS)
    ask_t = math.ceil((center + half) * n - _EPS)
    # Never through fair value, whatever the skew.
    cap = math.floor(fair_x + _EPS)
    if bid_t > cap:
        bid_t = cap
    floor_ = math.ceil(fair_x - _EPS)
    if ask_t < floor_:
        ask_t = floor_
    if best_ask is not None:  # post-only: one tick under the best ask at most
        cap = math.ceil(best_ask * n - _EPS) - 1
        if bid_t > cap:
            bid_t = cap
    if best_bid is not None:
        floor_ = math.floor(best_bid * n + _EPS) + 1
        if ask_t < floor_:
            ask_t = floor_
    if bid_t < 1 or bid_t > top:
        bid_t = 0
    if ask_t < 1 or ask_t > top:
        ask_t = 0

    # Sizes: buying YES raises yes_shares and net; the ask (NO buy or YES sell) lowers net.
    size = p.quote_size
    bid_size = min(size, p.max_position - yes_shares, max_net - net) if bid_t else 0.0
    if p.yes_only:
        ask_size = min(size, yes_shares, max_net + net) if ask_t else 0.0
    else:
        ask_size = min(size, p.max_position - no_shares, max_net + net) if ask_t else 0.0
    bid_cost = bid_t / n if bid_t else 0.0
    ask_cost = 0.0 if p.yes_only or not ask_t else (n - ask_t) / n
    spend = bid_cost * max(bid_size, 0.0) + ask_cost * max(ask_size, 0.0)
    room = p.max_notional - spent
    if spend > room:  # both buys could fill: scale both into the budget
        scale = room / spend if room > 0.0 else 0.0
        if bid_cost:
            bid_size *= scale
        if ask_cost:
            ask_size *= scale
    # floor_size, inlined (hot path)
    bid_size = math.floor(bid_size * 100.0 + _EPS) / 100.0 if bid_size > 0.0 else 0.0
    ask_size = math.floor(ask_size * 100.0 + _EPS) / 100.0 if ask_size > 0.0 else 0.0
    if bid_size < p.min_size:
        bid_t, bid_size = 0, 0.0
    if ask_size < p.min_size:
        ask_t, ask_size = 0, 0.0
    if bid_t and ask_t and bid_t >= ask_t:
        # A one-tick book leaves no room for both: keep the side that reduces the position.
        if net > 0:
            bid_t, bid_size = 0, 0.0
        else:
            ask_t, ask_size = 0, 0.0
    return TwoSided(n, bid_t, bid_size, ask_t, ask_size)


def needs_requote(current: TwoSided | None, target: TwoSided, threshold: float, filled: bool = False) -> bool:
    """True when the live quotes should be replaced by `target`: a fill, nothing live yet, a tick
    change, a side appearing or vanishing, a size change, or a price move of >= threshold
    (probability points; at least one tick). Smaller moves keep the order and its queue place."""
    if filled or current is None or current.n != target.n:
        return True
    n = target.n
    min_move = threshold * n - _EPS
    if min_move < 1.0:
        min_move = 1.0
    cb, tb = current.bid_ticks, target.bid_ticks
    if (cb == 0) != (tb == 0) or (tb and (abs(cb - tb) >= min_move or current.bid_size != target.bid_size)):
        return True
    ca, ta = current.ask_ticks, target.ask_ticks
    return (ca == 0) != (ta == 0) or bool(
        ta and (abs(ca - ta) >= min_move or current.ask_size != target.ask_size)
    )


if __name__ == "__main__":  # per-decision cost, not part of the test suite
    import timeit

    params = QuoteParams.for_tick(
        0.01, min_edge=0.02, quote_size=10, min_size=5, max_position=100, max_net=100, max_notional=100,
        skew=0.02,
    )  # fmt: skip
    live = make_quotes(0.5, params)
    loops = 200_000
    cost = timeit.timeit(
        lambda: make_quotes(0.5123, params, uncertainty=0.01, yes_shares=20, best_bid=0.47, best_ask=0.53),
        number=loops,
    )
    check = timeit.timeit(lambda: needs_requote(live, live, 0.01), number=loops)
    print(f"make_quotes {cost / loops * 1e6:.2f} us, needs_requote {check / loops * 1e6:.2f} us")
