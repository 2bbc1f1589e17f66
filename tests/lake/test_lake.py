"""Lake write path: buffers -> journal -> Parquet, hour rollover, restarts, faults, disk levels."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from polymm.lake import TABLES, DiskLevel, DiskWatch, Lake, LakeLockedError, Usage
from polymm.lake.compact import list_journals

from .conftest import HOUR_NS, T0, Clock, bbo, book, poly_trade, trade

TOKEN = "8033940942096212345"
H0 = "date=2026-01-19/hour=00"


async def tick(lake: Lake) -> None:
    await lake.tick()
    await lake.wait_idle()  # compaction runs in the background; wait for it here


def lake_files(data_dir: Path) -> list[str]:
    root = data_dir / "lake"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def journal_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").rglob("*.arrows"))


def read(data_dir: Path, key: str) -> pa.Table:
    return pq.read_table(data_dir / "lake" / key)


async def test_rows_to_parquet_with_seed_layout(data_dir: Path) -> None:
    clock = Clock(T0 + 5 * 60 * 10**9)
    lake = Lake(data_dir, clock=clock, grace_s=10)
    n = 1000
    stamps = [T0 + i * 1_000_000 for i in range(n)]
    shuffled = stamps[:]
    random.Random(1).shuffle(shuffled)  # arrival order differs from recv_ts order across journals
    for i, ts in enumerate(shuffled[: n // 2]):
        lake.append("binance_bbo", "BTCUSDT", bbo(ts, i=i))
    await lake.flush()
    for i, ts in enumerate(shuffled[n // 2 :]):
        lake.append("binance_bbo", "BTCUSDT", bbo(ts, i=i))
    for i in range(10):
        lake.append("binance_trades", "ETHUSDT", trade(T0 + i, "ETHUSDT", i))
        lake.append("polymarket_l2", TOKEN, book(T0 + i, TOKEN, i))
        lake.append("polymarket_trades", TOKEN, poly_trade(T0 + i, TOKEN, i))
    lake.event("binance", "reconnect", "BTCUSDT", {"why": "test"})
    assert lake.rows_pending == n // 2 + 31
    await lake.flush()
    assert lake.rows_pending == 0 and lake.stats.rows_journaled == n + 31
    assert len(journal_files(data_dir)) == 5
    assert lake_files(data_dir) == []

    clock.now = T0 + HOUR_NS + 11 * 10**9  # hour 00 closed, grace over
    await tick(lake)
    assert lake_files(data_dir) == [
        f"binance/bbo/symbol=BTCUSDT/{H0}/data_000.parquet",
        f"binance/trades/symbol=ETHUSDT/{H0}/data_000.parquet",
        f"collector/events/{H0}/data_000.parquet",
        f"polymarket/l2/token={TOKEN}/{H0}/data_000.parquet",
        f"polymarket/trades/token={TOKEN}/{H0}/data_000.parquet",
    ]
    assert journal_files(data_dir) == []

    key = f"binance/bbo/symbol=BTCUSDT/{H0}/data_000.parquet"
    table = read(data_dir, key)
    assert table.schema.remove_metadata() == TABLES["binance_bbo"].schema
    assert table.column("recv_ts").to_pylist() == stamps  # sorted by recv_ts
    assert table.num_rows == n
    meta = pq.ParquetFile(data_dir / "lake" / key).metadata
    col = {meta.schema.column(i).name: meta.row_group(0).column(i) for i in range(meta.num_columns)}
    assert all(c.compression == "ZSTD" for c in col.values())
    assert "RLE_DICTIONARY" in col["symbol"].encodings
    assert col["recv_ts"].statistics.min == stamps[0] and col["recv_ts"].statistics.max == stamps[-1]
    for name, spec in TABLES.items():
        prefix = spec.prefix
        (file,) = [f for f in lake_files(data_dir) if f.startswith(prefix)]
        assert read(data_dir, file).schema.remove_metadata() == spec.schema, name
    l2 = read(data_dir, f"polymarket/l2/token={TOKEN}/{H0}/data_000.parquet")
    assert l2.column("asks")[3].as_py()[0] == {"price": 0.51, "size": 50.0}

    # Readable as a hive-partitioned dataset straight from the local lake directory.
    dataset = ds.dataset(data_dir / "lake" / "binance" / "bbo", format="parquet", partitioning="hive")
    got = dataset.to_table(filter=ds.field("hour") == 0)
    assert got.num_rows == n and set(got.column("symbol").to_pylist()) == {"BTCUSDT"}
    await lake.close()


async def test_late_rows_restart_and_close_never_overwrite(data_dir: Path) -> None:
    clock = Clock(T0 + 60 * 10**9)
    lake = Lake(data_dir, clock=clock)
    for i in range(10):
        lake.append("binance_bbo", "BTCUSDT", bbo(T0 + i, i=i))
    await lake.flush()
    clock.now = T0 + HOUR_NS + 20 * 10**9
    await tick(lake)
    # late rows for the closed hour: journaled, then their own data file at the next rollover
    for i in range(3):
        lake.append("binance_bbo", "BTCUSDT", bbo(T0 + 100 + i, i=i))
    lake.append("binance_bbo", "BTCUSDT", bbo(T0 + HOUR_NS + 5, i=99))
    await tick(lake)
    assert lake.stats.late_rows == 3
    clock.now = T0 + 2 * HOUR_NS + 20 * 10**9
    await tick(lake)
    assert lake_files(data_dir) == [
        f"binance/bbo/symbol=BTCUSDT/{H0}/data_000.parquet",
        f"binance/bbo/symbol=BTCUSDT/{H0}/data_001.parquet",
        "binance/bbo/symbol=BTCUSDT/date=2026-01-19/hour=01/data_000.parquet",
    ]
    # close() compacts the current (open) hour too; a restart continues numbering
    clock.now = T0 + 2 * HOUR_NS + 30 * 10**9
    lake.append("binance_bbo", "BTCUSDT", bbo(T0 + 2 * HOUR_NS + 1))
    await lake.close()
    h2 = "binance/bbo/symbol=BTCUSDT/date=2026-01-19/hour=02"
    assert f"{h2}/data_000.parquet" in lake_files(data_dir)
    (data_dir / "lake" / h2 / "data_000.parquet").unlink()  # as if retention removed it after upload
    lake = Lake(data_dir, clock=clock)
    lake.append("binance_bbo", "BTCUSDT", bbo(T0 + 2 * HOUR_NS + 2))
    await lake.close()
    assert f"{h2}/data_001.parquet" in lake_files(data_dir)  # number 000 is taken in the state store
    assert sum(read(data_dir, f).num_rows for f in lake_files(data_dir)) == 10 + 3 + 1 + 1


async def test_enospc_keeps_rows_and_retries(data_dir: Path) -> None:
    failing = {"on": True, "calls": 0}

    def write(fd: int, data: bytes | memoryview) -> int:
        if failing["on"]:
            failing["calls"] += 1
            # half the batch reaches the file before the disk fills: must be cut back
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    clock = Clock(T0 + 60 * 10**9)
    lake = Lake(data_dir, clock=clock, write_fn=write)
    for i in range(100):
        lake.append("binance_bbo", "BTCUSDT", bbo(T0 + i, i=i))
    assert await lake.flush() == 0
    assert lake.stats.write_errors == 1 and lake.rows_pending == 100
    for i in range(100, 150):
        lake.append("binance_bbo", "BTCUSDT", bbo(T0 + i, i=i))
    assert await lake.flush() == 0 and lake.rows_pending == 150
    failing["on"] = False
    assert await lake.flush() == 150
    assert lake.rows_pending == 0 and lake.stats.write_errors == 2
    await lake.close()
    (key,) = lake_files(data_dir)
    assert read(data_dir, key).column("relay_seq").to_pylist() == list(range(150))


async def test_memory_bound_and_bad_rows_are_counted(data_dir: Path) -> None:
    lake = Lake(data_dir, clock=Clock(T0), max_pending_rows=5)
    accepted = [lake.append("binance_bbo", "BTCUSDT", bbo(T0 + i, i=i)) for i in range(7)]
    assert accepted == [True] * 5 + [False] * 2
    assert lake.stats.dropped == {"binance_bbo:memory": 2}
    await lake.flush()
    bad = list(bbo(T0 + 10))
    bad[3] = "not-a-price"
    lake.append("binance_bbo", "BTCUSDT", tuple(bad))
    lake.append("binance_bbo", "BTCUSDT", bbo(T0 + 11, i=11))
    lake.append("binance_bbo", "BTCUSDT", {"recv_ts": T0 + 12, "symbol": "BTCUSDT", "bid": 1.0, "ask": 2.0})
    await lake.flush()
    assert lake.stats.bad_rows == 1 and lake.stats.rows_journaled == 7
    with pytest.raises(ValueError):
        lake.append("binance_bbo", "../etc", bbo(T0))
    with pytest.raises(KeyError):
        lake.append("no_such_table", "x", bbo(T0))
    await lake.close()


async def test_rows_after_close_are_refused_and_counted_not_buffered(data_dir: Path) -> None:
    lake = Lake(data_dir, clock=Clock(T0))
    lake.append("binance_bbo", "BTCUSDT", bbo(T0))
    await lake.close()
    assert not lake.append("binance_bbo", "BTCUSDT", bbo(T0 + 1))
    lake.event("binance", "relay_disconnected")
    assert lake.stats.dropped == {"binance_bbo:closed": 1, "collector_events:closed": 1}
    assert lake.rows_pending == 0 and len(lake_files(data_dir)) == 1


async def test_disk_levels_shed_l2_then_everything_but_events(data_dir: Path) -> None:
    used = {"pct": 50.0}

    def usage(_path: str) -> Usage:
        total = 100 * 2**30
        u = int(total * used["pct"] / 100)
        return Usage(total, u, total - u)

    disk = DiskWatch(data_dir, usage_fn=usage)
    clock = Clock(T0 + 60 * 10**9)
    lake = Lake(data_dir, clock=clock, disk=disk)

    async def feed() -> list[bool]:
        return [
            lake.append("binance_bbo", "BTCUSDT", bbo(clock.now)),
            lake.append("polymarket_l2", TOKEN, book(clock.now, TOKEN)),
            lake.append("collector_events", "", (clock.now, "test", "note", "", "{}")),
        ]

    for pct, level, want in [
        (85.0, DiskLevel.WARN, [True, True, True]),
        (92.0, DiskLevel.DEGRADED, [True, False, True]),
        (99.0, DiskLevel.CRITICAL, [False, False, True]),
        (40.0, DiskLevel.OK, [True, True, True]),
    ]:
        used["pct"] = pct
        assert await disk.check() == level
        await tick(lake)
        clock.now += 1000
        assert await feed() == want, level
    assert disk.warnings == 1 + 1 + 1
    assert lake.stats.dropped == {"polymarket_l2:disk": 2, "binance_bbo:disk": 1}
    await lake.close()
    events = pq.read_table(data_dir / "lake" / "collector" / "events" / H0 / "data_000.parquet")
    assert events.column("kind").to_pylist().count("degraded") == 4  # each level change is recorded


async def test_disk_usage_error_never_crashes(data_dir: Path) -> None:
    def broken(_path: str) -> Usage:
        raise OSError(errno.EIO, "I/O error")

    disk = DiskWatch(data_dir, usage_fn=broken)
    assert await disk.check() == DiskLevel.OK and disk.check_errors == 1


async def test_one_lake_per_data_dir(data_dir: Path) -> None:
    lake = Lake(data_dir)
    with pytest.raises(LakeLockedError):
        Lake(data_dir)
    await lake.close()
    await Lake(data_dir).close()


async def test_crash_between_link_and_record_does_not_duplicate(data_dir: Path, tmp_path: Path) -> None:
    """A data file on disk but not in the state store, with its journals still present."""
    clock = Clock(T0 + 60 * 10**9)
    lake = Lake(data_dir, clock=clock)
    for i in range(20):
        lake.append("binance_trades", "BTCUSDT", trade(T0 + i, i=i))
    await lake.flush()
    saved = tmp_path / "journal-copy"
    shutil.copytree(data_dir / "journal", saved)
    await lake.close()
    shutil.rmtree(data_dir / "state")
    shutil.rmtree(data_dir / "journal")
    shutil.copytree(saved, data_dir / "journal")

    lake = Lake(data_dir, clock=clock)
    await lake.recover()
    assert list_journals(lake.layout) == {}
    await lake.close()
    (key,) = lake_files(data_dir)
    assert read(data_dir, key).num_rows == 20
