"""data-collector processes killed in a row: the sender's replays are never stored twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from polymm.sim.polymarket_ws import PolymarketSim
from polymm.sim.ports import free_port
from tests.collector.conftest import YES, new_bucket, read_s3_table
from tests.collector.scripted_sender import ScriptedSender
from tests.collector.test_collector_service import process_env, start
from tests.conftest import eventually
from tests.lake.conftest import S3Server
from tests.relay.test_sender_service import NotifySocket


async def test_two_kills_in_a_row_store_every_trade_exactly_once(
    certs: Path, s3_server: S3Server, tmp_path: Path
):
    """kill -9, restart, kill -9 again before the sender reconnects, restart: the third run must
    know from lake.db (not from journals it recovered: there are none) which trades are stored."""
    bucket = new_bucket(s3_server, "two-kills")
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    async with PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        env = process_env(certs, tmp_path / "data", s3_server, bucket, poly.url, port, notify.path)
        sender = ScriptedSender(certs, port)

        first = await start(env)
        await eventually(lambda: notify.count("READY=1") == 1, what="READY=1")
        await sender.connect()
        await sender.send(range(1000, 1020))
        await sender.wait_all_acked()  # journaled; the crash below swallows the acks
        first.kill()
        await first.wait()
        await sender.close()

        second = await start(env)  # recovers the journals into data_000, then dies at once
        await eventually(lambda: notify.count("READY=1") == 2, what="READY=1 after the first kill")
        second.kill()
        await second.wait()

        third = await start(env)
        await eventually(lambda: notify.count("READY=1") == 3, what="READY=1 after the second kill")
        await sender.connect()  # replays 1000..1019
        await sender.send(range(1020, 1030))
        await sender.wait_all_acked()
        third.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(third.communicate(), 60)
        await sender.close()
    log = output.decode()
    assert third.returncode == 0, log[-2000:]
    _, rows = read_s3_table(s3_server, bucket, "binance/trades/symbol=BTCUSDT/")
    assert sorted(r["trade_id"] for r in rows) == list(range(1000, 1030))  # each exactly once
    assert "resuming BTCUSDT trades after trade id 1019" in log, log[-2000:]
