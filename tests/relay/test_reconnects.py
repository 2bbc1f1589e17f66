"""Both sides heal themselves: Binance drops, rotations, stale feeds, receiver restarts.
Trades survive a receiver outage shorter than the buffer; BBO is conflated meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polymm.sim.binance_ws import BinanceSim
from tests.conftest import eventually
from tests.relay.conftest import make_receiver, running_sender, sender_config


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


async def test_binance_drop_reconnects_and_reports_the_outage(certs: Path, receiver, binance: BinanceSim):
    rx, inbox = receiver
    async with running_sender(sender_config(certs, rx.port, binance)) as sender:
        await binance.wait_connections(1)
        await eventually(lambda: rx.connected_senders == 1)
        await binance.push_bbo("btcusdt", 1, 2)
        await binance.drop_all(1001, "maintenance")
        await eventually(lambda: binance.connects == 2 and binance.connections == 1, what="reconnect")
        await binance.push_bbo("btcusdt", 3, 4)
        await eventually(
            lambda: len(inbox.bbo()) == 2 and inbox.notices("binance_reconnect"), what="data + notice"
        )
        assert sender.feeds[0].stats.outages == 1
    (notice,) = inbox.notices("binance_reconnect")
    assert notice.detail["conn"] == "spot-1"
    assert notice.detail["down_ms"] >= 0
    assert "1001" in notice.detail["reason"]
    assert notice.detail["last_ids"]["bbo_update_id"]["BTCUSDT"] == inbox.bbo()[0].update_id


async def test_server_shutdown_rotates_without_gap_or_duplicate(certs: Path, receiver, binance: BinanceSim):
    rx, inbox = receiver
    async with running_sender(sender_config(certs, rx.port, binance)) as sender:
        await binance.wait_connections(1)
        await eventually(lambda: rx.connected_senders == 1)
        for i in range(20):
            await binance.push_trade("btcusdt", 100 + i, 1)
        await binance.server_shutdown()
        await binance.wait_connections(2)  # make before break: both connections live ...
        for i in range(20, 60):  # ... and both receive the same messages
            await binance.push_trade("btcusdt", 100 + i, 1)
            await asyncio.sleep(0.005)
        await binance.wait_connections(1)
        for i in range(60, 70):
            await binance.push_trade("btcusdt", 100 + i, 1)
        await eventually(lambda: len(inbox.trades()) >= 70, what="70 trades")
        await asyncio.sleep(0.2)
        stats = sender.feeds[0].stats
        assert stats.rotations == 1 and stats.outages == 0
        assert stats.duplicates > 0  # the overlap really happened and was filtered
    ids = [t.trade_id for t in inbox.trades()]
    assert len(ids) == 70 and contiguous(ids)
    assert [t.price for t in inbox.trades()] == [100 + i for i in range(70)]
    assert inbox.notices("binance_reconnect") == []


async def test_silent_feed_is_treated_as_dead(certs: Path, receiver, binance: BinanceSim):
    rx, _ = receiver
    async with running_sender(sender_config(certs, rx.port, binance, BINANCE_STALE_SECS="0.6")) as sender:
        await binance.wait_connections(1)
        await binance.push_bbo("btcusdt", 1, 2)
        await eventually(lambda: binance.connects >= 2, timeout_s=5, what="stale reconnect")
        assert sender.feeds[0].stats.stale_closes >= 1


async def test_receiver_restart_loses_no_trade_and_conflates_bbo(certs: Path, binance: BinanceSim):
    rx, inbox = make_receiver(certs)
    await rx.start()
    port = rx.port
    async with running_sender(sender_config(certs, port, binance)) as sender:
        await binance.wait_connections(1)
        await eventually(lambda: rx.connected_senders == 1)
        for i in range(10):
            await binance.push_trade("btcusdt", 100 + i, 1)
        await eventually(lambda: len(inbox.trades()) == 10)
        await eventually(lambda: sender.link.buffered == 0, what="first trades acknowledged")
        await rx.close()
        await eventually(lambda: not sender.link.connected, what="sender notices the outage")
        for i in range(10, 40):  # Amsterdam is down
            await binance.push_trade("btcusdt", 100 + i, 1)
            await binance.push_bbo("btcusdt", 1000 + i, 1001 + i)
            await binance.push_bbo("ethusdt", 50 + i, 51 + i)
        await eventually(lambda: sender.link.buffered == 30, what="30 trades held")
        rx2, inbox2 = make_receiver(certs, port=port)
        await rx2.start()
        try:
            await eventually(lambda: len(inbox2.trades()) == 30, what="held trades replayed")
            await eventually(lambda: len(inbox2.bbo()) == 2)
            await asyncio.sleep(0.2)
        finally:
            await rx2.close()
    ids = [t.trade_id for t in inbox.trades() + inbox2.trades()]
    assert len(ids) == 40 and contiguous(ids)
    # only the latest quote per symbol survives an outage
    assert sorted((b.symbol, b.bid) for b in inbox2.bbo()) == [("BTCUSDT", 1039), ("ETHUSDT", 89)]
    assert sender.link.stats.bbo_conflated == 58


async def test_unacknowledged_trades_are_replayed_and_deduplicated(certs: Path, binance: BinanceSim):
    # Acks every 0.5 s: trades written just before the connection breaks are still unacknowledged.
    rx, inbox = make_receiver(certs, ack_interval_s=0.5)
    await rx.start()
    try:
        async with running_sender(sender_config(certs, rx.port, binance)) as sender:
            await binance.wait_connections(1)
            await eventually(lambda: rx.connected_senders == 1)
            await asyncio.sleep(0.6)
            for i in range(25):
                await binance.push_trade("ethusdt", 10 + i, 1)
            await eventually(lambda: len(inbox.trades()) == 25)
            assert sender.link.buffered > 0  # delivered but not yet acknowledged
            for conn in list(rx._connections):  # break the link, keep the server
                conn.close()
            await eventually(lambda: rx.stats.duplicates > 0, what="replayed trades arrive")
            await eventually(lambda: sender.link.buffered == 0, timeout_s=5, what="replay acknowledged")
    finally:
        await rx.close()
    ids = [t.trade_id for t in inbox.trades()]
    assert len(ids) == 25 and contiguous(ids)  # each trade handed over exactly once
    assert sender.link.stats.replayed >= rx.stats.duplicates > 0


async def test_buffer_overflow_drops_oldest_and_says_so(certs: Path, binance: BinanceSim):
    rx, inbox = make_receiver(certs)
    await rx.start()
    port = rx.port
    await rx.close()  # Amsterdam is down from the start
    async with running_sender(sender_config(certs, port, binance, TRADE_BUFFER="100")) as sender:
        await binance.wait_connections(1)
        for i in range(150):
            await binance.push_trade("btcusdt", 100 + i, 1)
        await eventually(lambda: sender.link.stats.trades_dropped == 50, what="50 dropped")
        rx2, inbox = make_receiver(certs, port=port)
        await rx2.start()
        try:
            await eventually(lambda: len(inbox.trades()) == 100 and inbox.notices("trades_dropped"))
        finally:
            await rx2.close()
    ids = [t.trade_id for t in inbox.trades()]
    assert contiguous(ids)
    (notice,) = inbox.notices("trades_dropped")
    dropped = notice.detail["BTCUSDT"]
    assert dropped["count"] == 50
    assert dropped["last_trade_id"] == ids[0] - 1
    assert dropped["first_trade_id"] == ids[0] - 50
