"""`make demo`: the system on one machine for DEMO_SECONDS (20), then a look at the data it wrote.

Starts local servers that speak the venues' formats (Binance, Polymarket market channel, the
Polymarket CLOB with signature checks) and a real S3 gateway (SeaweedFS, `polymm.sim.s3`), then
the real services between them, with mutual-TLS certificates made by scripts/generate-certs.sh:
  production: binance-sender -> trading-executor -> local CLOB (quotes move with Binance; live
              orders against the local CLOB, signed with a throwaway key). Its `quote` lines are
              the trader's view: time, Binance mid, fair value, YES bid/ask, tick-to-quote latency.
  relay view: binance-sender -> relay-monitor (each quote and trade with its per-hop latency)
  collection: binance-collector (sender with trades) -> data-collector -> S3, with the CLOB's market
              channel for the executor's market (so `polymm-backtest` replays what it saw)
Every receiver is listening before its sender starts (no start-up "connection refused"). Stops
everything with SIGTERM, as systemd would, checks each process exited cleanly, then lists the
Parquet objects in S3 and prints a few rows read back from them.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from polymm.service.backoff import sleep_or_stop
from polymm.sim.markets_file import write_above_market
from polymm.sim.ports import free_ports
from polymm.sim.s3 import S3Identity, SeaweedS3

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DEMO_DATA_DIR") or ROOT / "demo-data")  # certs, lake, journals of one run
BUCKET = "marketdata-backtest"
REGION = "eu-central-1"
MARKET = ("0x" + "5f" * 32, "7" * 76, "8" * 76)  # condition id, YES token, NO token on the local CLOB
# Throwaway credentials for the local S3 server only; real ones come from Ansible Vault.
S3_USER = S3Identity("demo", "demo-access-key", "demo-secret-key")
S3_ENV = {**S3_USER.env(), "AWS_DEFAULT_REGION": REGION}
READY_TIMEOUT_S = 30.0


def make_certs() -> Path:
    certs = DATA / "certs"
    if certs.exists():
        shutil.rmtree(certs)
    subprocess.run(
        [str(ROOT / "scripts" / "generate-certs.sh"), "127.0.0.1,localhost", str(certs)], check=True
    )
    return certs


def write_markets() -> Path:
    """One 'BTC above 97,000 in 10 minutes' market, so the fair value moves visibly with Binance."""
    cond, yes, no = MARKET
    return write_above_market(
        DATA / "markets.toml", name="demo-btc-above-97k", condition_id=cond, yes_token=yes, no_token=no,
        strike=97_000, expires_in_s=600, quote_size=10, min_edge=0.02, requote_threshold=0.005,
    )  # fmt: skip


def throwaway_key() -> str:
    from eth_account import Account

    return Account.create().key.hex()  # the local CLOB checks signatures; this key holds nothing


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, asyncio.subprocess.Process, asyncio.Task[object]]] = []

    async def start(self, name: str, args: list[str], env: dict[str, str], ready: str) -> None:
        """Start a process and return once it printed `ready` (e.g. that it listens), so whatever
        connects to it next finds it up; raises if it exits or stays silent instead."""
        proc = await asyncio.create_subprocess_exec(
            *args, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        up = asyncio.Event()
        assert proc.stdout is not None
        task = asyncio.create_task(_pipe(name, proc.stdout, ready, up))
        self.procs.append((name, proc, task))
        waiting = asyncio.ensure_future(up.wait())
        await asyncio.wait({waiting, task}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not up.is_set():
            waiting.cancel()
            raise RuntimeError(f"{name} did not print {ready!r} within {READY_TIMEOUT_S:.0f}s")

    def exited(self) -> list[str]:
        return [name for name, proc, _ in self.procs if proc.returncode is not None]

    async def stop(self) -> list[str]:
        """SIGTERM in reverse start order (producers before consumers); returns failures."""
        failed = []
        for name, proc, task in reversed(self.procs):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
            await task
            if code not in (0, -signal.SIGTERM):
                failed.append(f"{name} exited {code}")
        return failed


async def _pipe(name: str, stream: asyncio.StreamReader, ready: str, up: asyncio.Event) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        if not up.is_set() and ready in text:
            up.set()
        print(f"[{name:<17}] {text}", flush=True)


def show_lake(endpoint: str) -> None:
    import boto3
    import pyarrow.parquet as pq

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    print(f"\n=== s3://{BUCKET}: {len(objects)} objects ===")
    for obj in objects:
        print(f"  {obj['Key']}  ({obj['Size']} bytes)")
    for prefix in (
        "binance/bbo/",
        "binance/trades/",
        "polymarket/l2/",
        "polymarket/trades/",
        "collector/events/",
    ):
        key = next((o["Key"] for o in objects if o["Key"].startswith(prefix)), None)
        if key is None:
            continue
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        print(f"\n--- {key}: {table.num_rows} rows, first 3 ---")
        for row in table.slice(0, 3).to_pylist():
            if "bids" in row:
                row = {**row, "bids": row["bids"][:3], "asks": row["asks"][:3]}
            print("  ", row)
    print("\nA researcher reads the lake with pyarrow, polars or DuckDB: see README, 'Reading the lake'.")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    lake = DATA / "collector" / "lake"
    print(f"Backtest what was just collected:\n  .venv/bin/polymm-backtest --lake {lake} "
          f"--markets {DATA / 'markets.toml'} --date {day}\n")  # fmt: skip


async def main(seconds: float) -> int:
    started = time.monotonic()
    certs = make_certs()
    for old in ("collector", "journal", "s3"):
        if (DATA / old).exists():
            shutil.rmtree(DATA / old)
    (DATA / "s3").mkdir(parents=True)
    ports = free_ports("binance", "relay", "collector", "executor", "clob", "clob_ws")
    markets = write_markets()
    py = sys.executable
    s3 = SeaweedS3(DATA / "s3", identities=(S3_USER,), buckets=(BUCKET,), region=REGION)
    os.environ.update(S3_ENV)
    binance_url = f"ws://127.0.0.1:{ports['binance']}"
    base = {"CERT_DIR": str(certs), "STATUS_LOG_SECS": "5"}
    sender = {**base, "AMS_HOST": "127.0.0.1", "BINANCE_WS_URL": binance_url}
    listening = "relay receiver listening"
    stack = Stack()
    failed = ["the stack did not come up"]
    try:
        # Venues and S3 first, then the receivers, then the senders: each is up (listening) before
        # anything that connects to it starts, and each group starts in parallel.
        venues = asyncio.gather(*(stack.start(name, args, {}, ready) for name, args, ready in [
            ("binance-sim", [py, "-m", "polymm.sim.binance_ws", "--port", str(ports["binance"]),
                             "--rate", "4"], "listening on"),
            ("clob-sim", [py, "-m", "polymm.sim.clob", "--port", str(ports["clob"]),
                          "--ws-port", str(ports["clob_ws"]), "--market", ":".join(MARKET), "--depth", "3",
                          "--takers", "1"],
             "CLOB_WS_URL="),
        ]))  # fmt: skip
        await asyncio.gather(asyncio.to_thread(s3.start), venues)
        await asyncio.gather(*(stack.start(name, args, env, listening) for name, args, env in [
            ("relay-monitor", [py, "-m", "polymm.relay.monitor"],
             {**base, "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(ports["relay"]),
              "MONITOR_LINES_PER_S": "2"}),
            ("data-collector", [py, "-m", "polymm.collector.service"],
             {**base, **S3_ENV, "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(ports["collector"]),
              "DATA_DIR": str(DATA / "collector"), "S3_BUCKET": BUCKET, "S3_REGION": REGION,
              "S3_ENDPOINT_URL": s3.url,
              # the market the executor quotes, from the CLOB's market channel: `polymm-backtest`
              # on this lake replays exactly what the executor saw
              "POLYMARKET_TOKENS": f"{MARKET[1]},{MARKET[2]}",
              "POLYMARKET_WS_URL": f"ws://127.0.0.1:{ports['clob_ws']}/ws/market"}),
            ("trading-executor", [py, "-m", "polymm.executor.service"],
             {**base, "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(ports["executor"]),
              "MARKETS_CONFIG": str(markets), "CLOB_URL": f"http://127.0.0.1:{ports['clob']}",
              "CLOB_WS_URL": f"ws://127.0.0.1:{ports['clob_ws']}", "DRY_RUN": "false",
              "POLY_PRIVATE_KEY": throwaway_key(), "JOURNAL_DIR": str(DATA / "journal"),
              "BINANCE_STALE_MS": "3000"}),
        ]))  # fmt: skip
        await asyncio.gather(*(stack.start(name, [py, "-m", "polymm.relay.sender"], env, "relay link up")
                               for name, env in [
            ("binance-sender", {**sender, "AMS_PORT": str(ports["executor"]), "SYMBOLS": "btcusdt",
                                "SENDER_NAME": "fra-prod"}),
            ("sender (monitor)", {**sender, "AMS_PORT": str(ports["relay"]), "SYMBOLS": "btcusdt",
                                  "INCLUDE_TRADES": "true", "SENDER_NAME": "fra-view"}),
            ("binance-collector", {**sender, "AMS_PORT": str(ports["collector"]),
                                   "SYMBOLS": "btcusdt,ethusdt", "INCLUDE_TRADES": "true",
                                   "SENDER_NAME": "fra-collect"}),
        ]))  # fmt: skip
        print(f"--- demo stack up in {time.monotonic() - started:.1f}s; running for {seconds:.0f}s "
              "(Ctrl-C stops early) ---", flush=True)  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stack.exited():
            if await sleep_or_stop(stop, 0.2):
                break
        if stack.exited():
            print(f"--- a process exited early: {', '.join(stack.exited())} ---", flush=True)
        print("--- stopping with SIGTERM (producers first) ---", flush=True)
        failed = await stack.stop()
        await asyncio.to_thread(show_lake, s3.url)
    finally:
        await stack.stop()  # whatever is still running, e.g. after a start-up failure
        await asyncio.to_thread(s3.stop, True)
    print(
        f"--- demo finished after {time.monotonic() - started:.0f}s:",
        "all processes exited cleanly ---" if not failed else "; ".join(failed),
        flush=True,
    )
    return 1 if failed else 0


def run() -> None:
    import uvloop

    raise SystemExit(uvloop.run(main(float(os.environ.get("DEMO_SECONDS", "20")))))


if __name__ == "__main__":
    run()
