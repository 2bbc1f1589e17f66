"""Stopping the data-collector: nothing lost on a clean stop, bounded whatever S3 does."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest

from polymm.collector.config import CollectorConfig
from polymm.lake import S3Uploader
from polymm.service.config import ConfigError, Env
from polymm.sim.binance_ws import BinanceSim
from polymm.sim.polymarket_ws import PolymarketSim
from polymm.sim.ports import free_port
from polymm.sim.s3 import SeaweedS3
from tests.collector.conftest import YES, collector_env, new_bucket, read_s3_table, running_collector
from tests.collector.test_collector_service import process_env, start
from tests.conftest import ROOT, eventually
from tests.lake.conftest import REGION, S3Server
from tests.relay.conftest import running_sender, sender_config
from tests.relay.test_sender_service import NotifySocket


async def test_clean_stop_with_a_sender_connected_loses_no_row(
    certs: Path, s3_server: S3Server, tmp_path: Path
):
    """The relay_disconnected event is raised by the hang-up during shutdown: it must still be
    journaled, compacted and uploaded, not dropped as 'could not be journaled'."""
    bucket = new_bucket(s3_server, "clean-stop")
    async with BinanceSim(rate_hz=0) as binance, PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        port = free_port()
        env = collector_env(certs, tmp_path / "data", s3_server, bucket, poly.url,
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
    _, events = read_s3_table(s3_server, bucket, "collector/events/")
    kinds = [e["kind"] for e in events if e["source"] == "binance"]
    assert kinds.count("relay_connected") == 1 and kinds.count("relay_disconnected") == 1, kinds


def unit_stop_timeout_s() -> float:
    """TimeoutStopSec of the systemd unit we deploy: systemd SIGKILLs the service after it."""
    text = (ROOT / "templates" / "polymm.service.j2").read_text()
    return float(re.search(r"TimeoutStopSec=\{\{ stop_timeout_sec \| default\((\d+)\) \}\}", text).group(1))


async def test_stop_ends_in_time_with_s3_frozen_and_keeps_every_file(
    certs: Path, aws_test_credentials: None, tmp_path: Path
):
    s3 = SeaweedS3(tmp_path / "seaweed").start()  # our own server: this test freezes it
    bucket = new_bucket(s3, "frozen-s3")
    data = tmp_path / "data"
    notify = NotifySocket(tmp_path / "notify.sock")
    proc: asyncio.subprocess.Process | None = None
    try:
        async with PolymarketSim(rate_hz=20, tokens=[YES]) as poly:
            env = process_env(certs, data, s3, bucket, poly.url, free_port(), notify.path)
            env["STOP_TIMEOUT_SECS"] = "4"
            proc = await start(env)
            await eventually(lambda: notify.count("READY=1") == 1, what="READY=1")
            await asyncio.sleep(1.5)  # a few flushes of L2 rows
            s3.pause()  # SIGSTOP: connections are accepted by the kernel, then nothing answers
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), unit_stop_timeout_s())
            took = time.monotonic() - started
        log = output.decode()
        assert proc.returncode == 0, log[-2000:]
        assert "final upload given up" in log and "Traceback" not in log, log[-3000:]
        assert took < unit_stop_timeout_s()
        local = sorted(str(p.relative_to(data / "lake")) for p in (data / "lake").rglob("*.parquet"))
        assert any(k.startswith("polymarket/l2/") for k in local) and any("events" in k for k in local)

        s3.resume()  # the next start's uploader finds every file still there
        up = S3Uploader(data, bucket, REGION, endpoint_url=s3.url)
        assert await up.cycle() and up.stats.files_pending == 0
        await up.close()
        keys, _ = read_s3_table(s3, bucket, "")
        assert keys == local
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        s3.stop()


def test_default_stop_budget_leaves_room_below_the_unit_stop_timeout(certs: Path, tmp_path: Path):
    base = {"CERT_DIR": str(certs), "DATA_DIR": str(tmp_path), "S3_BUCKET": "b", "POLYMARKET_TOKENS": "1"}
    budget = CollectorConfig.from_env(Env(base)).stop_timeout_s
    assert budget + 5 <= unit_stop_timeout_s()  # room for interpreter exit after the final upload
    with pytest.raises(ConfigError, match="STOP_TIMEOUT_SECS"):
        CollectorConfig.from_env(Env({**base, "STOP_TIMEOUT_SECS": "0"}))
