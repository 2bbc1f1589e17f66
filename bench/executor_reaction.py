"""Executor reaction benchmark: a Binance BBO reaches the executor -> order requests reach the CLOB.

The real trading-executor (reference strategy, engine, real py-clob-client-v2 with coincurve)
quotes one market on the local CLOB. Each round moves the Binance mid enough to move the fair
value, hands the decoded BBO to the executor exactly as the relay receiver does, and times:
  decide        strategy + diff, on the event loop (target: p99 under 1 ms)
  first request BBO -> first request of the reaction (the cancel) arriving at the CLOB
  tick_to_wire  BBO -> the POST of the replacement orders arriving at the CLOB
  sign          one V2 order signature (EIP-712 + secp256k1 via coincurve), and orders signed/s
The executor's overlap rule alternates every two rounds in the same executor (same connections,
same load): OVERLAP_POSTS=auto (posts alongside the cancel where the limits allow;
`overlapped_rounds` says how often it did) for the main figures, never (cancel, wait for its
answer, post) for the `cancel_first_*` ones.
Baseline in the same run, doing the same work: the textbook path with py-clob-client-v2, which on
each tick cancels the two resting quotes (cancel_orders) and then calls create_and_post_order for
each replacement in turn; its first request is the cancel, as ours is.
Arrivals come over a pipe from the CLOB process: every wait for them has a deadline, and a round
whose requests never arrive is counted (`missed`), not fatal.

The local CLOB runs in its own process (as the real venue is elsewhere) and reports when each
request reached it over a pipe; wall clocks are comparable because both processes share a host.

usage: bench/executor_reaction.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import subprocess
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from eth_account import Account
from py_clob_client_v2 import ClobClient
from py_clob_client_v2.clob_types import OrderArgs

from polymm.executor.config import ExecutorServiceConfig
from polymm.executor.overlap import OverlapMode
from polymm.executor.service import TradingExecutor
from polymm.executor.strategy_bridge import build_strategy
from polymm.executor.types import OrderState, Quote, Side
from polymm.relay.events import Bbo
from polymm.service.config import Env
from polymm.sim.clob import ClobSim
from polymm.sim.markets_file import write_above_market

ROOT = Path(__file__).resolve().parents[1]
COND, YES, NO = "0x" + "5f" * 32, "7" * 76, "8" * 76


def pct(values: list[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None  # every round missed: null in the figures, not a crash
    return round(data[min(len(data) - 1, int(q / 100 * len(data)))], 1)


class PipeLog:
    """Stands in for ClobSim.request_log in the CLOB process: each arrival goes down the pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, item: tuple[int, str, str]) -> None:
        self.conn.send(item)


def run_clob(conn: Connection) -> None:
    """CLOB process: serve until the parent closes its end of the pipe."""
    # Generous per-signer limits: this measures reaction time, not the exchange's throttle.
    sim = ClobSim(heartbeat_timeout_s=120, order_rate=1e6, order_burst=1e6, cancel_rate=1e6, cancel_burst=1e6)
    sim.add_market(COND, YES, NO, tick_size=0.01, min_size=5)
    sim.request_log = PipeLog(conn)  # type: ignore[assignment]
    sim.start_in_thread()
    conn.send(sim.url)
    conn.send(sim.ws_url)
    with contextlib.suppress(EOFError):
        conn.recv()
    sim.stop_thread()


