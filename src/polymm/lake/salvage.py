"""polymm-lake-salvage DIR: ship what a dead data-collector's disk still holds to S3, exactly once.

DIR is a copy of the old host's DATA_DIR (journals, Parquet files and lake.db together). The old
directory is treated as a lake of its own: its state store says what it had already uploaded, so
nothing is sent twice; journals a crash left behind are compacted (`Lake.recover`); then the
ordinary uploader runs, whose HEAD + `If-None-Match: *` never overwrites an object the new host
(or the old one) already put under the same key: a clash gets the next free `data_NNN`.
Trades are the one table the relay replays: what the old host journaled but had not acknowledged
reached the new host again. Before uploading, trades whose (symbol, trade_id, is_agg) S3 already
holds for that hour are dropped from the salvaged files, so no trade is stored twice.

S3 settings are data-collector's own (S3_BUCKET, S3_REGION, S3_ENDPOINT_URL, S3_PREFIX, credentials
from boto3's chain), so it runs with the service's environment file. One summary line; exit 0 when
every file is in S3, 1 when some stay on disk (run it again), 2 for a bad setting or directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from polymm.collector.config import S3Target
from polymm.collector.service import check_s3
from polymm.lake.compact import TRADES_PREFIX, file_hashes, parquet_options
from polymm.lake.lake import Lake
from polymm.lake.partition import Layout
from polymm.lake.schemas import BINANCE_TRADES
from polymm.lake.state import FileRecord, StateStore
from polymm.lake.uploader import S3Uploader, normalise_prefix
from polymm.service.config import ConfigError
from polymm.service.logs import setup_logging
from polymm.service.startup import StartupError

log = logging.getLogger("polymm.salvage")
# Uploaded files stay in the salvage copy: the operator (or salvage-lake.yml) removes it once complete.
KEEP_LOCAL_S = 10 * 365 * 86400.0
TRADE_KEY = ("symbol", "trade_id", "is_agg")
TradeKey = tuple[str, int, bool]


@dataclass
class SalvageReport:
    directory: str
    rows_compacted: int  # rows recovered from journals a crash left uncompacted
    trades_dropped: int  # already in S3: replayed by the relay to the new host
    files_compacted: int
    uploaded: int
    already_in_s3: int  # identical bytes were there (the old host's PUT landed, its record did not)
    renamed: int  # a different object held the key: ours moved to the next free name
    left_on_disk: int

    @property
    def complete(self) -> bool:
        return self.left_on_disk == 0


def check_directory(path: Path) -> None:
    layout = Layout(path)
    if not path.is_dir():
        raise ConfigError(f"salvage directory {str(path)!r} does not exist")
    if not (layout.state / "lake.db").exists() and not layout.journal.is_dir() and not layout.lake.is_dir():
        raise ConfigError(f"{str(path)!r} holds no lake (no state/lake.db, journal/, lake/): not a DATA_DIR")


async def salvage(path: Path, target: S3Target, *, upload_timeout_s: float) -> SalvageReport:
    """Compact the old journals, then upload everything the old state store has not confirmed."""
    lake = Lake(path)  # takes the directory's lock: a live collector's DATA_DIR is refused
    results = await lake.recover()
    await lake.close()
    dropped = await asyncio.to_thread(drop_stored_trades, path, target)
    uploader = S3Uploader(
        path, target.bucket, target.region, endpoint_url=target.endpoint_url, prefix=target.prefix,
        retention_s=KEEP_LOCAL_S, upload_on_compact=False,
    )  # fmt: skip
    await uploader.final_upload(upload_timeout_s)
    stats = uploader.stats
    return SalvageReport(
        directory=str(path),
        rows_compacted=sum(r.rows for r in results),
        trades_dropped=dropped,
        files_compacted=sum(1 for r in results if r.key),
        uploaded=stats.uploads_ok,
        already_in_s3=stats.already_present,
        renamed=stats.conflicts,
        left_on_disk=stats.files_pending,
    )


def _s3_trade_keys(client: Any, target: S3Target, rel_dir: str) -> set[TradeKey]:
    keys: set[TradeKey] = set()
    prefix = normalise_prefix(target.prefix) + rel_dir + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=target.bucket, Key=obj["Key"])["Body"].read()
            keys.update(_trade_keys(pq.ParquetFile(pa.BufferReader(body)).read(columns=list(TRADE_KEY))))
    return keys


def _trade_keys(table: pa.Table) -> list[TradeKey]:
    return list(zip(*(table.column(c).to_pylist() for c in TRADE_KEY), strict=True))


def drop_stored_trades(path: Path, target: S3Target) -> int:
    """Rewrite each pending trades file without the trades S3 already holds; returns how many were
    dropped. Blocking (S3 reads, Parquet writes): run in a worker thread."""
    layout = Layout(path)
    state = StateStore(layout.state / "lake.db")
    client = boto3.session.Session().client("s3", region_name=target.region, endpoint_url=target.endpoint_url)
    dropped = 0
    stored_by_dir: dict[str, set[TradeKey]] = {}  # one S3 read per hour, however many files it has
    try:
        for rec in state.pending():
            if not rec.key.startswith(TRADES_PREFIX):
                continue
            if rec.dir not in stored_by_dir:
                stored_by_dir[rec.dir] = _s3_trade_keys(client, target, rec.dir)
            stored = stored_by_dir[rec.dir]
            local = layout.lake / rec.key
            table = pq.ParquetFile(local).read()  # the file alone: no hive columns from its path
            keep = [key not in stored for key in _trade_keys(table)]
            if all(keep):
                continue
            kept = table.filter(pa.array(keep))
            dropped += table.num_rows - kept.num_rows
            log.warning("%s: %d trades already in S3 (replayed to the new host) left out",
                        rec.key, table.num_rows - kept.num_rows)  # fmt: skip
            if kept.num_rows == 0:
                local.unlink()
                state.mark_deleted(rec.key, time.time_ns())
                continue
            tmp = local.with_name(local.name + ".salvage-tmp")
            pq.write_table(kept, tmp, **parquet_options(BINANCE_TRADES))  # keeps the footer's metadata
            sha, md5, size = file_hashes(tmp)
            os.replace(tmp, local)
            state.replace_content(FileRecord(rec.key, size, sha, md5, kept.num_rows, rec.created_ns))
    finally:
        state.close()
    return dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a copy of the old host's DATA_DIR")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the uploads (default 600)")
    args = parser.parse_args(argv)
    setup_logging("lake-salvage")
    try:
        check_directory(args.directory)
        target = S3Target.from_env()
        check_s3(target)
        report = asyncio.run(salvage(args.directory, target, upload_timeout_s=args.timeout))
    except StartupError as exc:  # ConfigError, StorageError (LakeLockedError: a live DATA_DIR)
        print(f"polymm-lake-salvage: {exc}", file=sys.stderr)
        return 2
    print("salvage " + json.dumps({**asdict(report), "complete": report.complete}), flush=True)
    if not report.complete:
        log.error("%d files are still only in %s: run the salvage again", report.left_on_disk, args.directory)
    return 0 if report.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
