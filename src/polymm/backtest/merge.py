"""Merge the lake's tables into the one sequence the executor saw live: Amsterdam `recv_ts` order.

The collector partitions every table by the UTC hour of `recv_ts`, so the events of hour H are
exactly the rows in the hour-H partitions: merging hour by hour is exact and memory stays at one
hour of the requested partitions (an L2-heavy hour of 10 tokens is tens of MB). Within an hour the
tables are concatenated and put in order with one stable numpy argsort; rows with the same
`recv_ts` keep a fixed table order (collector events, Binance BBO, Polymarket L2, Polymarket
trades, Binance trades), so a replay is deterministic.

A chunk is columnar: per table plain Python lists (cheap to index in the dispatch loop) and the
merged order as (kind, row) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from polymm.backtest.reader import LakeReader, hours_between

EVENTS, BBO, L2, PTRADE, BTRADE = 0, 1, 2, 3, 4
TABLE_OF = {
    EVENTS: "collector_events",
    BBO: "binance_bbo",
    L2: "polymarket_l2",
    PTRADE: "polymarket_trades",
    BTRADE: "binance_trades",
}


@dataclass(slots=True)
class Columns:
    """One table of one hour, all its partitions together; `part` is the symbol/token per row."""

    n: int
    part: list[str]
    cols: dict[str, list[object]]


@dataclass(slots=True)
class L2Rows:
    """Polymarket L2 rows with the levels flattened: row i's bids are bid_px[bo[i]:bo[i+1]]. The
    levels stay numpy arrays (most rows are only looked at by the consumer's slice of them)."""

    n: int
    token: list[str]
    recv_ts: list[int]
    bid_px: np.ndarray
    bid_sz: np.ndarray
    bo: list[int]
    ask_px: np.ndarray
    ask_sz: np.ndarray
    ao: list[int]


@dataclass(slots=True)
class Chunk:
    hour: int
    ts: list[int]  # merged recv_ts
    kind: list[int]
    row: list[int]
    bbo: Columns | None
    btrades: Columns | None
    l2: L2Rows | None
    ptrades: Columns | None
    events: Columns | None

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class Selection:
    symbols: tuple[str, ...]
    tokens: tuple[str, ...]
    binance_trades: bool = False


def _columns(tables: Sequence[tuple[str, pa.Table]]) -> tuple[pa.Table, list[str]] | None:
    tables = [(p, t) for p, t in tables if t is not None and t.num_rows]
    if not tables:
        return None
    part: list[str] = []
    for p, t in tables:
        part.extend([p] * t.num_rows)
    return pa.concat_tables([t for _, t in tables]), part


def _pylist(col: pa.ChunkedArray) -> list[object]:
    """The column as Python values; numeric columns without nulls through numpy (several times
    faster than to_pylist, the same ints / floats / bools)."""
    typ = col.type
    if col.null_count == 0 and (
        pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)
    ):
        return col.to_numpy().tolist()  # type: ignore[no-any-return]
    return col.to_pylist()


def _plain(table: pa.Table, part: list[str]) -> Columns:
    return Columns(table.num_rows, part, {name: _pylist(table.column(name)) for name in table.column_names})


def _l2(table: pa.Table, part: list[str]) -> L2Rows:
    def side(name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
        col = table.column(name).combine_chunks()
        flat = col.flatten()
        offsets = np.asarray(col.offsets) - col.offsets[0].as_py()
        price, size = flat.field("price"), flat.field("size")
        if price.null_count or size.null_count:  # never from the collector; cheap to guard
            price, size = price.fill_null(0.0), size.fill_null(0.0)
        price, size = price.to_numpy(zero_copy_only=False), size.to_numpy(zero_copy_only=False)
        return price, size, offsets.tolist()

    bpx, bsz, bo = side("bids")
    apx, asz, ao = side("asks")
    return L2Rows(table.num_rows, part, _pylist(table.column("recv_ts")), bpx, bsz, bo, apx, asz, ao)


def read_hour(reader: LakeReader, hour: int, sel: Selection) -> Chunk:
    """Every requested partition of one hour, merged in recv_ts order."""
    bbo = _columns([(s, reader.read("binance_bbo", s, hour)) for s in sel.symbols])
    btr = (
        _columns([(s, reader.read("binance_trades", s, hour)) for s in sel.symbols])
        if sel.binance_trades
        else None
    )
    l2 = _columns([(t, reader.read("polymarket_l2", t, hour)) for t in sel.tokens])
    ptr = _columns([(t, reader.read("polymarket_trades", t, hour)) for t in sel.tokens])
    ev = _columns([("", reader.read("collector_events", "", hour))])
    order: list[tuple[int, pa.Table]] = []
    for kind, got in ((EVENTS, ev), (BBO, bbo), (L2, l2), (PTRADE, ptr), (BTRADE, btr)):
        if got is not None:
            order.append((kind, got[0]))
    if order:
        ts = np.concatenate([t.column("recv_ts").to_numpy() for _, t in order])
        kinds = np.concatenate([np.full(t.num_rows, k, np.int8) for k, t in order])
        rows = np.concatenate([np.arange(t.num_rows, dtype=np.int64) for _, t in order])
        perm = np.argsort(ts, kind="stable")
        ts_l, kind_l, row_l = ts[perm].tolist(), kinds[perm].tolist(), rows[perm].tolist()
    else:
        ts_l, kind_l, row_l = [], [], []
    return Chunk(
        hour,
        ts_l,
        kind_l,
        row_l,
        _plain(*bbo) if bbo else None,
        _plain(*btr) if btr else None,
        _l2(*l2) if l2 else None,
        _plain(*ptr) if ptr else None,
        _plain(*ev) if ev else None,
    )


def chunks(reader: LakeReader, sel: Selection) -> Iterator[Chunk]:
    """The range hour by hour; one hour in memory at a time."""
    for hour in hours_between(reader.start_ns, reader.end_ns):
        yield read_hour(reader, hour, sel)
