"""The trader's quote line: YES terms, UTC ms time, tick-to-quote with its hops."""

from __future__ import annotations

from polymm.executor.quote_view import YesQuotes, format_quote_line, yes_terms
from polymm.executor.types import Quote, Side
from polymm.relay.events import Bbo
from polymm.service.logs import utc_ms

YES, NO = "1" * 77, "2" * 77
T = 1_768_780_801_234_567_890  # 2026-01-19T00:00:01.234567890Z


def test_no_bid_is_shown_as_the_yes_ask():
    quotes = {YES: [Quote(YES, Side.BUY, 0.51, 10)], NO: [Quote(NO, Side.BUY, 0.45, 7)]}
    assert yes_terms(quotes, YES, NO) == YesQuotes(bid=0.51, bid_size=10, ask=0.55, ask_size=7)


def test_yes_only_quotes_and_pulled_quotes():
    quotes = {YES: [Quote(YES, Side.BUY, 0.40, 5), Quote(YES, Side.SELL, 0.62, 5)]}
    assert yes_terms(quotes, YES, NO) == YesQuotes(0.40, 5, 0.62, 5)
    assert yes_terms({YES: [], NO: []}, YES, NO) == YesQuotes()


def test_utc_ms():
    assert utc_ms(T) == "00:00:01.234Z"
    assert utc_ms(1_768_780_800_000_000_000) == "00:00:00.000Z"


def test_line_after_a_binance_tick():
    tick = Bbo("BTCUSDT", T - 500_000, 0, 0, 1, 97000.0, 1.0, 97000.5, 1.0, seq=1, send_ts=T - 450_000,
               arrival_ts=T - 150_000)  # fmt: skip
    line = format_quote_line(T, YesQuotes(0.51, 10, 0.55, 7), 0.53125, tick, tick)
    assert line == (
        "quote 00:00:01.234Z BTCUSDT mid 97000.25 | fair 0.5312 | YES bid 0.51 x10 / ask 0.55 x7 | "
        "tick->quote 0.50ms (sender 0.05 + relay 0.30 + decide 0.15)"
    )


def test_line_after_something_else_names_it():
    line = format_quote_line(T, YesQuotes(), None, None, "book")
    assert line == "quote 00:00:01.234Z binance mid - | fair - | YES bid - / ask - | on book"
