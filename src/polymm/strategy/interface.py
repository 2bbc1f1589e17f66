"""The strategy plug-in interface: what the executor (and a backtester) calls, and what it returns.

A strategy is a plain object with four callbacks. It owns no clock, no I/O and no order state:
the caller owns a `StrategyContext` (time, positions, staleness flags), updates it before each
callback, and the strategy only reads it, so the same event sequence always gives the same
quotes (replay = backtest).

Each callback returns `Desired`: {token_id: [DesiredQuote, ...]} for the tokens whose quotes
should change, the full set for that token ("latest wins"). A token mapped to [] means "cancel
everything on it"; a token left out means "leave it alone"; {} means no change. The caller diffs
this against its live orders and cancels/replaces (Polymarket has no amend).

`ExecutorAdapter` wraps a strategy into the executor's `QuoteSource` shape (OrderBook objects,
executor Fill/Quote types, None for "no change") and keeps the context up to date from fills.

Optional views a strategy may offer: `fair_value(token_id) -> float | None`, its current P(YES)
for the market of that token (the executor shows it beside each requote).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from polymm.relay.events import Bbo


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class DesiredQuote:
    """One resting post-only order the strategy wants: price on the tick grid, size in shares."""

    token_id: str
    side: Side
    price: float
    size: float


Desired = dict[str, list[DesiredQuote]]

Level = tuple[float, float]  # (price, size)
BookLevels = tuple[Sequence[Level], Sequence[Level]]  # (bids best first, asks best first)


@dataclass(frozen=True, slots=True)
class Fill:
    """One match of one of our orders, on our side."""

    token_id: str
    side: Side
    price: float
    size: float
    ts_ns: int = 0
    trade_id: str = ""
    order_id: str = ""


@dataclass(slots=True)
class Position:
    """Shares held in one token and the pUSD they cost (buys add, sells take out)."""

    shares: float = 0.0
    cost: float = 0.0

    def apply(self, side: Side | str, price: float, size: float) -> None:
        sign = 1.0 if side == Side.BUY else -1.0
        self.shares = round(self.shares + sign * size, 6)
        self.cost = round(self.cost + sign * price * size, 6)


@dataclass(slots=True)
class StrategyContext:
    """What the caller tells the strategy besides market data. The caller writes, the strategy reads.

    now_ns: wall clock (unix ns) at the callback; a backtester sets it to the event time.
    positions: per token; `apply_fill` books a fill once per (trade_id, order_id).
    binance_stale / polymarket_stale: the caller's own liveness verdicts; any True pulls quotes.
    halted: the caller is not quoting (a kill switch is active and its orders are cancelled); pull
      quotes, and quote afresh once it clears rather than assume the old ones still rest.
    """

    now_ns: int = 0
    positions: dict[str, Position] = field(default_factory=dict)
    binance_stale: bool = False
    polymarket_stale: bool = False
    halted: bool = False
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def position(self, token_id: str) -> Position:
        pos = self.positions.get(token_id)
        if pos is None:
            pos = self.positions[token_id] = Position()
        return pos

    def apply_fill(self, fill: Fill) -> bool:
        """Book a fill; False (and no change) if this trade/order pair was booked already."""
        if fill.trade_id or fill.order_id:
            key = (fill.trade_id, fill.order_id)
            if key in self._seen:
                return False
            self._seen.add(key)
        self.position(fill.token_id).apply(fill.side, fill.price, fill.size)
        return True

    def void_fill(self, fill: Fill) -> None:
        """Reverse a fill whose trade FAILED on chain."""
        self._seen.discard((fill.trade_id, fill.order_id))
        opposite = Side.SELL if fill.side == Side.BUY else Side.BUY
        self.position(fill.token_id).apply(opposite, fill.price, fill.size)


class Strategy(Protocol):
    def on_binance_bbo(self, bbo: Bbo) -> Desired: ...

    def on_polymarket_book(
        self,
        token_id: str,
        best_bid: float | None,
        best_ask: float | None,
        book_levels: BookLevels | None,
        ts: int,
    ) -> Desired: ...

    def on_fill(self, fill: Fill) -> Desired: ...

    def on_timer(self, now_ns: int) -> Desired: ...


class ExecutorAdapter:
    """The executor's QuoteSource around a Strategy (see polymm.executor.service.QuoteSource).

    Sets ctx.now_ns from `clock` before every callback, books fills into ctx (once per
    trade/order, the executor replays MATCHED/MINED/CONFIRMED), and converts DesiredQuote into the
    executor's Quote. Wire `on_void` to the order manager's on_void so FAILED trades are reversed.
    `book_depth` > 0 passes that many levels per side to the strategy (0: top of book only).
    """

    def __init__(
        self,
        strategy: Strategy,
        ctx: StrategyContext,
        clock: Callable[[], int] = time.time_ns,
        book_depth: int = 0,
    ) -> None:
        from polymm.executor.types import Quote
        from polymm.executor.types import Side as ExecSide

        self.strategy = strategy
        self.ctx = ctx
        self._clock = clock
        self._depth = book_depth
        self._quote = Quote
        self._sides = {Side.BUY: ExecSide.BUY, Side.SELL: ExecSide.SELL}

    def _out(self, desired: Desired) -> dict[str, list[Any]] | None:
        if not desired:
            return None
        quote, sides = self._quote, self._sides
        return {
            token: [quote(q.token_id, sides[q.side], q.price, q.size) for q in quotes]
            for token, quotes in desired.items()
        }

    def on_binance_bbo(self, bbo: Bbo) -> dict[str, list[Any]] | None:
        self.ctx.now_ns = self._clock()
        return self._out(self.strategy.on_binance_bbo(bbo))

    def on_polymarket_book(self, token_id: str, book: Any, recv_ts: int) -> dict[str, list[Any]] | None:
        self.ctx.now_ns = self._clock()
        if getattr(book, "valid", True):
            bid, ask = book.best_bid(), book.best_ask()
            levels = book.top(self._depth) if self._depth > 0 else None
        else:
            bid = ask = levels = None  # a dropped book (tick change, resync): no post-only guard
        return self._out(
            self.strategy.on_polymarket_book(
                token_id, bid[0] if bid else None, ask[0] if ask else None, levels, recv_ts
            )
        )

    def on_fill(self, fill: Any) -> dict[str, list[Any]] | None:
        self.ctx.now_ns = self._clock()
        ours = _fill(fill)
        if not self.ctx.apply_fill(ours):
            return None
        return self._out(self.strategy.on_fill(ours))

    def on_void(self, fill: Any) -> None:
        self.ctx.void_fill(_fill(fill))

    def on_timer(self, now_ns: int) -> dict[str, list[Any]] | None:
        self.ctx.now_ns = now_ns
        return self._out(self.strategy.on_timer(now_ns))

    def fair_value(self, token_id: str) -> float | None:
        """The strategy's P(YES) for the market of `token_id`, if it offers one."""
        view = getattr(self.strategy, "fair_value", None)
        return view(token_id) if view is not None else None

    def on_tick_size_change(self, token_id: str, tick_size: float) -> dict[str, list[Any]] | None:
        """Optional for a strategy: one that quotes a fixed grid may leave it out."""
        handler = getattr(self.strategy, "on_tick_size_change", None)
        if handler is None:
            return None
        self.ctx.now_ns = self._clock()
        return self._out(handler(token_id, tick_size))


def _fill(fill: Any) -> Fill:
    return Fill(
        fill.token_id, Side(str(fill.side)), fill.price, fill.size, fill.ts_ns, fill.trade_id, fill.order_id
    )
