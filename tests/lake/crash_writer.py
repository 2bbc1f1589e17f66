"""Subprocess for the kill -9 test: appends BBO rows with consecutive relay_seq and prints, after
every completed flush, how many rows are durable. Some rows are always left unflushed."""

from __future__ import annotations

import asyncio
import sys

from polymm.lake import Lake

T0 = 1_768_780_800 * 1_000_000_000


def row(i: int) -> tuple[object, ...]:
    ts = T0 + 60 * 10**9 + i * 1000
    return (ts, ts // 10**6, "BTCUSDT", 1.0 + i, 2.0 + i, 1.0, 1.0, ts // 10**6, i, ts, i)


async def main(data_dir: str, start: int) -> None:
    lake = Lake(data_dir, clock=lambda: T0 + 30 * 60 * 10**9)  # mid-hour: nothing gets compacted
    await lake.recover()
    i = start
    while True:
        for _ in range(2000):
            lake.append("binance_bbo", "BTCUSDT", row(i))
            i += 1
        durable = i
        await lake.flush()
        print(durable, flush=True)
        for _ in range(300):  # appended, never flushed before the next report
            lake.append("binance_bbo", "BTCUSDT", row(i))
            i += 1
        await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
