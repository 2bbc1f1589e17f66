"""Journal -> Parquet: one immutable `data_NNN.parquet` per compaction of a (table, partition, hour).

Order of operations makes every crash point recoverable without loss or duplication:
write temp file + fsync -> hard-link to the final name (never overwrites) -> record the file and
the journals it consumed in the state store -> delete the journals. The Parquet footer also names
its source journals, so a file that was linked but not yet recorded is recognised at start-up
(`reconcile`). Blocking: run in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polymm.lake.journal import JOURNAL_SUFFIX, fsync_dir, read_journal
from polymm.lake.partition import Layout, PartKey, data_number, parse_dir
from polymm.lake.schemas import TableSpec
from polymm.lake.state import FileRecord, StateStore, TradeIds

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 128 * 1024
TRADES_TABLE = "binance_trades"
TRADES_PREFIX = "binance/trades/"
SOURCES_META = b"polymm.sources"
TABLE_META = b"polymm.table"


@dataclass
class CompactResult:
    key: str | None  # relative key of the new data file; None when there were no rows
    rows: int = 0
    bytes: int = 0
    journals: int = 0
    torn: list[str] = field(default_factory=list)


def parquet_options(spec: TableSpec) -> dict[str, object]:
    return {
        "compression": "zstd",
        "row_group_size": ROW_GROUP_ROWS,
        "use_dictionary": list(spec.dictionary),
        "write_statistics": True,
    }


def list_journals(layout: Layout) -> dict[PartKey, list[Path]]:
    """Every journal segment on disk, grouped by cell and sorted by name (= run, segment)."""
    found: dict[PartKey, list[Path]] = {}
    root = layout.journal
    if not root.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(root):
        names = sorted(f for f in files if f.endswith(JOURNAL_SUFFIX))
        if not names:
            continue
        key = parse_dir(os.path.relpath(dirpath, root))
        if key is None:
            log.error("journal directory %s is not a lake path; leaving it alone", dirpath)
            continue
        found[key] = [Path(dirpath, n) for n in names]
    return found


def next_number(layout: Layout, state: StateStore, key: PartKey) -> int:
    """First number above every one used locally or recorded (i.e. possibly already in S3)."""
    used = set(state.numbers_used(key.dir))
    local = layout.lake / key.dir
    if local.is_dir():
        used.update(n for n in (data_number(p) for p in os.listdir(local)) if n is not None)
    return max(used) + 1 if used else 0


def file_hashes(path: Path) -> tuple[str, str, int]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def compact(
    layout: Layout,
    state: StateStore,
    key: PartKey,
    journals: list[Path],
    clock: Callable[[], int] = time.time_ns,
) -> CompactResult:
    spec = key.spec
    result = CompactResult(key=None, journals=len(journals))
    tables: list[pa.Table] = []
    used: list[Path] = []
    for path in journals:
        rel = str(path.relative_to(layout.journal))
        if (holder := state.consumed_by(rel)) is not None:
            log.info("journal %s is already in %s; removing it", rel, holder)
            _unlink(path)
            continue
        read = read_journal(path, spec.schema)
        if read.torn:
            log.error(
                "journal %s: kept %d batches (%d rows), dropped a damaged tail of %d bytes (%s)",
                rel, read.batches, read.table.num_rows, read.total_bytes - read.good_bytes, read.error,
            )  # fmt: skip
            result.torn.append(rel)
        tables.append(read.table)
        used.append(path)
    rows = sum(t.num_rows for t in tables)
    if rows:
        result.key, result.bytes = _write(
            layout, state, key, tables, [str(p.relative_to(layout.journal)) for p in used], clock
        )
        result.rows = rows
    for path in used:
        rel = str(path.relative_to(layout.journal))
        if rel in result.torn:
            dest = layout.quarantine / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        else:
            _unlink(path)
    if used:
        fsync_dir(used[0].parent)
    return result


def _write(
    layout: Layout,
    state: StateStore,
    key: PartKey,
    tables: list[pa.Table],
    sources: list[str],
    clock: Callable[[], int],
) -> tuple[str, int]:
    spec = key.spec
    table = pa.concat_tables(tables)
    ts = table.column("recv_ts")
    if len(ts) > 1 and not pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py():
        table = table.sort_by("recv_ts")  # stable: equal stamps keep arrival order
    table = table.replace_schema_metadata(
        {SOURCES_META: json.dumps(sources).encode(), TABLE_META: spec.name.encode()}
    )
    out_dir = layout.lake / key.dir
    out_dir.mkdir(parents=True, exist_ok=True)
    number = next_number(layout, state, key)
    tmp = out_dir / f".data_{number:03d}.parquet.tmp-{os.getpid()}"
    try:
        pq.write_table(table, tmp, **parquet_options(spec))  # type: ignore[arg-type]
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        sha, md5, size = file_hashes(tmp)
        rel_key = key.data_key(number)
        os.link(tmp, layout.lake / rel_key)  # EEXIST instead of overwriting, whatever happens
    finally:
        _unlink(tmp)
    fsync_dir(out_dir)
    marks = trade_ids_of(table) if spec.name == TRADES_TABLE else None
    state.register(FileRecord(rel_key, size, sha, md5, table.num_rows, clock()), sources, marks)
    log.info(
        "compacted %d rows from %d journals into %s (%d bytes)", table.num_rows, len(sources), rel_key, size
    )
    return rel_key, size


def reconcile(layout: Layout, state: StateStore, clock: Callable[[], int] = time.time_ns) -> int:
    """Start-up repair: register data files that a crash left unrecorded, drop temp files.
    Returns how many files were registered."""
    found = 0
    root = layout.lake
    if not root.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if ".parquet.tmp-" in name:
                _unlink(path)
                continue
            if data_number(name) is None:
                continue
            rel = str(path.relative_to(root))
            if state.known(rel):
                continue
            meta = pq.read_schema(path).metadata or {}
            sources = json.loads(meta.get(SOURCES_META, b"[]"))
            sha, md5, size = file_hashes(path)
            rows = pq.read_metadata(path).num_rows
            marks = _file_trade_ids(path) if rel.startswith(TRADES_PREFIX) else None
            state.register(FileRecord(rel, size, sha, md5, rows, clock()), sources, marks)
            log.warning("registered unrecorded data file %s (%d rows)", rel, rows)
            found += 1
    return found


def trade_ids_of(table: pa.Table) -> TradeIds:
    """Highest trade id per (symbol, is_agg) in a binance_trades table."""
    if table.num_rows == 0:
        return {}
    per_key = table.group_by(["symbol", "is_agg"]).aggregate([("trade_id", "max")]).to_pydict()
    rows = zip(per_key["symbol"], per_key["is_agg"], per_key["trade_id_max"], strict=True)
    return {(str(symbol), bool(is_agg)): int(tid) for symbol, is_agg, tid in rows if tid is not None}


def _file_trade_ids(path: Path) -> TradeIds:
    return trade_ids_of(pq.read_table(path, columns=["symbol", "is_agg", "trade_id"]))


def backfill_trade_ids(layout: Layout, state: StateStore) -> int:
    """Fill the trade-id floor of a lake.db written before it kept one, from the trades files
    still on disk. Returns how many files were read."""
    files = [key for key in state.local_files(TRADES_PREFIX) if (layout.lake / key).exists()]
    marks: TradeIds = {}
    for key in files:
        for k, tid in _file_trade_ids(layout.lake / key).items():
            marks[k] = max(marks.get(k, tid), tid)
    state.complete_trade_ids(marks)
    return len(files)


def floor_from_journals(layout: Layout, state: StateStore, skip_prefix: str) -> int:
    """Trades journals an earlier run left that could not be compacted (they are retried later)
    still hold durable trades: raise the floor with them too. Returns how many were read."""
    marks: TradeIds = {}
    read = 0
    for key, paths in list_journals(layout).items():
        if key.table != TRADES_TABLE:
            continue
        for path in paths:
            if path.name.startswith(skip_prefix):
                continue
            for k, tid in trade_ids_of(read_journal(path, key.spec.schema).table).items():
                marks[k] = max(marks.get(k, tid), tid)
            read += 1
    if marks:
        state.raise_trade_ids(marks)
    return read


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def prune_empty(path: Path, stop: Path) -> None:
    """Remove now-empty journal directories up to (not including) the journal root."""
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
