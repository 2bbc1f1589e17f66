"""kill -9 in the middle of a stream: every flushed row survives, nothing is overwritten."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from polymm.lake import Lake

from .conftest import Clock
from .crash_writer import T0, row

WRITER = Path(__file__).with_name("crash_writer.py")
BBO_DIR = "binance/bbo/symbol=BTCUSDT/date=2026-01-19/hour=00"


def _run_and_kill(data_dir: Path, start: int, reports: int) -> int:
    """Start the writer, SIGKILL it after `reports` completed flushes; returns the last reported
    durable row count (the writer may have flushed more before the signal landed)."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), str(start)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    durable = start
    try:
        for _ in range(reports):
            line = proc.stdout.readline()
            assert line, "writer died"
            durable = int(line)
        time.sleep(random.uniform(0, 0.02))  # land anywhere: mid-append, mid-write, mid-fsync
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return durable


async def test_sigkill_mid_stream_recovers_every_flushed_row(data_dir: Path) -> None:
    clock = Clock(T0 + 30 * 60 * 10**9)
    lake = Lake(data_dir, clock=clock)  # a clean earlier run of the same hour: data_000
    for i in range(100):
        lake.append("binance_bbo", "BTCUSDT", row(i))
    await lake.close()
    first = data_dir / "lake" / BBO_DIR / "data_000.parquet"
    first_sha = hashlib.sha256(first.read_bytes()).hexdigest()

    total = 100
    for attempt, reports in enumerate((5, 17)):
        durable = _run_and_kill(data_dir, total, reports)
        lake = Lake(data_dir, clock=clock)
        results = await lake.recover()
        await lake.close()
        assert len(results) == 1 and results[0].key == f"{BBO_DIR}/data_{attempt + 1:03d}.parquet"
        got = pq.read_table(data_dir / "lake" / results[0].key).column("relay_seq").to_pylist()
        assert got[0] == total and got == list(range(total, total + len(got)))  # a prefix, no gap/dup
        assert total + len(got) >= durable  # everything reported durable is there
        total += len(got)

    assert hashlib.sha256(first.read_bytes()).hexdigest() == first_sha  # never overwritten
    files = sorted(p.name for p in (data_dir / "lake" / BBO_DIR).iterdir())
    assert files == ["data_000.parquet", "data_001.parquet", "data_002.parquet"]  # no temp files left
    assert not list((data_dir / "journal").rglob("*.arrows"))
    seqs = [
        s
        for f in files
        for s in pq.read_table(data_dir / "lake" / BBO_DIR / f).column("relay_seq").to_pylist()
    ]
    assert seqs == list(range(total))
