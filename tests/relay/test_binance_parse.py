"""Binance's real payload shapes (from the spot and USD-M docs) through the parser."""

import pytest

from polymm.binance.parse import RAW_PAYLOAD, UNRECOGNISED, Control, Dropped, ParseError, Parser
from polymm.binance.streams import plan_connections
from polymm.relay.events import Bbo, Trade

SPOT_BBO = (
    '{"stream":"btcusdt@bookTicker","data":{"u":52344120991,"s":"BTCUSDT","b":"97120.01000000",'
    '"B":"1.73500000","a":"97120.02000000","A":"0.04210000"}}'
)
FUT_BBO = (
    '{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":8812039455121,"E":1790000000123,'
    '"T":1790000000119,"s":"BTCUSDT","b":"97088.10","B":"3.412","a":"97088.20","A":"0.870","ps":"BTCUSDT","st":1}}'
)
SPOT_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1790000000456,"s":"BTCUSDT","t":5123456789,'
    '"p":"97120.02000000","q":"0.01500000","T":1790000000455,"m":false,"M":true}}'
)
AGG_TRADE = (
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1790000000456,"s":"BTCUSDT","a":2401122334,'
    '"p":"97088.20","q":"0.250","nq":"0.250","f":6010000001,"l":6010000004,"T":1790000000455,"m":true}}'
)


def test_spot_book_ticker_has_no_exchange_time():
    event = Parser().parse(SPOT_BBO, 42)
    assert event == Bbo("BTCUSDT", 42, 0, 0, 52344120991, 97120.01, 1.735, 97120.02, 0.0421)


def test_futures_book_ticker_keeps_both_times_and_ignores_new_keys():
    event = Parser().parse(FUT_BBO, 42)
    assert isinstance(event, Bbo)
    assert (event.exch_ts, event.txn_ts, event.update_id) == (1790000000123, 1790000000119, 8812039455121)
    assert (event.bid, event.bid_qty, event.ask, event.ask_qty) == (97088.1, 3.412, 97088.2, 0.87)


def test_spot_trade_taker_side_from_buyer_is_maker():
    event = Parser().parse(SPOT_TRADE, 42)
    assert event == Trade(
        "BTCUSDT", 42, 1790000000456, 1790000000455, 5123456789, 97120.02, 0.015, "buy", False
    )


def test_agg_trade_uses_agg_id_and_maps_maker_buyer_to_sell():
    event = Parser().parse(AGG_TRADE, 42)
    assert isinstance(event, Trade)
    assert (event.trade_id, event.side, event.is_agg, event.qty) == (2401122334, "sell", True, 0.25)


@pytest.mark.parametrize(
    "message",
    [
        '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1790000000000}}',
        '{"e":"serverShutdown","E":1790000000000}',
    ],
)
def test_server_shutdown_is_a_control_message(message: str):
    assert Parser().parse(message, 1) == Control("serverShutdown", 1790000000000)


def test_subscription_reply_is_ignored():
    assert Parser().parse('{"result":null,"id":1}', 1) is None


def test_unknown_stream_kind_is_dropped_with_its_reason_not_fatal():
    event = Parser().parse('{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}', 1)
    assert event == Dropped("message of unhandled stream kind kline_1m")


@pytest.mark.parametrize(
    "message",
    [
        SPOT_TRADE.split(',"data":', 1)[1][:-1],  # the trade payload without its envelope
        SPOT_BBO.split(',"data":', 1)[1][:-1],  # spot bookTicker has no "e" at all
    ],
)
def test_raw_payload_is_dropped_not_taken_for_a_control_message(message: str):
    assert Parser().parse(message, 1) is RAW_PAYLOAD


def test_unrecognised_object_is_dropped():
    assert Parser().parse('{"hello":"world"}', 1) is UNRECOGNISED


def test_microsecond_times_become_milliseconds():
    parser = Parser()
    micro_trade = SPOT_TRADE.replace('"E":1790000000456', '"E":1790000000456789').replace(
        '"T":1790000000455', '"T":1790000000455123'
    )
    event = parser.parse(micro_trade, 42)
    assert isinstance(event, Trade) and (event.exch_ts, event.trade_ts) == (1790000000456, 1790000000455)
    micro_bbo = FUT_BBO.replace('"E":1790000000123', '"E":1790000000123999').replace(
        '"T":1790000000119', '"T":1790000000119001'
    )
    event = parser.parse(micro_bbo, 42)
    assert isinstance(event, Bbo) and (event.exch_ts, event.txn_ts) == (1790000000123, 1790000000119)
    assert parser.micro == 2
    assert parser.parse(SPOT_TRADE, 42).exch_ts == 1790000000456  # type: ignore[union-attr]
    assert parser.micro == 2  # milliseconds untouched


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        '{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT"}}',  # fields missing
        '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"x","B":"1","a":"1","A":"1"}}',
        '{"stream":"btcusdt@trade","data":[1,2]}',
        "[]",
    ],
)
def test_malformed_messages_raise_parse_error(message: str):
    with pytest.raises(ParseError):
        Parser().parse(message, 1)


def test_spot_plan_is_one_combined_stream():
    (plan,) = plan_connections("spot", "wss://stream.binance.com:9443/", ["btcusdt", "ethusdt"], True)
    assert plan.url == (
        "wss://stream.binance.com:9443/stream?streams="
        "btcusdt@bookTicker/ethusdt@bookTicker/btcusdt@trade/ethusdt@trade"
    )


def test_futures_plan_splits_public_and_market_routes():
    plans = plan_connections("futures", "wss://fstream.binance.com", ["btcusdt"], True)
    assert [p.url for p in plans] == [
        "wss://fstream.binance.com/public/stream?streams=btcusdt@bookTicker",
        "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade",
    ]
    assert plan_connections("futures", "wss://x", ["btcusdt"], False)[0].streams == ("btcusdt@bookTicker",)


def test_plans_respect_the_per_connection_stream_cap():
    plans = plan_connections("spot", "wss://x", [f"s{i:03d}" for i in range(5)], True, max_streams=4)
    assert [len(p.streams) for p in plans] == [4, 4, 2]
