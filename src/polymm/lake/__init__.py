"""Storage layer of the data-collector: crash-safe journal, hourly Parquet, verified S3 upload.

Data flow::

    lake.append(table, partition, row)        hot path, ~0.2 us: list append into a buffer
      -> every flush_interval_s (1 s)         Arrow IPC stream journal + fdatasync, in a thread
         <data_dir>/journal/<hive dir>/<run>-<seg>.arrows
      -> hour end + grace_s (10 s), start-up, close()
         zstd Parquet sorted by recv_ts, 128k-row groups, never overwriting
         <data_dir>/lake/<prefix>/<key>=<value>/date=YYYY-MM-DD/hour=HH/data_NNN.parquet
      -> S3Uploader (every interval_s and after each compaction)
         s3://<bucket>/<uploader prefix><same key>, SHA-256 verified; local copy deleted after
         retention_s. <data_dir>/state/lake.db records every file and consumed journal, and
         the highest Binance trade id ever stored per symbol (the relay's de-dup floor).

Collector wiring::

    from polymm.lake import DiskWatch, Lake, S3Uploader, bbo_row, binance_trade_row, l2_row

    disk = DiskWatch(data_dir)
    uploader = S3Uploader(data_dir, bucket="marketdata-backtest", region="eu-central-1")
    lake = Lake(data_dir, flush_interval_s=1.0, disk=disk, on_compacted=uploader.kick)
    # hot path (event loop, no await):
    lake.append("binance_bbo", ev.symbol, bbo_row(ev))
    lake.append("binance_trades", ev.symbol, binance_trade_row(ev))
    lake.append("polymarket_l2", token_id, l2_row(recv_ts, token_id, bids, asks, exch_ts, book_hash))
    lake.append("polymarket_trades", token_id, polymarket_trade_row(recv_ts, token_id, price, size, side,
                                                                    exch_ts, fee_text, tx_hash))
    lake.event("polymarket", "reconnect", token_id, {"reason": "..."})
    # tasks (each returns when `stop` is set; lake.run ends with lake.close()):
    await asyncio.gather(lake.run(stop), uploader.run(stop), disk.run(stop))
    await uploader.final_upload(timeout_s)  # bounded whatever S3 does; the rest waits on disk

`s3check.check_bucket` (before the loop runs) refuses a bucket or credentials S3 rejects.

Rows are tuples in `TABLES[name].columns` order (recv_ts in ns first) or dicts. `append`
returns False when a row is refused (disk degraded: L2 first, at critical everything but
events; or more than `max_pending_rows` not yet journaled); refusals are counted per
"table:reason" in `lake.stats.dropped`. `lake.snapshot()` / `uploader.snapshot()` /
`disk.snapshot()` give the counters (rows_pending, last_flush_ns, files_pending, bytes_pending,
last_upload_ns, consecutive_failures, ...).

Crash safety: `kill -9` loses at most the rows appended since the last completed flush. On the
next start the old journals (torn tails included: the intact prefix is kept) become the next
free `data_NNN` of their hour; nothing is overwritten locally or in S3.
"""

from polymm.lake.compact import CompactResult
from polymm.lake.disk import DiskLevel, DiskWatch, Usage
from polymm.lake.lake import Lake, LakeLockedError, LakeStats
from polymm.lake.partition import NS_PER_HOUR, Layout, PartKey, hour_of
from polymm.lake.schemas import (
    BINANCE_BBO,
    BINANCE_TRADES,
    COLLECTOR_EVENTS,
    POLYMARKET_L2,
    POLYMARKET_TRADES,
    TABLES,
    TableSpec,
    bbo_row,
    binance_trade_row,
    event_row,
    l2_row,
    polymarket_trade_row,
)
from polymm.lake.uploader import S3Uploader, UploaderStats

__all__ = [
    "BINANCE_BBO",
    "BINANCE_TRADES",
    "COLLECTOR_EVENTS",
    "NS_PER_HOUR",
    "POLYMARKET_L2",
    "POLYMARKET_TRADES",
    "TABLES",
    "CompactResult",
    "DiskLevel",
    "DiskWatch",
    "Lake",
    "LakeLockedError",
    "LakeStats",
    "Layout",
    "PartKey",
    "S3Uploader",
    "TableSpec",
    "UploaderStats",
    "Usage",
    "bbo_row",
    "binance_trade_row",
    "event_row",
    "hour_of",
    "l2_row",
    "polymarket_trade_row",
]
