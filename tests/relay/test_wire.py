import pytest

from polymm.relay import wire
from polymm.relay.events import Bbo, Notice, Trade

BBO = Bbo("BTCUSDT", 1_790_000_000_000_000_001, 1_790_000_000_123, 1_790_000_000_119, 8812039455121,
          97088.1, 3.412, 97088.2, 0.87)  # fmt: skip
TRADE = Trade("ETHUSDT", 5, 1_790_000_000_456, 1_790_000_000_455, 2401122334, 3601.25, 0.25, "sell", True)


def test_every_kind_round_trips_byte_by_byte():
    data = (
        wire.encode_hello(1, 10, {"sender": "fra-1", "symbols": ["btcusdt"]})
        + wire.encode_bbo(2, 20, BBO)
        + wire.encode_trade(3, 30, TRADE, wire.FLAG_RETRANSMIT)
        + wire.encode_notice(4, 40, Notice("binance_reconnect", 7, {"down_ms": 1.5}, "b-1"))
        + wire.encode_heartbeat(5, 50)
        + wire.encode_ack(6, 60)
    )
    decoder = wire.FrameDecoder()
    frames = []
    for i in range(len(data)):  # worst case: TCP delivers one byte at a time
        frames += list(decoder.feed(data[i : i + 1]))
    assert [f.kind for f in frames] == [
        wire.HELLO,
        wire.BBO,
        wire.TRADE,
        wire.NOTICE,
        wire.HEARTBEAT,
        wire.ACK,
    ]
    assert [f.seq for f in frames] == [1, 2, 3, 4, 5, 6]
    assert [f.send_ts for f in frames] == [10, 20, 30, 40, 50, 60]
    assert frames[0].body == {"sender": "fra-1", "symbols": ["btcusdt"]}
    bbo = frames[1].body
    assert (bbo.symbol, bbo.recv_ts, bbo.exch_ts, bbo.txn_ts, bbo.update_id) == (
        "BTCUSDT", BBO.recv_ts, BBO.exch_ts, BBO.txn_ts, BBO.update_id,
    )  # fmt: skip
    assert (bbo.bid, bbo.bid_qty, bbo.ask, bbo.ask_qty) == (97088.1, 3.412, 97088.2, 0.87)
    trade = frames[2].body
    assert frames[2].flags & wire.FLAG_RETRANSMIT
    assert (trade.symbol, trade.trade_id, trade.price, trade.qty, trade.side, trade.is_agg) == (
        "ETHUSDT", 2401122334, 3601.25, 0.25, "sell", True,
    )  # fmt: skip
    assert frames[3].body.detail == {"down_ms": 1.5}
    assert decoder.pending_bytes == 0


def test_buy_side_and_raw_trade_ids_survive():
    trade = Trade("BTCUSDT", 1, 2, 3, 5123456789, 97120.02, 0.015, "buy", False)
    (frame,) = wire.FrameDecoder().feed(wire.encode_trade(1, 1, trade))
    assert frame.body.side == "buy" and frame.body.is_agg is False


def test_oversized_length_is_refused_before_reading_the_body():
    decoder = wire.FrameDecoder(max_frame=1024)
    with pytest.raises(wire.OversizedFrameError):
        list(decoder.feed((10_000_000).to_bytes(4, "little") + b"\x01"))


def _with_symbol_length(frame: bytes, length: int) -> bytes:
    at = len(frame) - len(BBO.symbol) - 1
    return frame[:at] + bytes([length]) + frame[at + 1 :]


@pytest.mark.parametrize(
    "frame, message",
    [
        ((3).to_bytes(4, "little") + b"abc", "shorter than a header"),
        (wire.encode_heartbeat(1, 1)[:4] + b"\x09" + wire.encode_heartbeat(1, 1)[5:], "version"),
        (wire.encode_heartbeat(1, 1)[:5] + b"\x63" + wire.encode_heartbeat(1, 1)[6:], "unknown frame kind"),
        (_with_symbol_length(wire.encode_bbo(1, 1, BBO), 3), "does not match its symbol"),
    ],
)
def test_malformed_frames_raise_frame_error(frame: bytes, message: str):
    with pytest.raises(wire.FrameError, match=message):
        list(wire.FrameDecoder().feed(frame))


def test_notice_with_bad_json_is_a_frame_error():
    good = wire.encode_notice(1, 1, Notice("x", 1))
    bad = good[: wire.HEADER_SIZE] + b"{" * (len(good) - wire.HEADER_SIZE)
    with pytest.raises(wire.FrameError, match="NOTICE"):
        list(wire.FrameDecoder().feed(bad))


def test_partial_frame_waits_for_the_rest():
    data = wire.encode_bbo(1, 1, BBO)
    decoder = wire.FrameDecoder()
    assert list(decoder.feed(data[:-3])) == []
    assert decoder.pending_bytes == len(data) - 3
    assert len(list(decoder.feed(data[-3:]))) == 1
