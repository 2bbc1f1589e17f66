"""ReferenceStrategy end to end on scripted Binance/Polymarket sequences, and the executor adapter."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from polymm.relay.events import Bbo
from polymm.strategy.interface import (
    DesiredQuote,
    ExecutorAdapter,
    Fill,
    Side,
    StrategyContext,
)
from polymm.strategy.markets import MarketConfig, load_markets
from polymm.strategy.reference import ReferenceStrategy, StrategyParams

EXAMPLE = Path(__file__).with_name("markets_example.toml")
T0 = 1_795_600_800  # window start
EXPIRY = T0 + 900


def up_down(**changes: object) -> MarketConfig:
    return msgspec.structs.replace(load_markets(EXAMPLE)[0], **changes)


class Script:
    """Drives a strategy the way the executor does: set the clock, then call back."""

    def __init__(self, market: MarketConfig, **params: object) -> None:
        self.m = market
        self.ctx = StrategyContext()
        self.trades = 0
        self.s = ReferenceStrategy([market], self.ctx, StrategyParams(**params))  # type: ignore[arg-type]

    def at(self, t: float) -> Script:
        self.ctx.now_ns = int(t * 1e9)
        return self

    def bbo(self, mid: float) -> dict[str, list[DesiredQuote]]:
        ts = self.ctx.now_ns
        return self.s.on_binance_bbo(Bbo("BTCUSDT", ts, 0, 0, 1, mid - 0.005, 1.0, mid + 0.005, 1.0))

    def fill(self, token: str, side: Side, price: float, size: float) -> dict[str, list[DesiredQuote]]:
        self.trades += 1
        fill = Fill(token, side, price, size, self.ctx.now_ns, f"t{self.trades}", "o1")
        assert self.ctx.apply_fill(fill)
        return self.s.on_fill(fill)

    def timer(self) -> dict[str, list[DesiredQuote]]:
        return self.s.on_timer(self.ctx.now_ns)


def yes_bid(out: dict[str, list[DesiredQuote]], m: MarketConfig) -> float:
    (q,) = out[m.yes_token]
    assert q.side is Side.BUY and q.token_id == m.yes_token
    return q.price


def yes_ask(out: dict[str, list[DesiredQuote]], m: MarketConfig) -> float:
    (q,) = out[m.no_token]  # "both" mode: the YES ask is a NO bid at 1 - ask
    assert q.side is Side.BUY and q.token_id == m.no_token
    return round(1 - q.price, 6)


def test_follows_binance_captures_the_open_skews_on_fills_and_stops_before_expiry():
    m = up_down(skew=0.1)
    run = Script(m)
    pulled = {m.yes_token: [], m.no_token: []}
    assert run.at(T0 - 5).bbo(97_000) == pulled  # no strike yet: clear anything left from a previous run
    assert run.at(T0 - 0.2).bbo(97_000) == {}  # ... once
    first = run.at(T0 + 0.3).bbo(97_010)  # the mid 0.2 s before the open is the closer one
    assert run.s.markets[0].strike == 97_000
    assert 0.5 < run.s.markets[0].fair < 0.6
    bid, ask = yes_bid(first, m), yes_ask(first, m)
    assert bid <= run.s.markets[0].fair - m.min_edge and ask >= run.s.markets[0].fair + m.min_edge
    assert first[m.yes_token][0].size == first[m.no_token][0].size == m.quote_size
    assert run.at(T0 + 0.4).bbo(97_010.5) == {}  # noise: no churn

    up = run.at(T0 + 2).bbo(97_300)
    assert yes_bid(up, m) > bid and yes_ask(up, m) > ask  # price up -> YES quotes up
    up_bid, up_ask = yes_bid(up, m), yes_ask(up, m)

    filled = run.fill(m.yes_token, Side.BUY, up_bid, 10)  # long 10 YES -> both quotes lower
    assert yes_bid(filled, m) < up_bid and yes_ask(filled, m) < up_ask
    shifted = run.fill(m.no_token, Side.BUY, round(1 - up_ask, 2), 10)  # flat again: back
    assert (yes_bid(shifted, m), yes_ask(shifted, m)) == (up_bid, up_ask)

    assert run.at(T0 + 7).timer() == pulled  # 5 s without a Binance mid: stale
    assert yes_bid(run.at(T0 + 7.1).bbo(97_300), m) > 0.5  # fresh again
    run.ctx.binance_stale = True
    assert run.at(T0 + 7.2).timer() == pulled  # the caller's own verdict
    run.ctx.binance_stale = False
    assert run.at(T0 + 7.3).bbo(97_300) != {}

    assert run.at(EXPIRY - m.stop_before_expiry_s + 0.1).timer() == pulled
    assert run.at(EXPIRY - 10).bbo(97_400) == {}  # never again
    assert run.at(EXPIRY - 5).timer() == {}


def test_quotes_widen_towards_expiry():
    m = up_down()
    run = Script(m)
    run.at(T0).bbo(97_000)
    spreads = []
    for t in (T0 + 10, EXPIRY - 300, EXPIRY - 120, EXPIRY - 40):
        out = run.at(t).bbo(97_000)
        if out:
            live = run.s.markets[0].live
            spreads.append(live.ask_ticks - live.bid_ticks)
    assert spreads == sorted(spreads) and spreads[-1] > spreads[0]


def test_post_only_against_both_books_and_the_deviation_guard():
    m = up_down()
    run = Script(m)
    run.at(T0).bbo(97_000)
    run.at(T0 + 1).bbo(97_050)
    fair = run.s.markets[0].fair
    assert (run.s.markets[0].live.bid, run.s.markets[0].live.ask) == (0.54, 0.59)
    # A YES book whose ask sits under our bid: the bid steps back one tick under it.
    out = run.s.on_polymarket_book(m.yes_token, 0.40, 0.51, None, 0)
    assert yes_bid(out, m) == 0.50 and yes_ask(out, m) == 0.59
    # The NO book asks 0.40 for NO = a YES bid at 0.60: our YES ask (a NO bid) goes above it.
    out = run.s.on_polymarket_book(m.no_token, 0.38, 0.40, None, 0)
    assert yes_ask(out, m) == 0.61 and yes_bid(out, m) == 0.50
    assert abs(fair - 0.5) < 0.25
    # A market far from our fair value (wrong strike? swapped tokens?) is not quoted.
    run.s.on_polymarket_book(m.no_token, 0.08, 0.10, None, 0)
    pulled = run.s.on_polymarket_book(m.yes_token, 0.90, 0.92, None, 0)
    assert pulled == {m.yes_token: [], m.no_token: []}


def test_position_limit_suppresses_the_side():
    m = up_down(max_position=20, max_market_position=20)
    run = Script(m)
    run.at(T0).bbo(97_000)
    run.at(T0 + 1).bbo(97_000)
    out = run.fill(m.yes_token, Side.BUY, 0.48, 20)
    assert out[m.yes_token] == [] and len(out[m.no_token]) == 1


def test_yes_only_mode_sells_held_yes():
    m = up_down(quote_mode="yes_only")
    run = Script(m)
    out = run.at(T0).bbo(97_000)
    assert [q.side for q in out[m.yes_token]] == [Side.BUY] and out[m.no_token] == []
    out = run.fill(m.yes_token, Side.BUY, 0.48, 10)
    assert [q.side for q in out[m.yes_token]] == [Side.BUY, Side.SELL]


def test_no_open_price_means_no_quotes_unless_configured():
    late = Script(up_down())
    late.at(T0 + 60).bbo(97_000)  # started mid-window: the open was missed
    assert late.at(T0 + 61).bbo(97_000) == {} and late.s.markets[0].strike is None
    given = Script(up_down(strike=96_990.0))
    assert given.at(T0 + 60).bbo(97_000) != {}
    quiet = Script(up_down())
    quiet.at(T0 - 10).bbo(97_000)  # last mid long before the open, and nothing since
    quiet.at(T0 + 3).timer()
    assert quiet.s.markets[0].strike_failed


def test_executor_adapter_speaks_the_executor_types():
    from polymm.executor.types import Fill as ExecFill
    from polymm.executor.types import Quote
    from polymm.executor.types import Side as ExecSide
    from polymm.polymarket.book import OrderBook

    m = up_down()
    ctx = StrategyContext()
    clock = [0]
    adapter = ExecutorAdapter(ReferenceStrategy([m], ctx), ctx, clock=lambda: clock[0])
    clock[0] = T0 * 10**9
    adapter.on_binance_bbo(Bbo("BTCUSDT", clock[0], 0, 0, 1, 96_999.99, 1, 97_000.01, 1))
    clock[0] += 10**9
    assert adapter.on_binance_bbo(Bbo("BTCUSDT", clock[0], 0, 0, 1, 96_999.99, 1, 97_000.01, 1)) is None
    book = OrderBook(m.yes_token)
    book.apply_snapshot([(0.30, 100)], [(0.46, 100)], 0)
    out = adapter.on_polymarket_book(m.yes_token, book, 0)
    assert out is not None
    (q,) = out[m.yes_token]
    assert type(q) is Quote and q.side is ExecSide.BUY and q.price == 0.45
    fill = ExecFill("t1", "o1", m.yes_token, m.condition_id, ExecSide.BUY, q.price, 10, clock[0])
    assert adapter.on_fill(fill) is not None
    assert adapter.on_fill(fill) is None  # MINED/CONFIRMED repeats of the same trade: booked once
    assert ctx.positions[m.yes_token].shares == 10
    assert ctx.positions[m.yes_token].cost == pytest.approx(10 * q.price)
    adapter.on_void(fill)
    assert ctx.positions[m.yes_token].shares == 0
    assert adapter.on_timer(clock[0] + 10**8) is None


def on_grid(out: dict[str, list[DesiredQuote]], tick: float) -> bool:
    prices = [q.price for quotes in out.values() for q in quotes]
    return bool(prices) and all(abs(p / tick - round(p / tick)) < 1e-9 for p in prices)


def test_a_tick_size_change_regrids_the_quotes():
    m = up_down(strike=97_000.0)
    run = Script(m)
    assert on_grid(run.at(T0 + 1).bbo(97_020), 0.01)
    state = run.s.markets[0]

    fine = run.s.on_tick_size_change(m.yes_token, 0.001)  # Polymarket: price near 0 or 1 now
    assert state.params.ticks_per_unit == 1000 and on_grid(fine, 0.001)
    assert set(fine) == {m.yes_token, m.no_token}  # both tokens of the market are re-quoted
    assert run.s.on_tick_size_change(m.no_token, 0.001) == {}  # same grid: no churn
    assert run.s.on_tick_size_change("unknown-token", 0.001) == {}

    coarse = run.s.on_tick_size_change(m.no_token, 0.01)
    assert state.params.ticks_per_unit == 100 and on_grid(coarse, 0.01)


def test_adapter_passes_tick_changes_only_to_strategies_that_want_them():
    m = up_down(strike=97_000.0)
    ctx = StrategyContext()
    adapter = ExecutorAdapter(ReferenceStrategy([m], ctx), ctx, clock=lambda: int((T0 + 1) * 1e9))
    adapter.on_binance_bbo(Bbo("BTCUSDT", 0, 0, 0, 1, 97_019.995, 1.0, 97_020.005, 1.0))
    regridded = adapter.on_tick_size_change(m.yes_token, 0.001)
    assert regridded is not None and set(regridded) == {m.yes_token, m.no_token}

    class FixedGrid:  # implements only the four required callbacks
        def on_binance_bbo(self, bbo: Bbo) -> dict[str, list[DesiredQuote]]:
            return {}

    assert ExecutorAdapter(FixedGrid(), ctx).on_tick_size_change(m.yes_token, 0.001) is None  # type: ignore[arg-type]


def test_halted_context_pulls_quotes_and_clearing_it_quotes_afresh():
    m = up_down(strike=97_000.0)
    run = Script(m)
    first = run.at(T0 + 1).bbo(97_020)
    assert first[m.yes_token]
    run.ctx.halted = True  # the executor cancelled everything (a kill switch)
    assert run.at(T0 + 1.1).bbo(97_020) == {m.yes_token: [], m.no_token: []}
    run.ctx.halted = False
    assert run.at(T0 + 1.2).timer() == first  # same price, but the old quotes are gone: quote again
