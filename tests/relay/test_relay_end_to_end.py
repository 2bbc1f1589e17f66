"""Local Binance server -> real sender -> mutual TLS -> real receiver, on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polymm.sim.binance_ws import BinanceSim
from tests.conftest import eventually
from tests.relay.conftest import Inbox, running_sender, sender_config


async def test_spot_bbo_and_trades_arrive_exactly_and_in_order(certs: Path, receiver, binance: BinanceSim):
    rx, inbox = receiver
    async with running_sender(sender_config(certs, rx.port, binance)) as sender:
        await binance.wait_connections(1)
        await eventually(lambda: rx.connected_senders == 1, what="sender connected")
        for i in range(50):
            await binance.push_bbo("btcusdt", 97000 + i * 0.01, 97000.5 + i * 0.01, 1.5, 2.5)
            await binance.push_trade("ethusdt", 3600 + i, 0.1 * (i + 1), buyer_is_maker=i % 2 == 0)
        await eventually(lambda: len(inbox.bbo()) == 50 and len(inbox.trades()) == 50, what="100 events")
        assert sender.link.stats.trades_sent == 50

    bids = [e.bid for e in inbox.bbo("BTCUSDT")]
    assert bids == [97000 + i * 0.01 for i in range(50)]
    first = inbox.bbo()[0]
    assert (first.ask, first.bid_qty, first.ask_qty, first.exch_ts) == (97000.5, 1.5, 2.5, 0)
    trades = inbox.trades("ETHUSDT")
    assert [t.price for t in trades] == [3600 + i for i in range(50)]
    assert [t.side for t in trades[:2]] == ["sell", "buy"]  # buyer was maker -> the taker sold
    ids = [t.trade_id for t in trades]
    assert ids == list(range(ids[0], ids[0] + 50))
    for event in inbox.bbo() + inbox.trades():
        assert event.recv_ts <= event.send_ts <= event.arrival_ts
    seqs = [e.seq for e in inbox]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert rx.stats.seq_gaps == 0 and rx.stats.malformed == 0
    p50, p99 = rx.hop_latency.percentiles_us(50, 99)
    assert 0 < p50 <= p99


async def test_futures_uses_public_and_market_routes(certs: Path, receiver):
    rx, inbox = receiver
    async with BinanceSim(rate_hz=0, market="futures") as sim:
        async with running_sender(sender_config(certs, rx.port, sim, SYMBOLS="btcusdt")):
            await sim.wait_connections(2)
            await eventually(lambda: rx.connected_senders == 1)
            await sim.push_bbo("btcusdt", 97088.1, 97088.2, 3.412, 0.87)
            await sim.push_trade("btcusdt", 97088.2, 0.25, buyer_is_maker=True)
            await eventually(lambda: inbox.bbo() and inbox.trades(), what="bbo and aggTrade")
        paths = sorted(path for path, _ in sim.requested)
    assert paths == ["/market/stream", "/public/stream"]
    bbo, trade = inbox.bbo()[0], inbox.trades()[0]
    assert bbo.exch_ts > 0 and bbo.txn_ts == bbo.exch_ts - 1
    assert trade.is_agg and trade.side == "sell" and trade.trade_ts > 0


async def test_server_pings_are_answered_and_the_connection_stays_up(certs: Path, receiver):
    rx, inbox = receiver
    # the local server closes a connection that misses a pong, as Binance does
    async with (
        BinanceSim(rate_hz=0, ping_interval_s=0.2) as sim,
        running_sender(sender_config(certs, rx.port, sim)),
    ):
        await sim.wait_connections(1)
        await asyncio.sleep(1.2)
        await sim.push_bbo("btcusdt", 1.0, 2.0)
        await eventually(lambda: inbox.bbo(), what="bbo after pings")
        assert sim.connects == 1


async def test_quiet_market_sends_heartbeats(certs: Path, receiver, binance: BinanceSim):
    rx, _ = receiver
    async with running_sender(sender_config(certs, rx.port, binance)):
        await eventually(lambda: rx.stats.heartbeats >= 3, timeout_s=5, what="heartbeats")
        assert rx.connected_senders == 1 and rx.stats.idle_closes == 0


def test_inbox_filters():
    assert Inbox().bbo() == [] and Inbox().notices("x") == []


async def test_receiver_reports_trade_id_gaps_and_sender_sessions(certs: Path, receiver, binance: BinanceSim):
    rx, inbox = receiver
    async with running_sender(sender_config(certs, rx.port, binance)):
        await binance.wait_connections(1)
        await eventually(lambda: inbox.notices("relay_connected"), what="relay_connected")
        await binance.push_trade("btcusdt", 100, 1)
        binance.symbol("btcusdt").trade_id += 4  # Binance published 4 trades we never saw
        await binance.push_trade("btcusdt", 101, 1)
        await eventually(lambda: len(inbox.trades()) == 2)
    await eventually(lambda: inbox.notices("relay_disconnected"), what="relay_disconnected")
    (gap,) = inbox.notices("trade_id_gap")
    first, second = inbox.trades()
    assert gap.detail == {"symbol": "BTCUSDT", "is_agg": False, "after_id": first.trade_id,
                          "next_id": second.trade_id, "missing": 4}  # fmt: skip
    assert inbox.index(gap) < inbox.index(second)  # the hole is announced before the data resumes
    assert inbox.notices("relay_connected")[0].detail["sender"] == "test-sender"
    assert rx.stats.trade_id_gaps == 1 and rx.stats.trades_missing == 4
