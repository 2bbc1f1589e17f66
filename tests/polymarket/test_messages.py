"""Decoding every market-channel event type, arrays, legacy formats and bad input."""

from __future__ import annotations

import logging

import msgspec
import pytest

from polymm.polymarket.messages import (
    BestBidAskEvent,
    BookEvent,
    FrameDecoder,
    MarketResolvedEvent,
    NewMarketEvent,
    PriceChangeEvent,
    TickSizeChangeEvent,
    TradeEvent,
    event_type,
)

A = "65818619657568813474341868652308942079804919287380422192892211131408793125422"
B = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
M = "0xbd31dc8a20211944f6b70f31557f1001557b59905b7738480ca09bd4532f84af"

BOOK = {
    "event_type": "book", "asset_id": A, "market": M,
    "bids": [{"price": "0.48", "size": "30"}, {"price": "0.49", "size": "20"}],
    "asks": [{"price": "0.53", "size": "60"}, {"price": "0.52", "size": "25.5"}],
    "timestamp": "1757908892351", "hash": "0xabc", "min_order_size": "5",
}  # fmt: skip
PRICE_CHANGE = {
    "event_type": "price_change", "market": M, "timestamp": "1757908892352",
    "price_changes": [
        {"asset_id": A, "price": "0.5", "size": "200", "side": "BUY", "hash": "h1", "best_bid": "0.5",
         "best_ask": "0.52"},
        {"asset_id": B, "price": "0.5", "size": "0", "side": "SELL", "hash": "h2", "best_bid": "0.47",
         "best_ask": "0.51"},
    ],
}  # fmt: skip
LEGACY = {
    "event_type": "price_change", "asset_id": A, "market": M, "timestamp": "1729084877448", "hash": "3cd4d6",
    "changes": [{"price": "0.4", "side": "SELL", "size": "3300"},
                {"price": "0.5", "side": "BUY", "size": "0"}],
}  # fmt: skip
TRADE = {
    "event_type": "last_trade_price", "asset_id": A, "market": M, "price": "0.456", "size": "219.217767",
    "side": "BUY", "fee_rate_bps": "0", "timestamp": "1750428146322",
}  # fmt: skip
TICK = {
    "event_type": "tick_size_change", "asset_id": A, "market": M, "old_tick_size": "0.01",
    "new_tick_size": "0.001", "timestamp": "100000000",
}  # fmt: skip
BBA = {"event_type": "best_bid_ask", "asset_id": A, "market": M, "best_bid": "0.73", "best_ask": "0.77",
       "spread": "0.04", "timestamp": "1766789469958"}  # fmt: skip
NEW_MARKET = {"event_type": "new_market", "id": "1031769", "market": M, "slug": "btc-updown-5m-1766790000",
              "assets_ids": [A, B], "outcomes": ["Up", "Down"], "timestamp": "1766790415550",
              "event_message": {"id": "125819"}}  # fmt: skip
RESOLVED = {"event_type": "market_resolved", "id": "1031769", "market": M, "assets_ids": [A, B],
            "winning_asset_id": A, "winning_outcome": "Yes", "timestamp": "1766790415550"}  # fmt: skip


