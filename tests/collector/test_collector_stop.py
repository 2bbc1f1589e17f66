"""Stopping the data-collector: nothing lost on a clean stop, bounded whatever S3 does."""

from __future__ import annotations

from pathlib import Path

from polymm.sim.binance_ws import BinanceSim
from polymm.sim.polymarket_ws import PolymarketSim
from polymm.sim.ports import free_port
from tests.collector.conftest import YES, collector_env, new_bucket, read_s3_table, running_collector
from tests.conftest import eventually
from tests.lake.conftest import MotoServer
from tests.relay.conftest import running_sender, sender_config


async def test_clean_stop_with_a_sender_connected_loses_no_row(
    certs: Path, moto_server: MotoServer, tmp_path: Path
):
    """The relay_disconnected event is raised by the hang-up during shutdown: it must still be
    journaled, compacted and uploaded, not dropped as 'could not be journaled'."""
    bucket = new_bucket(moto_server, "clean-stop")
    async with BinanceSim(rate_hz=0) as binance, PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        port = free_port()
        env = collector_env(certs, tmp_path / "data", moto_server, bucket, poly.url,
                            POLYMARKET_TOKENS=YES, LISTEN_PORT=str(port))  # fmt: skip
        async with running_sender(sender_config(certs, port, binance, SYMBOLS="btcusdt")) as sender:
            async with running_collector(env) as collector:
                await eventually(lambda: collector.receiver.connected_senders == 1, what="sender connected")
                await binance.push_bbo("btcusdt", 100.0, 100.5)
                await eventually(lambda: collector.binance.bbo == 1, what="bbo received")
                lake = collector.lake
            # the collector has stopped, the sender is still running
            assert sender.link is not None
    assert lake.stats.dropped == {}
    _, events = read_s3_table(moto_server, bucket, "collector/events/")
    kinds = [e["kind"] for e in events if e["source"] == "binance"]
    assert kinds.count("relay_connected") == 1 and kinds.count("relay_disconnected") == 1, kinds
