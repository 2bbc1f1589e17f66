"""The venue side of a backtest: our resting orders against the recorded Polymarket book.

The recorded book does not contain our orders (we were not there), so our order is placed in it
virtually:
- on arrival a post-only order that would cross the recorded book is rejected (bid >= best ask,
  ask <= best bid), as the CLOB does;
- the queue ahead of it is the size the recorded book shows at its price at arrival (it joins at
  the back); size added later at that price is behind it;
- recorded trades at its price consume the queue ahead first; whatever of a trade is left after
  the queue fills it (partial fills included). A trade at a worse price (through our price), or
  a recorded book whose other side reaches our price, fills what remains;
- a size decrease at its price that no trade explains is a cancellation somewhere in the queue
  (`queue_decrease`): "proportional" (default) takes the share that was ahead of us, "front"
  takes all of it from ahead, "none" ignores it. The queue ahead is never more than the size
  shown. A decrease seen in the book and the trade that caused it (either order of arrival,
  within `trade_window_ms`) are counted once.
With `own_orders_in_book` (a lake recorded while the same strategy traded live) the size of our
own orders is taken out of the shown size before any of this.
Fills are at our price (we are the maker). Which recorded trades hit bids and which lift asks
comes from the trade's taker `side` (SELL hits bids, BUY lifts asks).
"""

from __future__ import annotations

from dataclasses import dataclass

from polymm.executor.types import Side, same_price

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class FillParams:
    queue_decrease: str = "proportional"  # proportional | front | none
    trade_window_ms: float = 200.0
    book_cross_fills: bool = True
    # The lake was recorded while this account quoted (the recorded book shows our own orders):
    # our own resting size at a price is not queue ahead of us.
    own_orders_in_book: bool = False


class SimOrder:
    __slots__ = (
        "ahead",
        "cancel_at",
        "credit",
        "credit_ns",
        "order_id",
        "price",
        "queue0",
        "remaining",
        "rest_ns",
        "shown",
        "side",
        "size",
        "token_id",
    )

    def __init__(self, order_id: str, token_id: str, side: Side, price: float, size: float) -> None:
        self.order_id = order_id
        self.token_id = token_id
        self.side = side
        self.price = price
        self.size = size
        self.remaining = size
        self.ahead = 0.0
        self.queue0 = 0.0  # queue ahead at arrival (for orders.parquet)
        self.shown = 0.0  # size the book showed at our price, minus trades since
        self.credit = 0.0  # queue already taken off by a book decrease a trade may explain
        self.credit_ns = 0
        self.rest_ns = 0
        self.cancel_at: int | None = None


class Book:
    """The recorded book of one token: levels best first."""

    __slots__ = ("ask_px", "ask_sz", "bid_px", "bid_sz", "ts")

    def __init__(self) -> None:
        self.bid_px: list[float] = []
        self.bid_sz: list[float] = []
        self.ask_px: list[float] = []
        self.ask_sz: list[float] = []
        self.ts = 0

    @property
    def valid(self) -> bool:
        return bool(self.bid_px or self.ask_px)

    def best_bid(self) -> tuple[float, float] | None:
        return (self.bid_px[0], self.bid_sz[0]) if self.bid_px else None

    def best_ask(self) -> tuple[float, float] | None:
        return (self.ask_px[0], self.ask_sz[0]) if self.ask_px else None

    def mid(self) -> float | None:
        if self.bid_px and self.ask_px:
            return 0.5 * (self.bid_px[0] + self.ask_px[0])
        return None

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (
            list(zip(self.bid_px[:n], self.bid_sz[:n], strict=True)),
            list(zip(self.ask_px[:n], self.ask_sz[:n], strict=True)),
        )

    def size_at(self, side: Side, price: float) -> float:
        px, sz = (self.bid_px, self.bid_sz) if side is Side.BUY else (self.ask_px, self.ask_sz)
        for p, s in zip(px, sz, strict=True):
            if abs(p - price) < _EPS:
                return s
        return 0.0

    def crosses(self, side: Side, price: float) -> bool:
        """Would a post-only order at `price` take liquidity now?"""
        if side is Side.BUY:
            return bool(self.ask_px) and price >= self.ask_px[0] - _EPS
        return bool(self.bid_px) and price <= self.bid_px[0] + _EPS