class RemoteClob:
    """The CLOB process seen from the benchmark: its URLs and the arrival log of its requests."""

    def __init__(self) -> None:
        self._conn, child = multiprocessing.Pipe()
        self._proc = multiprocessing.get_context("spawn").Process(target=run_clob, args=(child,), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()
        self.ws_url: str = self._conn.recv()
        self.request_log: list[tuple[int, str, str]] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                self.request_log.append(self._conn.recv())

    def since(self, t0: int) -> list[tuple[int, str, str]]:
        return [r for r in list(self.request_log) if r[0] >= t0]

    def wait_posts(self, t0: int, posts: int, timeout_s: float = 2.0) -> list[tuple[int, str, str]] | None:
        """Requests since t0 once `posts` order POSTs have arrived, or None at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log = self.since(t0)
            if sum(1 for _, m, p in log if m == "POST" and p.startswith("/order")) >= posts:
                return log
            time.sleep(0.0005)
        return None

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.join(10)


def setup(tmp: Path) -> tuple[RemoteClob, Path, Path]:
    sim = RemoteClob()
    certs = tmp / "certs"
    subprocess.run([str(ROOT / "scripts" / "generate-certs.sh"), "127.0.0.1", str(certs)], check=True,
                   capture_output=True)  # fmt: skip
    markets = write_above_market(
        tmp / "markets.toml", name="bench", condition_id=COND, yes_token=YES, no_token=NO,
        strike=100_000, expires_in_s=3600, min_edge=0.02, requote_threshold=0.005,
    )  # fmt: skip
    return sim, certs, markets


async def start_executor(
    sim: RemoteClob, certs: Path, markets: Path, tmp: Path, **extra_env: str
) -> tuple[TradingExecutor, asyncio.Event, asyncio.Task[None]]:
    """The real trading-executor in this process on the local CLOB, once it is ready to quote
    (Binance feed connected, orders reconciled). Stop it with `stop.set()`, then await the task."""
    env = Env({
        "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": "0", "CERT_DIR": str(certs),
        "MARKETS_CONFIG": str(markets),
        "CLOB_URL": sim.url, "CLOB_WS_URL": sim.ws_url, "DRY_RUN": "false", "BINANCE_STALE_MS": "60000",
        "POLY_PRIVATE_KEY": Account.create().key.hex(), "JOURNAL_DIR": str(tmp / "journal"),
        "MAX_ORDERS_PER_SEC": "1000", **extra_env,
    })  # fmt: skip
    cfg = ExecutorServiceConfig.from_env(env)
    strategy, specs = build_strategy(cfg.markets_path)
    executor = TradingExecutor(cfg, strategy, specs)
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop))
    deadline = time.monotonic() + 30
    while not (executor.feed.connected and executor.engine.orders.reconciled):
        if time.monotonic() > deadline:
            raise RuntimeError("executor did not become ready")
        await asyncio.sleep(0.05)
    return executor, stop, task


async def measure_executor(
    sim: RemoteClob, certs: Path, markets: Path, tmp: Path, rounds: int, **extra_env: str
) -> dict[str, float | None]:
    executor, stop, task = await start_executor(sim, certs, markets, tmp, **extra_env)
    orders = executor.engine.orders.orders
    decide: list[float] = []
    first: dict[OverlapMode, list[float]] = {m: [] for m in OverlapMode}
    wire: dict[OverlapMode, list[float]] = {m: [] for m in OverlapMode}
    missed = dict.fromkeys(OverlapMode, 0)
    for i in range(rounds):
        # in pairs, so that each mode sees both directions of the price step
        mode = executor.engine.orders.overlap = (OverlapMode.AUTO, OverlapMode.NEVER)[(i // 2) % 2]
        mid = 100_000.0 + (40.0 if i % 2 else 0.0)  # each step moves fair value past the threshold
        t0 = time.time_ns()
        bbo = Bbo("BTCUSDT", t0, 0, 0, i, mid - 0.5, 1.0, mid + 0.5, 1.0, arrival_ts=t0)
        executor._on_relay(bbo)  # what the relay receiver does with a decoded frame
        decide.append((time.time_ns() - t0) / 1000)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            log = sim.since(t0)
            posts = [ts for ts, m, p in log if m == "POST" and p.startswith("/order")]
            live = [o for o in orders.values() if o.state is OrderState.LIVE]
            if posts and len(live) == 2:
                first[mode].append((log[0][0] - t0) / 1000)
                wire[mode].append((posts[0] - t0) / 1000)
                break
            await asyncio.sleep(0.001)
        else:
            missed[mode] += 1
        # 4 requests a round: pace below the executor's own 40 orders/s bucket (Polymarket's
        # per-signer limit), or the figures would measure the throttle instead of the reaction.
        await asyncio.sleep(0.12)
    sign_one = [executor.engine.gateway.sign_ms_median * 1000]
    quotes = [Quote(YES, Side.BUY, 0.3 + (k % 10) / 100, 5) for k in range(200)]
    start = time.perf_counter()
    signed = await executor.engine.gateway.sign(quotes)
    signed_per_s = len(signed) / (time.perf_counter() - start)
    sign_samples = [s.sign_ns / 1000 for s in signed if not isinstance(s, tuple)]
    stats = executor.engine.orders.stats
    stop.set()
    await asyncio.wait_for(task, 30)
    auto, never = OverlapMode.AUTO, OverlapMode.NEVER
    return {
        "rounds": len(wire[auto]), "missed": missed[auto], "overlapped": stats.overlapped,
        "decide_p50_us": pct(decide, 50), "decide_p99_us": pct(decide, 99),
        "first_request_p50_us": pct(first[auto], 50), "tick_to_wire_p50_us": pct(wire[auto], 50),
        "tick_to_wire_p99_us": pct(wire[auto], 99),
        "cancel_first_rounds": len(wire[never]), "cancel_first_missed": missed[never],
        "cancel_first_first_request_p50_us": pct(first[never], 50),
        "cancel_first_tick_to_wire_p50_us": pct(wire[never], 50),
        "cancel_first_tick_to_wire_p99_us": pct(wire[never], 99),
        "sign_p50_us": pct(sign_samples or sign_one, 50),
        "sign_p99_us": pct(sign_samples or sign_one, 99), "orders_signed_per_s": round(signed_per_s),
    }  # fmt: skip


def measure_baseline(sim: RemoteClob, rounds: int) -> dict[str, float | None]:
    """Textbook: on each tick, cancel the resting pair, then create_and_post_order for each quote."""
    account = Account.create()
    client = ClobClient(sim.url, chain_id=137, key=account.key.hex())
    client.set_api_creds(client.create_or_derive_api_key())
    client.get_tick_size(YES)  # warm the client's caches, as a fair baseline
    client.get_neg_risk(YES)

    def post_pair(price: float) -> list[str]:
        pair = (
            OrderArgs(token_id=YES, price=price, size=5, side="BUY"),
            OrderArgs(token_id=NO, price=round(0.98 - price - 0.04, 2), size=5, side="BUY"),
        )
        return [client.create_and_post_order(args)["orderID"] for args in pair]

    first, wire, total, missed = [], [], [], 0
    resting = post_pair(0.44)  # quotes to replace from the first tick on
    for i in range(rounds):
        price = 0.45 if i % 2 else 0.46
        t0 = time.time_ns()
        client.cancel_orders(resting)
        resting = post_pair(price)
        total.append((time.time_ns() - t0) / 1000)
        log = sim.wait_posts(t0, 2)
        if log is None:
            missed += 1
            continue
        posts = [ts for ts, m, p in log if m == "POST" and p.startswith("/order")]
        first.append((log[0][0] - t0) / 1000)
        wire.append((posts[0] - t0) / 1000)
    client.cancel_all()
    return {"rounds": len(wire), "missed": missed, "first_request_p50_us": pct(first, 50),
            "tick_to_wire_p50_us": pct(wire, 50), "tick_to_wire_p99_us": pct(wire, 99),
            "both_orders_p50_us": pct(total, 50)}  # fmt: skip


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sim, certs, markets = setup(tmp)
        try:
            ours = await measure_executor(sim, certs, markets, tmp, rounds)
            base = await asyncio.to_thread(measure_baseline, sim, rounds)
        finally:
            sim.stop()
    print(f"executor : {ours}")
    print(f"baseline : {base}")
    print(json.dumps({
        "decide_p50_us": ours["decide_p50_us"], "decide_p99_us": ours["decide_p99_us"],
        "sign_p50_us": ours["sign_p50_us"], "tick_to_wire_p50_us": ours["tick_to_wire_p50_us"],
        "tick_to_wire_p99_us": ours["tick_to_wire_p99_us"],
        "first_request_p50_us": ours["first_request_p50_us"],
        "orders_signed_per_s": ours["orders_signed_per_s"],
        "baseline_tick_to_wire_p50_us": base["tick_to_wire_p50_us"],
        "baseline_tick_to_wire_p99_us": base["tick_to_wire_p99_us"],
        "baseline_first_request_p50_us": base["first_request_p50_us"],
        "missed_rounds": ours["missed"], "baseline_missed_rounds": base["missed"],
        "overlapped_rounds": ours["overlapped"],
        "cancel_first_tick_to_wire_p50_us": ours["cancel_first_tick_to_wire_p50_us"],
        "cancel_first_tick_to_wire_p99_us": ours["cancel_first_tick_to_wire_p99_us"],
        "cancel_first_first_request_p50_us": ours["cancel_first_first_request_p50_us"],
        "cancel_first_missed_rounds": ours["cancel_first_missed"],
    }))  # fmt: skip


if __name__ == "__main__":
    import logging

    import uvloop

    parser = argparse.ArgumentParser(description="executor reaction-time benchmark")
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--rounds", type=int, help="ticks to react to (default 300, quick 40)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(main(args.rounds or (40 if args.quick else 300)))
