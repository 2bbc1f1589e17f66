"""Market config validation and the reference strategy on a scripted Binance path."""

from __future__ import annotations

from pathlib import Path

import pytest

from polymm.executor.types import Fill, Side
from polymm.polymarket.book import OrderBook
from polymm.relay.events import Bbo
from polymm.service.config import ConfigError
from polymm.strategy.markets import load_markets
from polymm.strategy.reference import ReferenceStrategy

COND = "0x" + "5f" * 32
YES, NO = "7" * 76, "8" * 76
T0 = 1_795_600_800.0  # window start (unix s)

EXAMPLE = f"""
[[markets]]
name = "btc-updown-15m"
condition_id = "{COND}"
yes_token = "{YES}"
no_token = "{NO}"
binance_symbol = "BTCUSDT"
kind = "up_down"
start_time = {T0}
expiry = {T0 + 900}
quote_size = 10
min_edge = 0.02
max_position = 20
skew = 0.04
basis_uncertainty = 5.0
stop_before_expiry_s = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "markets.toml"
    path.write_text(text)
    return path


def test_example_config_loads(tmp_path: Path):
    (m,) = load_markets(write(tmp_path, EXAMPLE))
    assert m.kind == "up_down" and m.start_s == T0 and m.expiry_s == T0 + 900
    iso = EXAMPLE.replace(f"expiry = {T0 + 900}", 'expiry = "2026-11-25T10:15:00Z"')
    iso = iso.replace(f"start_time = {T0}", 'start_time = "2026-11-25T10:00:00Z"')
    (m,) = load_markets(write(tmp_path, iso))
    assert m.expiry_s - m.start_s == 900 and m.start_s == 1_795_600_800
    assert m.vol_prior_per_sqrt_s == pytest.approx(0.6 / (365 * 24 * 3600) ** 0.5)


@pytest.mark.parametrize(
    "change, field",
    [
        (('yes_token = "7', 'yes_token = "x7'), "yes_token"),
        ((f'no_token = "{NO}"', f'no_token = "{YES}"'), "no_token"),
        (("tick_size", "tick_size"), ""),  # placeholder replaced below
        (('kind = "up_down"', 'kind = "above"'), "strike"),
        (("quote_size = 10", "quote_size = 0"), "quote_size"),
        (("min_edge = 0.02", "min_edge = 0.6"), "min_edge"),
        ((f"start_time = {T0}", f"start_time = {T0 + 900}"), "start_time"),
        (('binance_symbol = "BTCUSDT"', 'binance_symbol = "BTCUSDT"\nsurprise = 1'), "surprise"),
    ],
)
def test_each_invalid_field_is_named(tmp_path: Path, change: tuple[str, str], field: str):
    text = EXAMPLE.replace(*change) if field else EXAMPLE + "tick_size = 0.03\n"
    with pytest.raises(ConfigError, match=field or "tick_size"):
        load_markets(write(tmp_path, text))


def bbo(mid: float, ts_s: float) -> Bbo:
    return Bbo("BTCUSDT", int(ts_s * 1e9), 0, 0, 1, mid - 0.5, 1.0, mid + 0.5, 1.0)


def test_reference_strategy_follows_binance_skews_and_stops(tmp_path: Path):
    clock = [T0 - 5]
    strategy = ReferenceStrategy(load_markets(write(tmp_path, EXAMPLE)), clock=lambda: clock[0])
    assert strategy.on_binance_bbo(bbo(97000, clock[0])) is None  # window not open: no strike yet
    clock[0] = T0 + 1
    first = strategy.on_binance_bbo(bbo(97000, clock[0]))  # strike captured at 97000 -> fair ~0.5
    assert first is not None
    yes_bid, no_bid = first[YES][0].price, first[NO][0].price
    assert yes_bid <= 0.48 and no_bid <= 0.48 and yes_bid + no_bid < 1  # a spread, not a giveaway
    assert strategy.on_binance_bbo(bbo(97000.5, clock[0] + 0.1)) is None  # no churn on noise

    up = strategy.on_binance_bbo(bbo(97150, clock[0] + 2))
    assert up is not None and up[YES][0].price > yes_bid and up[NO][0].price < no_bid

    before = up[YES][0].price
    fill = Fill("t1", "o1", YES, COND, Side.BUY, before, 10, 0)
    after_fill = strategy.on_fill(fill)  # long 10 YES -> quotes shift down
    assert after_fill is not None and after_fill[YES][0].price < before

    book = OrderBook(YES)
    book.apply_snapshot([(0.30, 100)], [(0.31, 100)], 0)
    crossed = strategy.on_polymarket_book(YES, book, 0)  # a book far below our fair value
    quotes = crossed if crossed is not None else after_fill
    assert quotes[YES][0].price < 0.31  # post-only: the YES bid stays below the best ask

    clock[0] = T0 + 900 - 20
    pulled = strategy.on_timer(int(clock[0] * 1e9))
    assert pulled == {YES: [], NO: []}
    assert strategy.on_binance_bbo(bbo(97300, clock[0])) is None
