"""Ingest benchmark for the data-collector storage layer (run on demand, not in the test suite).

Feeds synthetic Binance BBO + trades and Polymarket 20-level books through `Lake.append` while
`Lake.run` flushes (1 s) and compacts in its worker thread, pinned to ONE core. Synthetic time
runs fast (one hour per `--hour-s` seconds of wall time) so several hourly compactions happen
inside the run. Then the same stream through a naive baseline: list of dicts per flush ->
`pa.Table.from_pylist` -> a new Parquet file, no reuse.

    .venv/bin/python bench/collector_ingest.py [--quick] [--seconds 30]

The last line printed is one JSON object: msgs_per_s, baseline_msgs_per_s, bytes_per_row
(per table), peak_rss_mb, ... and msgs_per_cpu_s / baseline_msgs_per_cpu_s: messages per CPU-second
of the whole process (event loop + flush/compaction thread, `time.process_time`), with the
synthetic feed's own CPU subtracted. Wall-clock rate depends on the flush pacing and on what else
runs on the core; CPU-seconds show what the code itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polymm.lake import NS_PER_HOUR, TABLES, Lake

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TOKENS = ("80339409420962123456789012345678901234567890", "11223344556677889900112233445566778899001")
T0 = 1_768_780_800 * 1_000_000_000
CHUNK = 2000  # messages appended between yields to the event loop
BACKLOG = 150_000  # rows not yet journaled at which the feed pauses (the lake drops at 500k)


class Feed:
    """Synthetic market: a message mix of ~70 % BBO, 20 % trades, 10 % 20-level books."""

    def __init__(self, ns_per_msg: int, levels: int) -> None:
        self.ts = T0
        self.ns_per_msg = ns_per_msg
        self.seq = 0
        rnd = random.Random(7)
        # Level lists are pre-built (parsing the websocket JSON is the collector's cost, not ours).
        self.books = [
            (
                [(round(0.50 - k * 0.01, 2), round(rnd.uniform(10, 5000), 2)) for k in range(levels)],
                [(round(0.51 + k * 0.01, 2), round(rnd.uniform(10, 5000), 2)) for k in range(levels)],
            )
            for _ in range(64)
        ]
        self.mid = 100_000.0

    def chunk(self, n: int) -> list[tuple[str, str, tuple[Any, ...]]]:
        out = []
        for _ in range(n):
            self.ts += self.ns_per_msg
            self.seq += 1
            ts, i = self.ts, self.seq
            r = i % 10
            ms = ts // 1_000_000
            if r < 7:
                sym = SYMBOLS[i & 1]
                self.mid += ((i * 7919) % 11 - 5) * 0.1
                bid = self.mid
                row: tuple[Any, ...] = (
                    ts,
                    ms - 128,
                    sym,
                    bid,
                    bid + 0.1,
                    1.234,
                    0.567,
                    ms - 129,
                    i * 3,
                    ts - 35,
                    i,
                )
                out.append(("binance_bbo", sym, row))
            elif r < 9:
                sym = SYMBOLS[i & 1]
                row = (ts, ms, sym, self.mid, 0.001 * (i % 50 + 1), "buy" if i & 2 else "sell", i, ms, True,
                       ts - 3_500_000, i)  # fmt: skip
                out.append(("binance_trades", sym, row))
            else:
                tok = TOKENS[(i // 10) & 1]
                bids, asks = self.books[i % 64]
                out.append(("polymarket_l2", tok, (ts, tok, bids, asks, ms, f"{i:040x}")))
        return out


async def run_lake(data_dir: Path, seconds: float, hour_s: float, levels: int) -> dict[str, Any]:
    rate_guess = 60_000
    feed = Feed(ns_per_msg=max(1, int(NS_PER_HOUR / (hour_s * rate_guess))), levels=levels)
    lake = Lake(data_dir, flush_interval_s=1.0, grace_s=0.0, clock=lambda: feed.ts)
    stop = asyncio.Event()
    runner = asyncio.create_task(lake.run(stop))
    append = lake.append
    msgs = 0
    gen_s = gen_cpu = 0.0
    start, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        if lake.rows_pending > BACKLOG:
            # Sustained, not burst, rate: when the flush thread falls behind, the feed waits (a
            # real socket would buffer) instead of letting the lake's memory bound drop rows.
            await asyncio.sleep(0.002)
            continue
        g, gc = time.perf_counter(), time.process_time()
        batch = feed.chunk(CHUNK)
        gen_s += time.perf_counter() - g
        gen_cpu += time.process_time() - gc
        for table, part, row in batch:
            append(table, part, row)
        msgs += len(batch)
        await asyncio.sleep(0)  # the real collector yields to its sockets all the time
    stop.set()
    await runner  # final flush + compaction of everything still open
    # Wall time includes generating the synthetic messages (reported apart): conservative.
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0  # every thread: the loop, flushes and compactions
    files = list((data_dir / "lake").rglob("*.parquet"))
    per_table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for f in files:
        table = next(
            t for t, s in TABLES.items() if str(f.relative_to(data_dir / "lake")).startswith(s.prefix)
        )
        per_table[table][0] += f.stat().st_size
        per_table[table][1] += pq.read_metadata(f).num_rows
    stats = lake.snapshot()
    assert sum(r for _, r in per_table.values()) == msgs, "rows lost"
    return {
        "msgs": msgs,
        "seconds": round(wall, 2),
        "msgs_per_s": round(msgs / wall),
        "msgs_per_s_excluding_generation": round(msgs / (wall - gen_s)),
        "cpu_s": round(cpu, 2),
        "msgs_per_cpu_s": round(msgs / max(cpu - gen_cpu, 1e-9)),
        "msgs_per_cpu_s_including_generation": round(msgs / max(cpu, 1e-9)),
        "files": len(files),
        "hours_compacted": len({f.parent for f in files}),
        "bytes_per_row": {t: round(b / r, 1) for t, (b, r) in sorted(per_table.items())},
        "write_errors": stats["write_errors"],
        "dropped": stats["dropped"],
    }


def run_baseline(data_dir: Path, seconds: float, levels: int) -> dict[str, Any]:
    """The naive way: dict rows, from_pylist + write_table every second, a new file each time."""
    feed = Feed(ns_per_msg=1_000_000, levels=levels)
    names = {t: TABLES[t].columns for t in TABLES}
    buffers: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    msgs, gen_s, gen_cpu, n_files = 0, 0.0, 0.0, 0
    start = last_flush = time.perf_counter()
    cpu0 = time.process_time()

    def flush() -> None:
        nonlocal n_files
        for (table, part), rows in buffers.items():
            t = pa.Table.from_pylist(rows, schema=TABLES[table].schema)
            pq.write_table(t, data_dir / f"{table}-{part}-{n_files:06d}.parquet", compression="zstd")
            n_files += 1
        buffers.clear()

    while time.perf_counter() - start < seconds:
        g, gc = time.perf_counter(), time.process_time()
        batch = feed.chunk(CHUNK)
        gen_s += time.perf_counter() - g
        gen_cpu += time.process_time() - gc
        for table, part, row in batch:
            buffers[(table, part)].append(dict(zip(names[table], row, strict=True)))
        msgs += len(batch)
        if time.perf_counter() - last_flush >= 1.0:
            flush()
            last_flush = time.perf_counter()
    flush()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "msgs": msgs,
        "seconds": round(wall, 2),
        "msgs_per_s": round(msgs / wall),
        "msgs_per_s_excluding_generation": round(msgs / (wall - gen_s)),
        "cpu_s": round(cpu, 2),
        "msgs_per_cpu_s": round(msgs / max(cpu - gen_cpu, 1e-9)),
        "files": n_files,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each phase")
    parser.add_argument("--hour-s", type=float, default=10.0, help="wall seconds per synthetic hour")
    parser.add_argument("--levels", type=int, default=20, help="levels per side of a Polymarket book")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: first allowed)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    hour_s = 2.0 if args.quick else args.hour_s
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # one core for the loop AND the flush/compaction thread

    root = args.data_dir or Path(tempfile.mkdtemp(prefix="collector-bench-"))
    try:
        lake_dir, base_dir = root / "lake-run", root / "baseline-run"
        lake_dir.mkdir(parents=True)
        base_dir.mkdir(parents=True)
        lake = asyncio.run(run_lake(lake_dir, seconds, hour_s, args.levels))
        rss = peak_rss_mb()  # before the baseline, so it is the lake's peak
        print("lake:", json.dumps(lake))
        base = run_baseline(base_dir, seconds, args.levels)
        print("baseline:", json.dumps(base))
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "msgs_per_s": lake["msgs_per_s"],
                "baseline_msgs_per_s": base["msgs_per_s"],
                "msgs_per_cpu_s": lake["msgs_per_cpu_s"],
                "baseline_msgs_per_cpu_s": base["msgs_per_cpu_s"],
                "msgs_per_cpu_s_including_generation": lake["msgs_per_cpu_s_including_generation"],
                "bytes_per_row": lake["bytes_per_row"],
                "peak_rss_mb": round(rss, 1),
                "cpu": cpu,
                "seconds": seconds,
                "msgs": lake["msgs"],
                "hourly_files": lake["files"],
            }
        )
    )


if __name__ == "__main__":
    main()