Fill = tuple[SimOrder, float]  # (order, size filled now)


class Venue:
    def __init__(self, params: FillParams) -> None:
        self.params = params
        self.books: dict[str, Book] = {}
        self.resting: dict[str, list[SimOrder]] = {}
        self.by_id: dict[str, SimOrder] = {}
        self._window = int(params.trade_window_ms * 1e6)

    def book(self, token_id: str) -> Book:
        b = self.books.get(token_id)
        if b is None:
            b = self.books[token_id] = Book()
        return b

    # -- orders -------------------------------------------------------------------------------------

    def arrive(self, o: SimOrder, now: int) -> bool:
        """A post reaches the venue; False = rejected (post-only would cross)."""
        book = self.book(o.token_id)
        if book.crosses(o.side, o.price):
            return False
        o.ahead = o.shown = o.queue0 = self._shown(book, o, o.remaining)
        o.rest_ns = now
        self.resting.setdefault(o.token_id, []).append(o)
        self.by_id[o.order_id] = o
        return True

    def cancel(self, order_id: str) -> bool:
        """A cancel reaches the venue; False if the order no longer rests (filled)."""
        o = self.by_id.pop(order_id, None)
        if o is None:
            return False
        self.resting[o.token_id].remove(o)
        return True

    def cancel_all(self) -> list[str]:
        ids = sorted(self.by_id)
        self.by_id.clear()
        self.resting.clear()
        return ids

    # -- market data ----------------------------------------------------------------------------------

    def on_book(self, token_id: str, book: Book, now: int) -> list[Fill]:
        """The recorded book changed (already updated in place): queue effects and cross fills."""
        orders = self.resting.get(token_id)
        if not orders:
            return []
        fills: list[Fill] = []
        mode = self.params.queue_decrease
        for o in list(orders):
            if self.params.book_cross_fills and book.crosses(o.side, o.price):
                fills.append(self._fill(o, o.remaining))
                continue
            shown = self._shown(book, o, 0.0)
            before = o.ahead
            if shown < o.shown - _EPS:
                d = o.shown - shown  # not explained by a trade yet
                if mode == "front":
                    o.ahead -= d
                elif mode == "proportional" and o.shown > _EPS:
                    o.ahead -= d * (o.ahead / o.shown)
            o.ahead = max(0.0, min(o.ahead, shown))
            if o.ahead < before - _EPS:
                o.credit += before - o.ahead
                o.credit_ns = now
            o.shown = shown
        return fills

    def on_trade(self, token_id: str, price: float, size: float, side: str, now: int) -> list[Fill]:
        orders = self.resting.get(token_id)
        if not orders or size <= 0:
            return []
        hits = Side.BUY if side.upper() == "SELL" else Side.SELL  # a taker SELL hits resting bids
        fills: list[Fill] = []
        for o in list(orders):
            if o.side is not hits:
                continue
            through = price < o.price - _EPS if hits is Side.BUY else price > o.price + _EPS
            if through:
                fills.append(self._fill(o, o.remaining))
                continue
            if not same_price(price, o.price):
                continue
            x = size
            if o.credit > 0 and now - o.credit_ns <= self._window:
                used = min(o.credit, x)
                o.credit -= used
                x -= used
            else:
                o.credit = 0.0
            o.shown = max(0.0, o.shown - size)
            o.ahead -= x
            if o.ahead < -_EPS:
                take = min(o.remaining, -o.ahead)
                o.ahead = 0.0
                fills.append(self._fill(o, take))
            o.ahead = max(0.0, o.ahead)
        return fills

    def _shown(self, book: Book, o: SimOrder, extra: float) -> float:
        shown = book.size_at(o.side, o.price)
        if not self.params.own_orders_in_book:
            return shown
        own = extra + sum(
            x.remaining
            for x in self.resting.get(o.token_id, ())
            if x.side is o.side and abs(x.price - o.price) < _EPS
        )
        return max(0.0, shown - own)

    def _fill(self, o: SimOrder, size: float) -> Fill:
        size = round(min(size, o.remaining), 6)
        o.remaining = round(o.remaining - size, 6)
        if o.remaining <= 0:
            self.by_id.pop(o.order_id, None)
            self.resting[o.token_id].remove(o)
        return o, size
