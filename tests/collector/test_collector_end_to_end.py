"""Local Binance + Polymarket servers -> binance-collector -> data-collector -> local S3 server."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from polymm.sim.binance_ws import BinanceSim
from polymm.sim.polymarket_ws import PolymarketSim
from tests.collector.conftest import NO, YES, collector_env, new_bucket, read_s3_table, running_collector
from tests.conftest import eventually
from tests.lake.conftest import S3Server
from tests.relay.conftest import running_sender, sender_config

HOUR_KEY = r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}/data_\d{3}\.parquet"


async def test_events_in_parquet_objects_out(certs: Path, s3_server: S3Server, tmp_path: Path):
    bucket = new_bucket(s3_server, "e2e-collect")
    async with (
        BinanceSim(rate_hz=0) as binance,
        PolymarketSim(rate_hz=0, tokens=[YES, NO]) as poly,
    ):
        env = collector_env(certs, tmp_path / "data", s3_server, bucket, poly.url)
        async with running_collector(env) as collector:
            await poly.wait_connections(1)
            await eventually(lambda: collector.feed.connected, what="polymarket subscribed")
            await poly.set_book(YES, bids=[(0.45, 100), (0.44, 250)], asks=[(0.47, 80), (0.48, 300)])
            await poly.change(YES, [("BUY", 0.46, 50), ("SELL", 0.47, 0)])
            sent_trade = poly.trade_event(poly.token(YES), 0.48, 12.5, "BUY", fee_rate_bps="0.1")
            await poly.push(sent_trade)
            async with running_sender(sender_config(certs, collector.receiver.port, binance)):
                await binance.wait_connections(1)
                await eventually(lambda: collector.receiver.connected_senders == 1)
                for i in range(30):
                    await binance.push_bbo("btcusdt", 97000 + i, 97000.5 + i, 1.25, 2.5)
                    await binance.push_trade("ethusdt", 3600 + i, 0.5, buyer_is_maker=i % 2 == 1)
                await eventually(lambda: collector.binance.bbo == 30 and collector.binance.trades == 30)
            await eventually(lambda: collector.polymarket.books >= 2 and collector.polymarket.trades == 1)
            assert collector.lake.snapshot()["dropped"] == {}

    # stopping flushed, compacted and uploaded everything
    keys, bbo = read_s3_table(s3_server, bucket, "binance/bbo/")
    assert keys and all(re.fullmatch(rf"binance/bbo/symbol=BTCUSDT/{HOUR_KEY}", k) for k in keys)
    assert [r["bid"] for r in bbo] == [97000 + i for i in range(30)]
    # spot bookTicker carries no time: null, not a 1970 timestamp that would poison latency figures
    assert all(r["ask_qty"] == 2.5 and r["symbol"] == "BTCUSDT" for r in bbo)
    assert all(r["exch_ts"] is None and r["txn_ts"] is None for r in bbo)
    assert all(r["sender_recv_ts"] <= r["recv_ts"] for r in bbo)
    assert [r["recv_ts"] for r in bbo] == sorted(r["recv_ts"] for r in bbo)

    keys, trades = read_s3_table(s3_server, bucket, "binance/trades/")
    assert all(re.fullmatch(rf"binance/trades/symbol=ETHUSDT/{HOUR_KEY}", k) for k in keys)
    assert [(t["price"], t["side"]) for t in trades[:2]] == [(3600, "buy"), (3601, "sell")]
    ids = [t["trade_id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + 30))

    keys, l2 = read_s3_table(s3_server, bucket, f"polymarket/l2/token={YES}/")
    assert keys and all(re.fullmatch(rf"polymarket/l2/token={YES}/{HOUR_KEY}", k) for k in keys)
    sent = {"bids": [{"price": 0.45, "size": 100}, {"price": 0.44, "size": 250}],
            "asks": [{"price": 0.47, "size": 80}, {"price": 0.48, "size": 300}]}  # fmt: skip
    # the first row is the snapshot the server pushes on subscribe; then the one we sent
    at = next(i for i, r in enumerate(l2) if {"bids": r["bids"], "asks": r["asks"]} == sent)
    assert at >= 1 and len(l2) == at + 2  # one more row for the batched price_change
    after = l2[-1]
    assert after["bids"][:2] == [{"price": 0.46, "size": 50}, {"price": 0.45, "size": 100}]
    assert after["asks"][0] == {"price": 0.48, "size": 300}
    assert all(r["token_id"] == YES and r["hash"] and r["exch_ts"] > 0 for r in l2)

    _, poly_trades = read_s3_table(s3_server, bucket, f"polymarket/trades/token={YES}/")
    assert [(t["price"], t["size"], t["side"]) for t in poly_trades] == [(0.48, 12.5, "buy")]  # as Binance's
    assert poly_trades[0]["fee_rate_bps"] == "0.1"  # the venue's text, not a float's
    assert poly_trades[0]["transaction_hash"] == sent_trade["transaction_hash"]

    _, events = read_s3_table(s3_server, bucket, "collector/events/")
    kinds = {(e["source"], e["kind"]) for e in events}
    assert ("binance", "relay_connected") in kinds and ("polymarket", "subscribed") in kinds
    assert time.time_ns() - min(e["recv_ts"] for e in events) < 120e9
    assert not list((tmp_path / "data" / "journal").rglob("*.arrows"))  # nothing left un-compacted


async def test_polymarket_reconnect_is_recorded_and_resynced(
    certs: Path, s3_server: S3Server, tmp_path: Path
):
    bucket = new_bucket(s3_server, "e2e-reconnect")
    async with PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        env = collector_env(certs, tmp_path / "data", s3_server, bucket, poly.url, POLYMARKET_TOKENS=YES)
        async with running_collector(env) as collector:
            await eventually(lambda: collector.feed.connected)
            await poly.set_book(YES, bids=[(0.30, 10)], asks=[(0.32, 10)])
            await eventually(lambda: collector.polymarket.books == 1)
            await poly.drop_all()
            await eventually(lambda: poly.connects == 2 and collector.feed.connected, what="reconnect")
            await eventually(lambda: collector.polymarket.books >= 2, what="fresh snapshot after reconnect")
            await asyncio.sleep(0.3)
    _, events = read_s3_table(s3_server, bucket, "collector/events/")
    kinds = [e["kind"] for e in events if e["source"] == "polymarket"]
    assert "disconnected" in kinds and "resubscribed" in kinds and "book_invalidated" in kinds


async def test_discovery_follows_market_rotation_without_restart(
    certs: Path, s3_server: S3Server, tmp_path: Path
):
    from polymm.sim.gamma import GammaSim

    bucket = new_bucket(s3_server, "e2e-discovery")
    async with GammaSim() as gamma, PolymarketSim(rate_hz=0) as poly:
        first = gamma.add_market("btc-above-100k-dec", tag_ids=["21"])
        env = collector_env(certs, tmp_path / "data", s3_server, bucket, poly.url, POLYMARKET_TOKENS="",
                            DISCOVERY_TAG="21", DISCOVERY_INTERVAL_SECS="1", GAMMA_URL=gamma.url)  # fmt: skip
        async with running_collector(env) as collector:
            first_tokens = set(GammaSim.tokens_of(first))
            await eventually(lambda: collector.feed.tokens == first_tokens, what="first market subscribed")
            second = gamma.add_market("btc-above-110k-dec", tag_ids=["21"])
            gamma.close_market("btc-above-100k-dec")
            second_tokens = set(GammaSim.tokens_of(second))
            await eventually(
                lambda: collector.feed.tokens == second_tokens, what="rotation to the new market"
            )
            await eventually(lambda: any(second_tokens <= s for s in poly.subscribed()), what="server side")
            assert poly.first_frames == 1  # later changes went as operations on the same connection
    _, events = read_s3_table(s3_server, bucket, "collector/events/")
    subscribed = {e["key"] for e in events if e["kind"] == "subscribe"}
    unsubscribed = {e["key"] for e in events if e["kind"] == "unsubscribe"}
    assert first_tokens | second_tokens <= subscribed and first_tokens <= unsubscribed
