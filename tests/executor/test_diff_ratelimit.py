from __future__ import annotations

from polymm.executor.orders import diff_quotes
from polymm.executor.ratelimit import TokenBucket
from polymm.executor.types import Fill, LiveOrder, OrderState, Positions, Quote, Side, on_tick

from .conftest import CONDITION, TOKEN_DOWN, TOKEN_UP


def lo(
    oid: str,
    side: Side,
    price: float,
    size: float,
    state: OrderState = OrderState.LIVE,
    token: str = TOKEN_UP,
    matched: float = 0.0,
) -> LiveOrder:
    return LiveOrder(oid, token, CONDITION, side, price, size, matched=matched, state=state)


def test_keep_matching_orders_and_replace_changed() -> None:
    live = [lo("a", Side.BUY, 0.45, 10), lo("b", Side.SELL, 0.55, 10)]
    d = diff_quotes(
        live, {TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.45, 10), Quote(TOKEN_UP, Side.SELL, 0.56, 10)]}
    )
    assert [o.order_id for o in d.keep] == ["a"]
    assert [o.order_id for o in d.cancel] == ["b"]
    assert d.place == [Quote(TOKEN_UP, Side.SELL, 0.56, 10)]


def test_float_noise_does_not_churn() -> None:
    live = [lo("a", Side.BUY, 0.1 + 0.2, 10.0)]
    d = diff_quotes(live, {TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.3, 10.001)]})
    assert d.keep and not d.cancel and not d.place


def test_partial_fill_replaced_unless_tolerated() -> None:
    live = [lo("a", Side.BUY, 0.45, 10, matched=3)]
    want = {TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.45, 10)]}
    d = diff_quotes(live, want)
    assert [o.order_id for o in d.cancel] == ["a"] and len(d.place) == 1
    d = diff_quotes(live, want, size_tolerance=0.5)
    assert d.keep and not d.cancel and not d.place


def test_tokens_not_mentioned_are_untouched_and_empty_list_flattens() -> None:
    live = [lo("a", Side.BUY, 0.45, 10), lo("b", Side.BUY, 0.40, 10, token=TOKEN_DOWN)]
    d = diff_quotes(live, {TOKEN_DOWN: []})
    assert [o.order_id for o in d.cancel] == ["b"] and not d.keep and not d.place


def test_pending_counts_canceling_and_unknown_ignored() -> None:
    live = [
        lo("p", Side.BUY, 0.45, 10, OrderState.PENDING),
        lo("c", Side.BUY, 0.45, 10, OrderState.CANCELING),
        lo("u", Side.SELL, 0.55, 10, OrderState.UNKNOWN),
    ]
    d = diff_quotes(live, {TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.45, 10)]})
    assert [o.order_id for o in d.keep] == ["p"] and not d.cancel and not d.place


def test_multiple_levels_multiset_match() -> None:
    live = [lo("a", Side.BUY, 0.45, 10), lo("b", Side.BUY, 0.45, 10), lo("c", Side.BUY, 0.44, 10)]
    want = [Quote(TOKEN_UP, Side.BUY, 0.45, 10), Quote(TOKEN_UP, Side.BUY, 0.43, 10)]
    d = diff_quotes(live, {TOKEN_UP: want})
    assert len(d.keep) == 1 and len(d.cancel) == 2 and d.place == [want[1]]


def test_token_bucket() -> None:
    t = [0.0]
    b = TokenBucket(10, 20, clock=lambda: t[0])
    assert b.take_up_to(25) == 20
    assert b.denied == 5
    assert not b.try_take(1)
    assert abs(b.wait_time(5) - 0.5) < 1e-9
    t[0] = 0.5
    assert b.try_take(5)
    b.force_take(10)
    assert b.available < 0
    t[0] = 10.0
    assert b.available == 20


def test_positions_book_once_and_void() -> None:
    p = Positions()
    f = Fill("t1", "o1", TOKEN_UP, CONDITION, Side.BUY, 0.45, 10, 0)
    assert p.apply(f) and not p.apply(f)
    p.apply(Fill("t2", "o2", TOKEN_UP, CONDITION, Side.SELL, 0.55, 4, 0))
    assert p.get(TOKEN_UP) == 6
    assert [x.order_id for x in p.void("t1")] == ["o1"]
    assert p.get(TOKEN_UP) == -4


def test_quotes_are_snapped_to_the_tick_away_from_the_touch():
    bid, ask = Quote(TOKEN_UP, Side.BUY, 0.476, 10), Quote(TOKEN_UP, Side.SELL, 0.524, 10)
    assert on_tick(bid, "0.01").price == 0.47 and on_tick(ask, "0.01").price == 0.53
    assert on_tick(bid, "0.001") is bid  # already on the grid: the same object, no churn
    assert on_tick(Quote(TOKEN_UP, Side.BUY, 0.29, 10), "0.01").price == 0.29  # 0.29 * 100 = 28.999..
    assert on_tick(Quote(TOKEN_UP, Side.SELL, 0.9975, 5), "0.0025").price == 0.9975
    assert on_tick(Quote(TOKEN_UP, Side.SELL, 0.9976, 5), "0.0025").price == 1.0  # then refused as BAD_QUOTE
    assert on_tick(bid, None) is bid  # tick unknown: left to the client
