"""Read the data-collector's lake back: local folder or s3://bucket/prefix, only what is needed.

Partitions are addressed directly from the hive layout the collector writes
(`<prefix>/<key>=<value>/date=YYYY-MM-DD/hour=HH/data_NNN.parquet`, see polymm.lake.partition),
so a backtest of one symbol and two tokens for one hour lists exactly those directories and
never the rest of the lake (hive pruning by construction). Each file is opened as a pyarrow
dataset fragment with column projection and a `recv_ts` range filter that row-group statistics
answer (files are sorted by recv_ts), and its schema is checked first: a file that is corrupt or
was written by an older lake version without a column the backtest needs is refused with its path.

S3 follows data-collector's conventions: `S3_ENDPOINT_URL` (S3-compatible endpoint), `S3_REGION`
(default eu-central-1), credentials from the standard AWS chain (env, profile, instance role).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from polymm.backtest.errors import BacktestInputError
from polymm.lake.partition import NS_PER_HOUR, PartKey, data_number
from polymm.lake.schemas import TABLES

# Columns the backtest reads per table, and which of them an older lake may lack (filled in).
NEEDED: dict[str, tuple[str, ...]] = {
    "binance_bbo": (
        "recv_ts",
        "exch_ts",
        "bid",
        "ask",
        "bid_qty",
        "ask_qty",
        "txn_ts",
        "update_id",
        "sender_recv_ts",
        "relay_seq",
    ),
    "binance_trades": (
        "recv_ts",
        "exch_ts",
        "price",
        "qty",
        "side",
        "trade_id",
        "trade_ts",
        "is_agg",
        "sender_recv_ts",
    ),
    "polymarket_l2": ("recv_ts", "bids", "asks", "exch_ts"),
    "polymarket_trades": ("recv_ts", "price", "size", "side", "exch_ts", "fee_rate_bps"),
    "collector_events": ("recv_ts", "source", "kind", "key", "detail"),
}
OPTIONAL: dict[str, frozenset[str]] = {
    "binance_bbo": frozenset({"exch_ts", "txn_ts", "update_id", "sender_recv_ts", "relay_seq"}),
    "binance_trades": frozenset({"exch_ts", "trade_ts", "is_agg", "sender_recv_ts"}),
    "polymarket_l2": frozenset({"exch_ts"}),
    "polymarket_trades": frozenset({"exch_ts", "fee_rate_bps"}),
    "collector_events": frozenset({"key", "detail"}),
}


@dataclass
class ReadStats:
    files: int = 0
    rows: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # partition dirs that do not exist
    filled: list[str] = field(default_factory=list)  # "file: column" an older lake lacked


class LakeReader:
    """One lake root. `read(table, key, hour)` -> the rows of that partition-hour in the range."""

    def __init__(self, root: str, start_ns: int, end_ns: int) -> None:
        self.root = root
        self.start_ns, self.end_ns = start_ns, end_ns
        self.fs, self.base = open_root(root)
        self.stats = ReadStats()

    def location(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}"

    def files(self, key: PartKey) -> list[str]:
        """data_NNN.parquet files of one partition-hour in write order ([] if none)."""
        path = f"{self.base}/{key.dir}" if self.base else key.dir
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError as exc:
            raise BacktestInputError(f"cannot list {self.location(key.dir)}: {exc}") from None
        found = [(data_number(i.base_name), i.path) for i in infos if i.type == pafs.FileType.File]
        return [p for n, p in sorted((n, p) for n, p in found if n is not None)]

    def read(self, table: str, partition: str, hour: int) -> pa.Table | None:
        """Rows of one partition-hour within [start, end), sorted by recv_ts; None if absent."""
        key = PartKey(table, partition, hour)
        paths = self.files(key)
        if not paths:
            self.stats.missing.append(key.dir)
            return None
        whole = self.start_ns <= hour * NS_PER_HOUR and (hour + 1) * NS_PER_HOUR <= self.end_ns
        parts = [self._read_file(table, p, whole) for p in paths]
        out = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:  # a restart mid-hour gives data_001 etc.; merge back into recv order
            out = out.take(pc.sort_indices(out, [("recv_ts", "ascending")]))
        self.stats.rows += out.num_rows
        return out

    def _read_file(self, table: str, path: str, whole_hour: bool = False) -> pa.Table:
        name = self._display(path)
        needed, optional = NEEDED[table], OPTIONAL[table]
        try:
            dataset = ds.dataset(path, filesystem=self.fs, format="parquet")
            fragment = next(iter(dataset.get_fragments()))
            schema = fragment.physical_schema
        except (OSError, pa.ArrowException, StopIteration) as exc:
            raise BacktestInputError(f"{name}: not a readable Parquet file ({_short(exc)})") from None
        present = [c for c in needed if c in schema.names]
        lacking = [c for c in needed if c not in schema.names]
        hard = [c for c in lacking if c not in optional]
        if hard:
            raise BacktestInputError(
                f"{name}: written by an older lake version: no column {', '.join(hard)} "
                f"(this backtester needs {', '.join(needed)})"
            )
        expected = TABLES[table].schema
        for column in present:
            want = expected.field(column).type
            got = schema.field(column).type
            if not _compatible(got, want):
                raise BacktestInputError(f"{name}: column {column} is {got}, expected {want} (older lake?)")
        # An hour inside the range needs no row filter (the collector partitions by recv_ts hour).
        rng = (
            None
            if whole_hour
            else (ds.field("recv_ts") >= self.start_ns) & (ds.field("recv_ts") < self.end_ns)
        )
        try:
            data = fragment.to_table(columns=present, filter=rng, schema=schema)
        except (OSError, pa.ArrowException) as exc:
            raise BacktestInputError(f"{name}: corrupt Parquet data ({_short(exc)})") from None
        for column in lacking:
            self.stats.filled.append(f"{name}: {column}")
            typ = expected.field(column).type
            data = data.append_column(column, pa.nulls(data.num_rows, typ))
        self.stats.files += 1
        want = pa.schema([expected.field(c) for c in needed])
        data = data.select(list(needed))
        return data if data.schema.equals(want) else data.cast(want)

    def _display(self, path: str) -> str:
        if self.root.startswith("s3://"):
            return f"s3://{path}"
        return path


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got == want:
        return True
    if pa.types.is_dictionary(got):  # dictionary-encoded strings read back as dictionaries
        return _compatible(got.value_type, want)
    return pa.types.is_large_string(got) and pa.types.is_string(want)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def open_root(root: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path) for a local folder or s3://bucket/prefix."""
    if root.startswith("s3://"):
        endpoint = os.environ.get("S3_ENDPOINT_URL") or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise BacktestInputError(f"S3_ENDPOINT_URL={endpoint!r} must start with http:// or https://")
        region = os.environ.get("S3_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
        kwargs: dict[str, object] = {"region": region}
        if endpoint is not None:
            scheme, host = endpoint.split("://", 1)
            kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
        try:
            fs = pafs.S3FileSystem(**kwargs)  # type: ignore[arg-type]
        except (OSError, pa.ArrowException) as exc:
            raise BacktestInputError(f"cannot open {root}: {_short(exc)}") from None
        return fs, root[len("s3://") :].rstrip("/")
    local = os.path.abspath(root)
    if not os.path.isdir(local):
        raise BacktestInputError(f"lake root {root!r} is not a directory (or use s3://bucket/prefix)")
    return pafs.LocalFileSystem(), local


def hours_between(start_ns: int, end_ns: int) -> Sequence[int]:
    from polymm.lake.partition import NS_PER_HOUR

    return range(start_ns // NS_PER_HOUR, (end_ns - 1) // NS_PER_HOUR + 1)
