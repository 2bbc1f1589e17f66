"""The Binance simulator's paced blast (what bench/relay_latency.py's paced run sends) is even.

Run as the benchmark runs it, in its own uvloop process: at 2000 msg/s uvloop's 1 ms timers used
to make it spin through sub-ms sleeps and then send two messages back to back. Now each slot is
waited for in a thread: messages arrive about 1/rate apart and the simulator sleeps between them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from polymm.sim.ports import free_port

RATE, COUNT = 2000.0, 1000


def cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_paced_blast_is_evenly_spaced_and_does_not_spin() -> None:
    port = free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polymm.sim.binance_ws", "--port", str(port), "--rate", "0",
        "--blast", str(COUNT), "--blast-rate", str(RATE), "--wait-subscribers", "1", "--settle", "0.5",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@bookTicker"
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = await connect(url, compression=None)
                break
            except OSError:
                assert time.monotonic() < deadline, "simulator did not start"
                await asyncio.sleep(0.05)
        arrivals: list[int] = []
        async with ws:
            async with asyncio.timeout(30):
                async for _ in ws:
                    arrivals.append(time.perf_counter_ns())
                    if len(arrivals) == 1:
                        cpu0 = cpu_s(sim.pid)
                    if len(arrivals) == COUNT:
                        break
            cpu = cpu_s(sim.pid) - cpu0
        wall = (arrivals[-1] - arrivals[0]) / 1e9
    finally:
        if sim.returncode is None:
            sim.terminate()
        await asyncio.wait_for(sim.wait(), 10)
    gaps = [(b - a) / 1e3 for a, b in itertools.pairwise(arrivals)]
    slot_us = 1e6 / RATE
    back_to_back = sum(1 for g in gaps if g < slot_us / 4) / len(gaps)
    # Paired sending puts half the gaps near zero; even pacing leaves only late wake-ups there.
    assert back_to_back < 0.2, f"{back_to_back:.0%} of gaps under {slot_us / 4:.0f} us"
    assert 0.6 * slot_us < statistics.median(gaps) < 1.6 * slot_us, statistics.median(gaps)
    # Spinning costs the simulator a whole core for the run; sending 2000 small frames does not.
    assert cpu < 0.6 * wall, f"simulator used {cpu:.2f} CPU-s in {wall:.2f} s"
