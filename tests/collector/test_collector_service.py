"""data-collector as systemd runs it: sd_notify, kill -9 mid-hour and restart, bad config."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from polymm.collector.config import CollectorConfig
from polymm.service.config import ConfigError, Env
from polymm.sim.binance_ws import BinanceSim
from polymm.sim.polymarket_ws import PolymarketSim
from polymm.sim.ports import free_port
from tests.collector.conftest import YES, new_bucket, read_s3_table
from tests.conftest import eventually
from tests.lake.conftest import REGION, S3Server
from tests.relay.conftest import running_sender, sender_config
from tests.relay.test_sender_service import NotifySocket


def process_env(
    certs: Path, data: Path, s3: S3Server, bucket: str, poly_url: str, port: int, sock: Path
) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "POLYMARKET", "LISTEN_", "TLS_"))}
    env.update(
        NOTIFY_SOCKET=str(sock), WATCHDOG_USEC="1000000", LISTEN_HOST="127.0.0.1", LISTEN_PORT=str(port),
        CERT_DIR=str(certs), DATA_DIR=str(data), S3_BUCKET=bucket, S3_REGION=REGION, S3_ENDPOINT_URL=s3.url,
        POLYMARKET_TOKENS=YES, POLYMARKET_WS_URL=poly_url, FLUSH_INTERVAL_SECS="0.2", SOURCE_STALE_SECS="5",
    )  # fmt: skip
    return env


async def start(env: dict) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polymm.collector.service", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_kill_9_mid_hour_loses_at_most_a_flush_and_overwrites_nothing(
    certs: Path, s3_server: S3Server, tmp_path: Path
):
    bucket = new_bucket(s3_server, "kill-nine")
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    async with BinanceSim(rate_hz=0) as binance, PolymarketSim(rate_hz=20, tokens=[YES]) as poly:
        env = process_env(certs, tmp_path / "data", s3_server, bucket, poly.url, port, notify.path)
        async with running_sender(sender_config(certs, port, binance, SYMBOLS="btcusdt")) as sender:
            first = await start(env)
            await eventually(lambda: notify.count("READY=1") == 1, what="READY=1")
            await eventually(lambda: sender.link.connected, what="sender connected")
            for i in range(20):
                await binance.push_bbo("btcusdt", 1000 + i, 1001 + i)
            await eventually(lambda: notify.count("WATCHDOG=1") >= 1, what="watchdog while all sources live")
            await asyncio.sleep(1.0)  # several flush intervals: all 20 are durable now
            first.kill()  # kill -9: no flush, no compaction, no goodbye
            await first.wait()

            second = await start(env)
            await eventually(lambda: notify.count("READY=1") == 2, what="READY=1 after restart")
            await eventually(lambda: sender.link.connected, timeout_s=15, what="sender reconnected")
            for i in range(20, 40):
                await binance.push_bbo("btcusdt", 1000 + i, 1001 + i)
            await asyncio.sleep(1.0)
            status = [m for m in notify.drain() if m.startswith("STATUS=")]
            assert "rows pending" in status[-1] and "S3 pending" in status[-1]
            second.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 0, output.decode()[-2000:]
    assert b"Traceback" not in output
    keys, rows = read_s3_table(s3_server, bucket, "binance/bbo/symbol=BTCUSDT/")
    bids = sorted(r["bid"] for r in rows)
    assert bids == [1000 + i for i in range(40)]  # nothing lost, nothing duplicated
    assert len(keys) >= 2 and len(set(keys)) == len(keys)  # the restart wrote a new data_NNN
    assert {k.rsplit("/", 1)[1] for k in keys} >= {"data_000.parquet", "data_001.parquet"}


async def test_kill_9_before_a_flush_loses_no_binance_trade(certs: Path, s3_server: S3Server, tmp_path: Path):
    """Frames are acknowledged only once journaled, so the sender replays what a killed collector
    had received but not yet written: not one trade is lost, none is written twice."""
    bucket = new_bucket(s3_server, "kill-nine-trades")
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    async with BinanceSim(rate_hz=0) as binance, PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        env = process_env(certs, tmp_path / "data", s3_server, bucket, poly.url, port, notify.path)
        env["FLUSH_INTERVAL_SECS"] = "30"  # nothing reaches a journal before the kill
        config = sender_config(certs, port, binance, SYMBOLS="btcusdt", INCLUDE_TRADES="true")
        async with running_sender(config) as sender:
            first = await start(env)
            await eventually(lambda: notify.count("READY=1") == 1, what="READY=1")
            await eventually(lambda: sender.link.connected, what="sender connected")
            for i in range(20):
                await binance.push_trade("btcusdt", 1000 + i, 0.5)
            await asyncio.sleep(1.0)  # received and (formerly) acknowledged, but not durable
            first.kill()
            await first.wait()

            env["FLUSH_INTERVAL_SECS"] = "0.2"
            second = await start(env)
            await eventually(lambda: notify.count("READY=1") == 2, what="READY=1 after restart")
            await eventually(lambda: sender.link.connected, timeout_s=15, what="sender reconnected")
            await asyncio.sleep(1.0)
            second.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 0, output.decode()[-2000:]
    _, rows = read_s3_table(s3_server, bucket, "binance/trades/symbol=BTCUSDT/")
    assert sorted(r["price"] for r in rows) == [1000 + i for i in range(20)]


def test_bad_configuration_names_the_variable(certs: Path, tmp_path: Path):
    base = {"CERT_DIR": str(certs), "DATA_DIR": str(tmp_path), "S3_BUCKET": "b", "POLYMARKET_TOKENS": "123"}
    assert CollectorConfig.from_env(Env(base)).s3.region == "eu-central-1"
    for extra, variable in [
        ({"S3_BUCKET": ""}, "S3_BUCKET"),
        ({"POLYMARKET_TOKENS": ""}, "POLYMARKET_TOKENS"),
        ({"POLYMARKET_TOKENS": "abc"}, "POLYMARKET_TOKENS"),
        ({"POLYMARKET_WS_URL": "http://x"}, "POLYMARKET_WS_URL"),
        ({"S3_ENDPOINT_URL": "ftp://x"}, "S3_ENDPOINT_URL"),
        ({"FLUSH_INTERVAL_SECS": "0"}, "FLUSH_INTERVAL_SECS"),
        ({"LISTEN_PORT": "x"}, "LISTEN_PORT"),
        ({"TLS_KEY": "/missing.key"}, "TLS_KEY"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            CollectorConfig.from_env(Env({**base, **extra}))
    discovery_only = CollectorConfig.from_env(
        Env({**base, "POLYMARKET_TOKENS": "", "DISCOVERY_SLUGS": "btc-updown-5m"})
    )
    assert discovery_only.discovery and discovery_only.polymarket_tokens == []
