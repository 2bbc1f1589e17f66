"""Live vs backtest on loopback: the production chain trades on the local CLOB while the collection
chain records the same feeds; then the recording is backtested and both are compared.

tests/backtest/test_fidelity.py runs it in the suite; by hand (prints the figures, exit 1 below 99 %;
--keep DIR keeps journal, lake, callback logs and the backtest output):

    .venv/bin/python -m tests.backtest.fidelity [--seconds 40]

    sim Binance -> binance-sender -> trading-executor (DRY_RUN=false) -> local CLOB (market + user WS)
    sim Binance -> binance-collector (sender) -> data-collector <- local CLOB's market channel -> lake

Anonymous takers hit the executor's quotes on the CLOB every couple of seconds, so there are fills.
`live_session` returns the executor's journal directory, the collector's lake and the markets file.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from polymm.sim.clob import ClobSim
from polymm.sim.markets_file import write_above_market
from polymm.sim.ports import free_ports

COND = "0x" + "5f" * 32
YES, NO = "7" * 76, "8" * 76


@dataclass
class Session:
    journal: Path
    lake: Path
    markets: Path
    takes: list[tuple[str, float, float]]


async def _proc(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("wb")
    return await asyncio.create_subprocess_exec(
        *args,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=out,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 40)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def live_session(
    tmp: Path, certs: Path, s3_env: dict[str, str], bucket: str, seconds: float
) -> Session:
    py = sys.executable
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before anything runs on the loop
    clob = ClobSim(heartbeat_timeout_s=10.0, trade_confirm_delay_s=0.05)
    clob.add_market(COND, YES, NO, tick_size=0.01, min_size=5)
    clob.add_external_order(YES, "BUY", 0.20, 100)  # outside liquidity, far from the quotes
    clob.add_external_order(YES, "SELL", 0.80, 100)
    clob.start_in_thread()
    markets = write_above_market(
        tmp / "markets.toml",
        name="fidelity-btc-above-97k",
        condition_id=COND,
        yes_token=YES,
        no_token=NO,
        strike=97_000,
        expires_in_s=3600,
        quote_size=10,
        min_edge=0.02,
        requote_threshold=0.005,
        skew=0,
        max_position=1000,  # far from the limits for the whole run: sizes never get cut
        max_notional=1000,
    )
    ports = free_ports("binance", "collector", "executor")
    logs = tmp / "logs"
    logs.mkdir(parents=True)
    base = {"CERT_DIR": str(certs), "STATUS_LOG_SECS": "5"}
    procs: list[asyncio.subprocess.Process] = []
    takes: list[tuple[str, float, float]] = []
    try:
        procs.append(
            await _proc(
                [py, "-m", "polymm.sim.binance_ws", "--port", str(ports["binance"]), "--rate", "10"],
                {},
                logs / "binance.log",
            )
        )
        collector = await _proc(
            [py, "-m", "polymm.collector.service"],
            {
                **base,
                **s3_env,
                "LISTEN_HOST": "127.0.0.1",
                "LISTEN_PORT": str(ports["collector"]),
                "DATA_DIR": str(tmp / "collector"),
                "S3_BUCKET": bucket,
                "FLUSH_INTERVAL_SECS": "0.2",
                "POLYMARKET_TOKENS": f"{YES},{NO}",
                "POLYMARKET_WS_URL": f"{clob.ws_url}/ws/market",
            },
            logs / "collector.log",
        )
        # The executor's strategy callbacks are recorded (a wrapper, the service itself unchanged):
        # the backtest starts at the first Binance update the live strategy saw.
        module = "tests.backtest.recording_executor"
        executor = await _proc(
            [py, "-m", module],
            {
                **base,
                "LISTEN_HOST": "127.0.0.1",
                "LISTEN_PORT": str(ports["executor"]),
                "MARKETS_CONFIG": str(markets),
                "CLOB_URL": clob.url,
                "CLOB_WS_URL": clob.ws_url,
                "DRY_RUN": "false",
                "POLY_PRIVATE_KEY": Account.create().key.hex(),
                "JOURNAL_DIR": str(tmp / "journal"),
                "CALLBACK_LOG": str(tmp / "live-callbacks.jsonl"),
            },
            logs / "executor.log",
        )
        procs += [collector, executor]
        await asyncio.sleep(2.0)
        sender = {
            **base,
            "AMS_HOST": "127.0.0.1",
            "BINANCE_WS_URL": f"ws://127.0.0.1:{ports['binance']}",
            "SYMBOLS": "btcusdt",
        }
        senders = [
            await _proc(
                [py, "-m", "polymm.relay.sender"],
                {**sender, "AMS_PORT": str(ports[name]), "SENDER_NAME": name},
                logs / f"sender-{name}.log",
            )
            for name in ("collector", "executor")
        ]
        procs += senders
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        n = 0
        while loop.time() < deadline:
            await asyncio.sleep(1.5)
            n += 1
            token = YES if n % 2 else NO
            bids, _ = await asyncio.to_thread(clob.book, token)
            if bids and bids[0][0] > 0.2:  # our bid is the best one: a seller takes 10 shares of it
                price = bids[0][0]
                got = await asyncio.to_thread(clob.take, token, "SELL", price, 10.0)
                takes.append((token, price, got))
        # Both Binance feeds end together, so the recording does not outlast what the executor saw.
        await asyncio.gather(*(_stop(p) for p in senders))
        for proc in (executor, collector):
            await _stop(proc)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        clob.stop_thread()
    return Session(tmp / "journal", tmp / "collector" / "lake", markets, takes)


def journal_rows(journal: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for f in sorted(journal.glob("*.csv")):
        with f.open(newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


TOLERANCE_NS = 300_000_000  # a decision may land one strategy timer tick (250 ms) plus an RTT apart
WARMUP_NS = 0  # the first decisions match too once both start from the same first BBO


def match(
    live: list[tuple[int, tuple]], bt: list[tuple[int, tuple]], tol: int
) -> tuple[list[bool], list[bool]]:
    """Greedy in time order: each live order pairs with the earliest unused backtest order of the
    same token/side/price/size within `tol`. Returns (live matched?, backtest matched?)."""
    used = [False] * len(bt)
    hit = [False] * len(live)
    for i, (t, key) in enumerate(live):
        for j, (u, other) in enumerate(bt):
            if not used[j] and other == key and abs(u - t) <= tol:
                used[j] = hit[i] = True
                break
    return hit, used


def first_bbo_in_lake(session: Session) -> int | None:
    """recv_ts in the lake of the first Binance update the live strategy saw. The backtest starts
    there: BBOs the collector got before the executor was connected would warm the volatility
    estimator up differently, and its quotes would differ by a tick now and then for minutes."""
    import json

    import pyarrow.dataset as ds

    log = session.journal.parent / "live-callbacks.jsonl"
    if not log.exists():
        return None
    with log.open() as fh:
        first = next((json.loads(line)["u"] for line in fh if '"cb": "bbo"' in line), None)
    if first is None:
        return None
    table = ds.dataset(session.lake / "binance" / "bbo", partitioning="hive").to_table(
        columns=["recv_ts"], filter=ds.field("update_id") == first
    )
    return int(table.column("recv_ts")[0].as_py()) if table.num_rows else None


def compare(session: Session, out: Path, record: bool = False) -> dict[str, object]:
    from polymm.backtest.report import write_outputs
    from polymm.backtest.run import RunOptions, run_backtest
    from polymm.backtest.venue import FillParams

    rows = journal_rows(session.journal)
    armed = int(next(r["ts_ns"] for r in rows if r["event"] == "armed"))
    start = first_bbo_in_lake(session) or int(next(r["ts_ns"] for r in rows if r["event"] == "start"))
    # until the first kill after arming (the feeds stopping), where live stopped quoting
    stop = int(next(r["ts_ns"] for r in rows if r["event"] == "kill" and int(r["ts_ns"]) > armed))
    since = armed + WARMUP_NS

    def key(token: str, side: str, price: float, size: float) -> tuple[str, str, float, float]:
        return (token, side, round(price, 4), round(size, 2))

    live = [
        (int(r["ts_ns"]), key(r["token_id"], r["side"], float(r["price"]), float(r["size"])))
        for r in rows
        if r["event"] == "order_sent" and since <= int(r["ts_ns"]) < stop
    ]
    live_fills = [float(r["size"]) for r in rows if r["event"] == "fill" and since <= int(r["ts_ns"]) < stop]
    opts = RunOptions(
        lake=str(session.lake),
        start_ns=start,
        end_ns=stop,
        markets_path=session.markets,
        latency=f"replay:{session.journal}",
        fill=FillParams(own_orders_in_book=True),
    )
    if record:  # the backtest's callbacks too, in the same format as the live executor's
        import polymm.backtest.run as bt_run
        from tests.backtest.recording_executor import Recorder

        build = bt_run.build_adapter
        bt_run.build_adapter = lambda *a: Recorder(build(*a), out.parent / "run" / "backtest-callbacks.jsonl")
    res = run_backtest(opts)
    write_outputs(res, out)
    bt = [
        (r.sent_ns, key(r.token_id, r.side, r.price, r.size))
        for r in sorted(res.bt.records.values(), key=lambda r: r.sent_ns)
        if r.sent_ns >= since
    ]
    bt_fills = [f.size for f in res.bt.fills if f.ts_ns >= since]
    hit, used = match(live, bt, TOLERANCE_NS)
    # Both sides are cut at `stop`: an order in its last TOLERANCE_NS may have its partner just past
    # the cut (seen: a live post 32 ms before the kill whose twin was sent after it). Such orders
    # may still match, but are not counted against either side.
    edge = stop - TOLERANCE_NS
    live_hit = [h for (t, _), h in zip(live, hit, strict=True) if t < edge]
    bt_used = [u for (t, _), u in zip(bt, used, strict=True) if t < edge]
    since_s = lambda t: round((t - armed) / 1e9, 3)  # noqa: E731
    return {
        "unmatched_live_s_after_armed": [
            (since_s(t), k[1:]) for (t, k), h in zip(live, hit, strict=True) if not h
        ],
        "unmatched_backtest_s_after_armed": [
            (since_s(t), k[1:]) for (t, k), u in zip(bt, used, strict=True) if not u
        ],
        "stop_s_after_armed": since_s(stop),
        "live_orders": len(live),
        "backtest_orders": len(bt),
        "matched": sum(hit),
        "match_of_live": sum(live_hit) / max(1, len(live_hit)),
        "match_of_backtest": sum(bt_used) / max(1, len(bt_used)),
        "live_fills": len(live_fills),
        "backtest_fills": len(bt_fills),
        "live_fill_size": sum(live_fills),
        "backtest_fill_size": sum(bt_fills),
    }


def main() -> int:
    import argparse
    import json
    import shutil
    import subprocess
    import tempfile

    from polymm.sim.s3 import ADMIN, REGION, SeaweedS3

    parser = argparse.ArgumentParser(description="live vs backtest fidelity run")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--keep", type=Path, help="keep journal, lake and backtest output here")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp_dir:
        tmp = Path(tmp_dir)
        certs = tmp / "certs"
        subprocess.run(
            [str(root / "scripts" / "generate-certs.sh"), "127.0.0.1,localhost", str(certs)],
            check=True,
            capture_output=True,
        )
        os.environ.update(ADMIN.env(), AWS_DEFAULT_REGION=REGION)
        with SeaweedS3(tmp / "seaweed", identities=(ADMIN,)) as s3:
            bucket = s3.create_bucket("fidelity")
            session = asyncio.run(live_session(tmp / "run", certs, s3.env(), bucket, args.seconds))
        result = compare(session, tmp / "bt", record=args.keep is not None)
        if args.keep is not None:
            shutil.copytree(tmp / "run", args.keep / "run", ignore=shutil.ignore_patterns("seaweed*"))
            shutil.copytree(tmp / "bt", args.keep / "bt")
    print(json.dumps(result))
    return 0 if result["match_of_live"] >= 0.99 and result["match_of_backtest"] >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
