"""Turn a fair probability into bid/ask prices on the market's tick grid.

Prices are handled as integer ticks so that 0.0025-tick markets round exactly. Bids round down and
asks round up (never quote inside the edge), both stay within [tick, 1 - tick], inventory shifts
both against the position, and with post-only a quote never crosses the current book.
"""

from __future__ import annotations

import math

import msgspec

_EPS = 1e-9


class TwoSided(msgspec.Struct, frozen=True):
    bid: float | None  # YES bid (None: no bid)
    ask: float | None  # YES ask (None: no ask); executed as a NO bid at 1 - ask
    size: float


def to_ticks(price: float, tick: float, *, up: bool) -> int:
    x = price / tick
    return math.ceil(x - _EPS) if up else math.floor(x + _EPS)


def from_ticks(ticks: int, tick: float) -> float:
    decimals = max(0, -math.floor(math.log10(tick) + _EPS)) + 2
    return round(ticks * tick, decimals)


def two_sided(
    fair: float, *, tick: float, half_spread: float, position: float, max_position: float, size: float,
    skew_per_max: float, best_bid: float | None = None, best_ask: float | None = None, post_only: bool = True,
    min_size: float = 0.0,
) -> TwoSided:  # fmt: skip
    """Quotes around `fair`. `position` is net YES shares (NO counts negative); at +max_position
    the bid disappears, at -max_position the ask; in between both shift by skew_per_max * pos/max."""
    skew = -skew_per_max * (position / max_position) if max_position > 0 else 0.0
    top = round(1 / tick) - 1
    bid_t = min(top, max(1, to_ticks(fair - half_spread + skew, tick, up=False)))
    ask_t = min(top, max(1, to_ticks(fair + half_spread + skew, tick, up=True)))
    if post_only:
        if best_ask is not None:
            bid_t = min(bid_t, to_ticks(best_ask, tick, up=True) - 1)
        if best_bid is not None:
            ask_t = max(ask_t, to_ticks(best_bid, tick, up=False) + 1)
    size = math.floor(size * 100 + _EPS) / 100
    bid = from_ticks(bid_t, tick) if 1 <= bid_t <= top and position < max_position else None
    ask = from_ticks(ask_t, tick) if 1 <= ask_t <= top and position > -max_position else None
    if bid is not None and ask is not None and bid >= ask:
        bid = None  # a book so tight we cannot quote both sides without crossing ourselves
    if size < min_size:
        return TwoSided(None, None, size)
    return TwoSided(bid, ask, size)


def needs_requote(
    current: TwoSided | None, target: TwoSided, fair_move: float, threshold: float,
    best_bid: float | None = None, best_ask: float | None = None,
) -> bool:  # fmt: skip
    """Re-quote when fair value moved by >= threshold since the live quotes were set (rounded prices
    would flap at a tick boundary), when a side appears or vanishes or the size changes, or when
    a live quote would now cross the book."""
    if current is None or abs(fair_move) >= threshold - _EPS:
        return True
    if (current.bid is None) != (target.bid is None) or (current.ask is None) != (target.ask is None):
        return True
    if current.size != target.size:
        return True
    crossing_bid = current.bid is not None and best_ask is not None and current.bid >= best_ask - _EPS
    crossing_ask = current.ask is not None and best_bid is not None and current.ask <= best_bid + _EPS
    return crossing_bid or crossing_ask
