"""A well-formed BBO or trade frame whose symbol is not a Binance symbol (a path, lowercase, too
long, empty) is a malformed frame like any other: one log line, the `malformed` counter, that
connection closed; nothing reaches the consumer. Real mutual TLS."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from polymm.relay import wire
from polymm.relay.events import Bbo, Trade
from polymm.sim.polymarket_ws import PolymarketSim
from tests.collector.conftest import YES, collector_env, new_bucket, running_collector
from tests.conftest import eventually
from tests.lake.conftest import S3Server
from tests.relay.test_tls_and_bad_input import client_ctx, closed_by_server, open_mtls

BAD_SYMBOLS = ["../../x", "btcusdt", "BTC/USDT", "", "A" * 33, "BTC\x00USDT", ".."]


def frame(kind: str, symbol: str, seq: int = 2) -> bytes:
    if kind == "bbo":
        return wire.encode_bbo(seq, 1, Bbo(symbol, 1, 0, 0, 7, 1.0, 1.0, 2.0, 1.0))
    return wire.encode_trade(seq, 1, Trade(symbol, 1, 1, 1, 42, 100.0, 0.5, "buy", False))


def hello() -> bytes:
    return wire.encode_hello(1, 1, {"sender": "hostile", "symbols": []})


@pytest.mark.parametrize("kind", ["bbo", "trade"])
@pytest.mark.parametrize("symbol", BAD_SYMBOLS, ids=repr)
async def test_bad_symbol_is_a_malformed_frame(certs: Path, receiver, caplog, kind: str, symbol: str):
    rx, inbox = receiver
    caplog.set_level(logging.INFO, logger="polymm.receiver")
    reader, writer = await open_mtls(rx.port, client_ctx(certs))
    writer.write(hello() + frame(kind, symbol) + frame(kind, "BTCUSDT", seq=3))
    await writer.drain()
    await eventually(lambda: rx.stats.malformed == 1, what="malformed counted")
    assert await closed_by_server(reader)  # the connection does not stay open
    writer.close()
    assert inbox.bbo() == [] and inbox.trades() == []  # not even the good frame after it
    assert rx.stats.callback_errors == 0  # refused by the decoder, never handed to the consumer
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1, caplog.text
    assert not refusals[0].exc_info and "Traceback" not in caplog.text
    message = refusals[0].getMessage()
    assert "closing connection from 127.0.0.1" in message and "is not a Binance symbol" in message
    assert "\n" not in message


def test_good_symbols_decode(certs: Path):
    for symbol in ("BTCUSDT", "1000PEPEUSDT", "BTCUSDT_260327", "A" * 32):
        (decoded,) = wire.FrameDecoder().feed(frame("bbo", symbol))
        assert decoded.body.symbol == symbol  # type: ignore[attr-defined]


async def test_collector_refuses_a_path_like_symbol_end_to_end(
    certs: Path, s3_server: S3Server, tmp_path: Path, caplog
):
    """Before the fix the frame reached the lake, which refused the partition value with a
    traceback and left the connection open."""
    bucket = new_bucket(s3_server, "bad-symbol")
    data = tmp_path / "data"
    caplog.set_level(logging.INFO)
    async with PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        env = collector_env(certs, data, s3_server, bucket, poly.url)
        async with running_collector(env) as collector:
            rx = collector.receiver
            reader, writer = await open_mtls(rx.port, client_ctx(certs))
            writer.write(hello() + frame("trade", "../../x") + frame("bbo", "../../../../tmp/x", seq=3))
            await writer.drain()
            await eventually(lambda: rx.stats.malformed == 1, what="malformed counted")
            assert await closed_by_server(reader)
            writer.close()
            # a good sender is still served and stored
            reader, writer = await open_mtls(rx.port, client_ctx(certs))
            writer.write(hello() + frame("bbo", "BTCUSDT"))
            await writer.drain()
            await eventually(lambda: collector.binance.bbo == 1, what="good frame stored")
            writer.close()
            assert collector.binance.trades == 0 and collector.lake.stats.bad_rows == 0
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    refused = [r for r in caplog.records if "is not a Binance symbol" in r.getMessage()]
    assert len(refused) == 1
    assert partition_dirs(tmp_path) <= {"symbol=BTCUSDT"} and not (tmp_path / "x").exists()


def partition_dirs(root: Path) -> set[str]:
    return {p.name for p in root.rglob("symbol=*")}
