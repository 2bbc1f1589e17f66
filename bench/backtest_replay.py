"""Backtest benchmark (run on demand, not in the test suite).

Writes a synthetic lake in the collector's exact format (TableSpec schemas, zstd, 128k-row groups,
hive paths): BTCUSDT BBO plus 10 Polymarket tokens (5 YES/NO markets) with 20-level L2 and
trades. Then, each phase in its own process pinned to one core:
- replay: read + merge + dispatch (polymm.backtest.reader/merge, a no-op per event), no strategy;
- backtest: `run_backtest` with the reference strategy on the 5 markets and the fill model;
- hftbacktest (the anchor, PyPI `hftbacktest`, Rust core; only if importable): the same events
  converted to its event format (a BBO = 2 depth events, an L2 row = its 40 level events, a trade
  = 1 trade event), replay-only (`elapse` over the whole range, no orders);
- day: the backtest on a full synthetic day (--day-hours 24), its wall time and peak RSS.

    .venv/bin/python bench/backtest_replay.py [--quick] [--bbo-rate 20] [--l2-rate 1] [--hours 1]

The replay phase runs twice in its process; replay_warm_events_per_s is the second pass (the
first pays one-off costs of the first Arrow reads). The last line is one JSON object:
replay_events_per_s, backtest_events_per_s, hftbacktest_events_per_s (null when not installed),
peak_rss_mb (the day run), day_s, replay_warm_events_per_s, ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from polymm.lake.compact import parquet_options
from polymm.lake.partition import NS_PER_HOUR, PartKey
from polymm.lake.schemas import TABLES

T0_HOUR = 1_795_600_800 // 3600  # 2026-11-25T10:00Z
SYMBOL = "BTCUSDT"
N_MARKETS = 5
LEVELS = 20


def tokens() -> list[tuple[str, str]]:
    return [(str(7 * 10**70 + i), str(8 * 10**70 + i)) for i in range(N_MARKETS)]


def _write(root: Path, table: str, part: str, hour: int, data: dict[str, Any]) -> None:
    spec = TABLES[table]
    path = root / PartKey(table, part, hour).data_key(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data, schema=spec.schema), path, **parquet_options(spec))


def _levels(px: np.ndarray, sz: np.ndarray) -> pa.Array:
    n = px.shape[0]
    flat = pa.StructArray.from_arrays([pa.array(px.ravel()), pa.array(sz.ravel())], names=["price", "size"])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * LEVELS + 1, LEVELS, dtype=np.int32)), flat)


def synth_hour(root: Path, hour: int, bbo_rate: float, l2_rate: float, rng: np.random.Generator) -> int:
    start = hour * NS_PER_HOUR
    n = int(bbo_rate * 3600)
    ts = np.sort(start + rng.integers(0, NS_PER_HOUR, n))
    mid = 97_000 + np.cumsum(rng.normal(0, 2.0, n))
    zeros = np.zeros(n, np.int64)
    _write(
        root,
        "binance_bbo",
        SYMBOL,
        hour,
        {
            "recv_ts": ts,
            "exch_ts": zeros,
            "symbol": [SYMBOL] * n,
            "bid": mid - 0.5,
            "ask": mid + 0.5,
            "bid_qty": rng.uniform(0.1, 3, n),
            "ask_qty": rng.uniform(0.1, 3, n),
            "txn_ts": zeros,
            "update_id": np.arange(n, dtype=np.int64) + hour * 10**8,
            "sender_recv_ts": ts - 5_000_000,
            "relay_seq": np.arange(n, dtype=np.int64),
        },
    )
    total = n
    for yes, no in tokens():
        m = int(l2_rate * 3600)
        lts = np.sort(start + rng.integers(0, NS_PER_HOUR, m))
        best = 47 + rng.integers(-2, 3, m)  # YES best bid in ticks, around the fair value
        steps = np.arange(LEVELS)
        for token, bid_t in ((yes, best), (no, 100 - best - 3)):
            bids = (bid_t[:, None] - steps[None, :]) / 100.0
            asks = (bid_t[:, None] + 3 + steps[None, :]) / 100.0
            sizes = rng.uniform(10, 500, (m, LEVELS)).round(2)
            _write(
                root,
                "polymarket_l2",
                token,
                hour,
                {
                    "recv_ts": lts,
                    "token_id": [token] * m,
                    "bids": _levels(bids, sizes),
                    "asks": _levels(asks, sizes[:, ::-1].copy()),
                    "exch_ts": lts // 1_000_000,
                    "hash": ["h"] * m,
                },
            )
            k = max(1, m // 2)
            tts = np.sort(start + rng.integers(0, NS_PER_HOUR, k))
            idx = np.searchsorted(lts, tts).clip(0, m - 1)
            sell = rng.random(k) < 0.5
            price = np.where(sell, bid_t[idx], bid_t[idx] + 3) / 100.0
            _write(
                root,
                "polymarket_trades",
                token,
                hour,
                {
                    "recv_ts": tts,
                    "token_id": [token] * k,
                    "price": price,
                    "size": rng.uniform(5, 200, k).round(2),
                    "side": np.where(sell, "SELL", "BUY").tolist(),
                    "exch_ts": tts // 1_000_000,
                    "fee_rate_bps": ["0"] * k,
                    "transaction_hash": [f"0x{token[-3:]}{hour:x}{j:08x}" for j in range(k)],
                },
            )
            total += m + k
    return total


def write_markets(path: Path, hours: int) -> Path:
    expiry = (T0_HOUR + hours + 24) * 3600
    lines = []
    for i, (yes, no) in enumerate(tokens()):
        lines += [
            "[[markets]]",
            f'name = "bench-{i}"',
            f'condition_id = "0x{i:064x}"',
            f'yes_token = "{yes}"',
            f'no_token = "{no}"',
            f'binance_symbol = "{SYMBOL}"',
            'kind = "above"',
            f"strike = {96_900 + 50 * i}",
            f"expiry = {expiry}",
            "min_edge = 0.02",
            "quote_size = 10",
            "max_position = 1000",
            "max_notional = 1000",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- phases (each in its own process) -------------------------------------------------------------------


def phase_replay(root: Path, hours: int) -> dict[str, Any]:
    from polymm.backtest.merge import Selection, chunks
    from polymm.backtest.reader import LakeReader

    sel = Selection((SYMBOL,), tuple(t for pair in tokens() for t in pair))

    def once() -> tuple[int, float]:
        reader = LakeReader(str(root), T0_HOUR * NS_PER_HOUR, (T0_HOUR + hours) * NS_PER_HOUR)
        counts = [0, 0, 0, 0, 0]
        started = time.perf_counter()
        events = 0
        for chunk in chunks(reader, sel):
            kinds, rows, ts = chunk.kind, chunk.row, chunk.ts
            last = 0
            for i in range(len(ts)):  # dispatch: the engine's loop shape, handlers do nothing
                t = ts[i]
                if t < last:
                    raise AssertionError("out of order")
                last = t
                counts[kinds[i]] += rows[i] >= 0
            events += len(ts)
        return events, time.perf_counter() - started

    events, took = once()  # the first pass in the process (cold: first Arrow reads of the files)
    _, warm = once()  # the same again: steady state, what each further hour of a long run costs
    return {"events": events, "s": took, "events_per_s": events / took, "warm_events_per_s": events / warm}


def phase_backtest(root: Path, hours: int, markets: Path) -> dict[str, Any]:
    from polymm.backtest.run import RunOptions, run_backtest

    opts = RunOptions(
        lake=str(root),
        start_ns=T0_HOUR * NS_PER_HOUR,
        end_ns=(T0_HOUR + hours) * NS_PER_HOUR,
        markets_path=markets,
        overrides={"max_fair_deviation": None},
    )
    started = time.perf_counter()
    res = run_backtest(opts)
    took = time.perf_counter() - started
    c = res.bt.counters
    return {
        "events": c.events,
        "s": took,
        "events_per_s": c.events / took,
        "fills": len(res.bt.fills),
        "orders": c.posts,
        "decisions": c.decisions,
    }


def phase_hftbacktest(root: Path, hours: int) -> dict[str, Any]:
    try:
        from hftbacktest import (
            BUY_EVENT,
            DEPTH_EVENT,
            EXCH_EVENT,
            LOCAL_EVENT,
            SELL_EVENT,
            TRADE_EVENT,
            BacktestAsset,
            HashMapMarketDepthBacktest,
        )
        from hftbacktest.types import event_dtype
        from numba import njit
    except ImportError as exc:
        return {"skipped": f"hftbacktest not importable ({exc})"}
    flags = EXCH_EVENT | LOCAL_EVENT
    parts = []
    # The anchor gets the same rows; its one asset book takes every level update (a single book
    # is all its replay needs to do per event; the conversion is not timed).
    for hour in range(T0_HOUR, T0_HOUR + hours):
        bbo = pq.read_table(root / PartKey("binance_bbo", SYMBOL, hour).data_key(0)).to_pydict()
        ts = np.asarray(bbo["recv_ts"])
        for side, px, qty in ((BUY_EVENT, "bid", "bid_qty"), (SELL_EVENT, "ask", "ask_qty")):
            a = np.zeros(len(ts), event_dtype)
            a["ev"], a["exch_ts"], a["local_ts"] = DEPTH_EVENT | flags | side, ts - 5_000_000, ts
            a["px"], a["qty"] = np.round(np.asarray(bbo[px]) / 0.01) * 0.01 / 1000, bbo[qty]
            parts.append(a)
        for pair in tokens():
            for token in pair:
                l2 = pq.read_table(root / PartKey("polymarket_l2", token, hour).data_key(0))
                lts = l2.column("recv_ts").to_numpy()
                for side, name in ((BUY_EVENT, "bids"), (SELL_EVENT, "asks")):
                    flat = l2.column(name).combine_chunks().flatten()
                    a = np.zeros(len(flat), event_dtype)
                    a["ev"] = DEPTH_EVENT | flags | side
                    a["exch_ts"] = a["local_ts"] = np.repeat(lts, LEVELS)
                    a["px"], a["qty"] = flat.field("price").to_numpy(), flat.field("size").to_numpy()
                    parts.append(a)
                tr = pq.read_table(root / PartKey("polymarket_trades", token, hour).data_key(0)).to_pydict()
                a = np.zeros(len(tr["recv_ts"]), event_dtype)
                a["ev"] = (
                    TRADE_EVENT | flags | np.where(np.asarray(tr["side"]) == "BUY", BUY_EVENT, SELL_EVENT)
                )
                a["exch_ts"] = a["local_ts"] = tr["recv_ts"]
                a["px"], a["qty"] = tr["price"], tr["size"]
                parts.append(a)
    data = np.concatenate(parts)
    data = data[np.argsort(data["local_ts"], kind="stable")]
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_latency(22_500_000, 22_500_000)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(0.00001)
        .lot_size(0.01)
        .last_trades_capacity(0)
    )

    @njit
    def replay(hbt: Any) -> int:
        n = 0
        while hbt.elapse(1_000_000_000) == 0:
            n += 1
        return n

    warm = HashMapMarketDepthBacktest(
        [
            BacktestAsset()
            .data([data[:1000]])
            .linear_asset(1.0)
            .constant_latency(0, 0)
            .risk_adverse_queue_model()
            .no_partial_fill_exchange()
            .trading_value_fee_model(0.0, 0.0)
            .tick_size(0.00001)
            .lot_size(0.01)
        ]
    )
    replay(warm)  # JIT compile outside the timing
    hbt = HashMapMarketDepthBacktest([asset])
    started = time.perf_counter()
    replay(hbt)
    took = time.perf_counter() - started
    hbt.close()
    return {"events": len(data), "s": took, "events_per_s": len(data) / took}


def child(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    root, hours = Path(args.root), args.hours
    if args.phase == "replay":
        out = phase_replay(root, hours)
    elif args.phase == "backtest":
        out = phase_backtest(root, hours, Path(args.markets))
    else:
        out = phase_hftbacktest(root, hours)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(phase: str, root: Path, hours: int, markets: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--root",
        str(root),
        "--hours",
        str(hours),
        "--markets",
        str(markets),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {
            "error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
        }
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 minutes of data per phase, a 2-hour 'day'")
    p.add_argument("--hours", type=int, default=1, help="hours of data for the throughput phases")
    p.add_argument("--day-hours", type=int, default=24, help="hours in the day-size run (0: skip it)")
    p.add_argument("--bbo-rate", type=float, default=20.0, help="BTCUSDT BBO updates per second")
    p.add_argument("--l2-rate", type=float, default=1.0, help="L2 rows per token per second")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--markets", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        child(args)
        return
    bbo_rate, l2_rate, day_hours = args.bbo_rate, args.l2_rate, args.day_hours
    if args.quick:
        bbo_rate, l2_rate, day_hours = bbo_rate / 6, l2_rate / 6, min(day_hours, 2)
    with tempfile.TemporaryDirectory(prefix="bt-bench-") as tmp:
        root = Path(tmp) / "lake"
        rng = np.random.default_rng(1)
        hours = max(args.hours, day_hours)
        rows = sum(synth_hour(root, T0_HOUR + h, bbo_rate, l2_rate, rng) for h in range(hours))
        markets = write_markets(Path(tmp) / "markets.toml", hours)
        print(f"synthetic lake: {hours} h, {rows} rows ({bbo_rate:g} BBO/s, 10 tokens x {l2_rate:g} L2/s)")
        replay = run_child("replay", root, args.hours, markets)
        print("replay:", json.dumps(replay))
        backtest = run_child("backtest", root, args.hours, markets)
        print("backtest:", json.dumps(backtest))
        anchor = run_child("hftbacktest", root, args.hours, markets)
        print("hftbacktest:", json.dumps(anchor))
        day = run_child("backtest", root, day_hours, markets) if day_hours else {}
        if day:
            print(f"day ({day_hours} h):", json.dumps(day))
    hft = anchor.get("events_per_s")
    out = {
        "replay_events_per_s": round(replay.get("events_per_s", 0)),
        "backtest_events_per_s": round(backtest.get("events_per_s", 0)),
        "hftbacktest_events_per_s": round(hft) if hft else None,
        "replay_vs_hftbacktest": round(replay.get("events_per_s", 0) / hft, 3) if hft else None,
        "replay_warm_events_per_s": round(replay.get("warm_events_per_s", 0)),
        "peak_rss_mb": round(day.get("peak_rss_mb", backtest.get("peak_rss_mb", 0)), 1),
        "day_hours": day_hours,
        "day_events": day.get("events"),
        "day_s": round(day["s"], 2) if "s" in day else None,
        "bbo_per_s": bbo_rate,
        "l2_per_token_per_s": l2_rate,
        "tokens": 2 * N_MARKETS,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
