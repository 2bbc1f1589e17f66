"""trading-executor as systemd runs it, with the reference strategy and the real client:
sd_notify, kill -9 (the exchange's dead-man switch cancels our orders), SIGTERM, cancel-all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from eth_account import Account
from py_clob_client_v2 import ClobClient
from py_clob_client_v2.clob_types import OrderArgs

from polymm.sim.binance_ws import BinanceSim
from polymm.sim.clob import ClobSim
from polymm.sim.markets_file import write_above_market
from polymm.sim.ports import free_port
from tests.conftest import eventually
from tests.executor.conftest import COND, NO, YES
from tests.relay.conftest import running_sender, sender_config
from tests.relay.test_sender_service import NotifySocket


def markets_file(tmp: Path) -> Path:
    return write_above_market(
        tmp / "markets.toml", name="btc-above-100k", condition_id=COND, yes_token=YES, no_token=NO,
        strike=100_000, expires_in_s=3600, quote_size=10, min_edge=0.03,
    )  # fmt: skip


def executor_env(certs: Path, tmp: Path, clob: ClobSim, key: str, port: int, sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLY_", "CLOB_", "LISTEN_", "TLS_"))}
    env.update(
        NOTIFY_SOCKET=str(sock), WATCHDOG_USEC="2000000", LISTEN_HOST="127.0.0.1", LISTEN_PORT=str(port),
        CERT_DIR=str(certs), MARKETS_CONFIG=str(markets_file(tmp)),
        CLOB_URL=clob.url, CLOB_WS_URL=clob.ws_url,
        DRY_RUN="false", POLY_PRIVATE_KEY=key, JOURNAL_DIR=str(tmp / "journal"), BINANCE_STALE_MS="3000",
    )  # fmt: skip
    return env


async def start(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polymm.executor.service", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def stream_binance(binance: BinanceSim, stop: asyncio.Event) -> None:
    mid = 100_000.0
    while not stop.is_set():
        await binance.push_bbo("btcusdt", mid - 0.5, mid + 0.5)
        await asyncio.sleep(0.1)


async def test_kill_9_leaves_the_dead_man_switch_to_cancel(certs: Path, tmp_path: Path, clob: ClobSim):
    account = Account.create()
    api_key = clob.creds_for(account.address).key
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = executor_env(certs, tmp_path, clob, account.key.hex(), port, notify.path)
    feeding = asyncio.Event()
    async with (
        BinanceSim(rate_hz=0) as binance,
        running_sender(sender_config(certs, port, binance, SYMBOLS="btcusdt")),
    ):
        feeder = asyncio.create_task(stream_binance(binance, feeding))
        try:
            proc = await start(env)
            await eventually(lambda: notify.count("READY=1") == 1, timeout_s=20, what="READY=1")
            await eventually(
                lambda: len(clob.orders_of(api_key)) == 2, timeout_s=15, what="two quotes resting"
            )
            await eventually(lambda: notify.count("WATCHDOG=1") >= 1, what="watchdog while both feeds fresh")
            prices = sorted(float(o["price"]) for o in clob.orders_of(api_key))
            assert all(p <= 0.47 for p in prices)  # fair ~0.5 at the strike, 3 cents edge at least
            await eventually(
                lambda: any(m.startswith("STATUS=LIVE open 2") for m in notify.drain()),
                what="STATUS with 2 orders",
            )

            proc.kill()  # no goodbye: only the exchange's dead-man switch can pull our quotes now
            await proc.wait()
            await eventually(lambda: clob.orders_of(api_key) == [], timeout_s=10, what="dead-man cancel")

            proc = await start(env)
            await eventually(lambda: len(clob.orders_of(api_key)) == 2, timeout_s=20, what="quoting again")
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            feeding.set()
            await feeder
    assert proc.returncode == 0, output.decode()[-3000:]
    assert clob.orders_of(api_key) == []  # SIGTERM cancelled before exiting
    assert b"Traceback" not in output
    assert account.key.hex().removeprefix("0x").encode() not in output  # the key never reaches a log


async def test_cancel_all_command(certs: Path, tmp_path: Path, clob: ClobSim):
    account = Account.create()
    client = ClobClient(clob.url, chain_id=137, key=account.key.hex())
    client.set_api_creds(client.create_or_derive_api_key())
    for price in (0.40, 0.41):
        client.create_and_post_order(OrderArgs(token_id=YES, price=price, size=5, side="BUY"))
    api_key = clob.creds_for(account.address).key
    assert len(clob.orders_of(api_key)) == 2
    env = executor_env(certs, tmp_path, clob, account.key.hex(), free_port(), tmp_path / "unused.sock")
    env["DRY_RUN"] = "true"  # cancel-all acts whatever DRY_RUN says: it is the operator's kill switch
    proc = await start(env, "cancel-all")
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, output.decode()
    assert b"cancel-all: 2 orders cancelled" in output
    assert clob.orders_of(api_key) == []


async def test_live_trading_without_a_key_is_refused(tmp_path: Path, clob: ClobSim, certs: Path):
    env = executor_env(certs, tmp_path, clob, "", free_port(), tmp_path / "unused.sock")
    env.pop("POLY_PRIVATE_KEY")
    proc = await start(env)
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert (
        output.decode().strip().splitlines()[-1]
        == "config error: POLY_PRIVATE_KEY is required when DRY_RUN=false"
    )
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