def enc(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def test_book_decodes_strings_to_numbers_and_ignores_unknown_keys() -> None:
    dec = FrameDecoder()
    [event] = dec.decode(enc(BOOK))
    assert isinstance(event, BookEvent)
    assert (event.asset_id, event.market, event.hash) == (A, M, "0xabc")
    assert [(lv.price, lv.size) for lv in event.bids] == [(0.48, 30.0), (0.49, 20.0)]
    assert [(lv.price, lv.size) for lv in event.asks] == [(0.53, 60.0), (0.52, 25.5)]
    assert event.timestamp == 1757908892351 and isinstance(event.timestamp, int)
    assert dec.stats.by_type == {"book": 1} and dec.stats.malformed == 0


def test_array_frame_with_every_event_type() -> None:
    dec = FrameDecoder()
    frame = [BOOK, PRICE_CHANGE, TRADE, TICK, BBA, NEW_MARKET, RESOLVED]
    events = dec.decode(enc(frame).decode())  # str frames (text) decode the same as bytes
    assert [type(e) for e in events] == [BookEvent, PriceChangeEvent, TradeEvent, TickSizeChangeEvent,
                                         BestBidAskEvent, NewMarketEvent, MarketResolvedEvent]  # fmt: skip
    assert [event_type(e) for e in events][:3] == ["book", "price_change", "last_trade_price"]
    assert dec.stats.events == 7 and dec.stats.frames == 1
    assert dec.stats.by_type["tick_size_change"] == 1 and dec.stats.unknown == 0

    change = events[1]
    assert isinstance(change, PriceChangeEvent) and not change.legacy
    assert change.timestamp == 1757908892352
    first, second = change.price_changes
    assert (first.asset_id, first.price, first.size, first.side, first.hash) == (A, 0.5, 200.0, "BUY", "h1")
    assert (first.best_bid, first.best_ask) == (0.5, 0.52)
    assert (second.asset_id, second.size, second.side) == (B, 0.0, "SELL")

    trade = events[2]
    assert isinstance(trade, TradeEvent)
    assert (trade.price, trade.size, trade.side, trade.fee_rate_bps) == (0.456, 219.217767, "BUY", "0")
    assert trade.timestamp == 1750428146322

    tick = events[3]
    assert isinstance(tick, TickSizeChangeEvent)
    assert (tick.old_tick_size, tick.new_tick_size, tick.timestamp) == (0.01, 0.001, 100000000)

    bba = events[4]
    assert isinstance(bba, BestBidAskEvent) and (bba.best_bid, bba.best_ask, bba.spread) == (0.73, 0.77, 0.04)
    new = events[5]
    assert isinstance(new, NewMarketEvent) and new.assets_ids == [A, B] and new.slug.startswith("btc-updown")
    resolved = events[6]
    assert isinstance(resolved, MarketResolvedEvent) and resolved.winning_asset_id == A


def test_legacy_price_change_is_normalised() -> None:
    dec = FrameDecoder()
    [event] = dec.decode(enc(LEGACY))
    assert isinstance(event, PriceChangeEvent) and event.legacy
    assert event.changes is None
    assert [(c.asset_id, c.price, c.size, c.side, c.hash) for c in event.price_changes] == [
        (A, 0.4, 3300.0, "SELL", "3cd4d6"),
        (A, 0.5, 0.0, "BUY", "3cd4d6"),
    ]
    assert event.price_changes[0].best_bid is None
    assert event.timestamp == 1729084877448


def test_pong_and_server_text_are_not_json_errors() -> None:
    dec = FrameDecoder()
    assert dec.decode("PONG") == []
    assert dec.decode(b"PONG") == []
    assert dec.decode("INVALID OPERATION") == []
    assert dec.decode("[]") == []
    assert (dec.stats.pongs, dec.stats.text_replies, dec.stats.malformed) == (2, 1, 0)


@pytest.mark.parametrize(
    "frame",
    [
        '{"event_type": "book", "asset_id": ',  # truncated JSON
        "{" + '"x": 1, ' * 10 + "}",  # invalid JSON longer than the text shortcut
        '{"event_type": "book", "asset_id": "1", "bids": "not a list"}',
        '{"event_type": "last_trade_price", "asset_id": "1", "price": "abc"}',
        '{"event_type": "price_change", "price_changes": [{"price": "0.5"}]}',
        "[1]",  # JSON, but not an event object
    ],
)
def test_malformed_frames_are_counted_not_raised(frame: str) -> None:
    dec = FrameDecoder()
    assert dec.decode(frame) == []
    assert dec.stats.malformed == 1
    assert dec.stats.events == 0


def test_unknown_event_types_are_counted_and_skipped_inside_arrays() -> None:
    dec = FrameDecoder()
    events = dec.decode(enc([{"event_type": "brand_new_thing", "x": 1}, TRADE, {"no_type": True}, BOOK]))
    assert [type(e) for e in events] == [TradeEvent, BookEvent]
    assert dec.stats.unknown == 2
    assert dec.stats.malformed == 0
    assert dec.stats.by_type == {"last_trade_price": 1, "book": 1}


def test_one_bad_event_does_not_cost_its_neighbours() -> None:
    dec = FrameDecoder()
    bad = {**TRADE, "size": {"nested": "object"}}
    events = dec.decode(enc([BOOK, bad, PRICE_CHANGE]))
    assert [type(e) for e in events] == [BookEvent, PriceChangeEvent]
    assert dec.stats.malformed == 1


def test_numbers_json_refuses_are_still_read() -> None:
    """Polymarket's own docs show prices like ".48"; the strict grammar refuses them, we do not."""
    dec = FrameDecoder()
    book = {**BOOK, "bids": [{"price": ".48", "size": "30"}], "asks": [{"price": "0.52", "size": "5."}]}
    [event] = dec.decode(enc(book))
    assert isinstance(event, BookEvent)
    assert (event.bids[0].price, event.asks[0].size) == (0.48, 5.0)
    change = {**PRICE_CHANGE, "price_changes": [{**PRICE_CHANGE["price_changes"][0], "best_bid": ""}]}  # type: ignore[dict-item]
    [event] = dec.decode(enc(change))
    assert isinstance(event, PriceChangeEvent) and event.price_changes[0].best_bid is None
    assert dec.stats.malformed == 0


def test_numeric_json_values_are_accepted_too() -> None:
    dec = FrameDecoder()
    [event] = dec.decode(enc({**TRADE, "price": 0.5, "size": 10, "timestamp": 1750428146322}))
    assert isinstance(event, TradeEvent)
    assert (event.price, event.size, event.timestamp) == (0.5, 10.0, 1750428146322)


def test_error_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    dec = FrameDecoder(log_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="polymm.polymarket"):
        for _ in range(200):
            dec.decode("{not json at all, definitely not}")
        for _ in range(50):
            dec.decode(enc({"event_type": "mystery"}))
    assert dec.stats.malformed == 200 and dec.stats.unknown == 50
    lines = [r for r in caplog.records if r.name.startswith("polymm.polymarket")]
    assert len(lines) == 2  # one per kind, the rest held back
