"""Table definitions: one `TableSpec` per lake table, and row builders for relay events.

A row is a tuple in the spec's column order (cheapest to buffer); `recv_ts` is always the first
column because it decides the hour partition. Dicts are accepted too (see `TableSpec.row`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from polymm.relay.events import Bbo, Trade

LEVEL = pa.struct([pa.field("price", pa.float64()), pa.field("size", pa.float64())])


@dataclass(frozen=True)
class TableSpec:
    """How one table is laid out: its columns, its partition key and where it lives.

    `prefix` is the S3/lake prefix (e.g. "binance/bbo"); `partition_key` is the hive key used in
    paths ("symbol", "token") or None for tables partitioned only by date/hour. `dictionary` lists
    the low-cardinality string columns that Parquet dictionary-encodes. `low_priority` tables are
    the first dropped when the disk fills up.
    """

    name: str
    prefix: str
    partition_key: str | None
    schema: pa.Schema
    dictionary: tuple[str, ...] = ()
    low_priority: bool = False
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.schema.names))
        if self.columns[0] != "recv_ts":
            raise ValueError(f"{self.name}: recv_ts must be the first column")

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Tuple for a dict row; a missing column is stored as null."""
        return tuple(values.get(name) for name in self.columns)


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, typ) for name, typ in fields])


BINANCE_BBO = TableSpec(
    name="binance_bbo",
    prefix="binance/bbo",
    partition_key="symbol",
    schema=_schema(
        ("recv_ts", pa.int64()),  # ns, Amsterdam receive time
        ("exch_ts", pa.int64()),  # ms, Binance event time; null when the stream has none (spot)
        ("symbol", pa.string()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("bid_qty", pa.float64()),
        ("ask_qty", pa.float64()),
        ("txn_ts", pa.int64()),  # ms, Binance transaction time; null when the stream has none (spot)
        ("update_id", pa.int64()),
        ("sender_recv_ts", pa.int64()),  # ns, Frankfurt receive time
        ("relay_seq", pa.int64()),
    ),
    dictionary=("symbol",),
)

BINANCE_TRADES = TableSpec(
    name="binance_trades",
    prefix="binance/trades",
    partition_key="symbol",
    schema=_schema(
        ("recv_ts", pa.int64()),
        ("exch_ts", pa.int64()),  # ms, Binance event time (null if absent)
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("qty", pa.float64()),
        ("side", pa.string()),  # taker side: buy/sell (lowercase across the lake)
        ("trade_id", pa.int64()),
        ("trade_ts", pa.int64()),  # ms (null if absent)
        ("is_agg", pa.bool_()),
        ("sender_recv_ts", pa.int64()),
        ("relay_seq", pa.int64()),
    ),
    dictionary=("symbol", "side"),
)

POLYMARKET_L2 = TableSpec(
    name="polymarket_l2",
    prefix="polymarket/l2",
    partition_key="token",
    schema=_schema(
        ("recv_ts", pa.int64()),
        ("token_id", pa.string()),
        ("bids", pa.list_(LEVEL)),  # each level a (price, size) tuple or {"price":..,"size":..}
        ("asks", pa.list_(LEVEL)),
        ("exch_ts", pa.int64()),  # ms, Polymarket message timestamp (null if absent)
        ("hash", pa.string()),
    ),
    dictionary=("token_id",),
    low_priority=True,
)

POLYMARKET_TRADES = TableSpec(
    name="polymarket_trades",
    prefix="polymarket/trades",
    partition_key="token",
    schema=_schema(
        ("recv_ts", pa.int64()),
        ("token_id", pa.string()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("side", pa.string()),  # taker side: buy/sell (lowercase; Polymarket sends BUY/SELL)
        ("exch_ts", pa.int64()),
        ("fee_rate_bps", pa.string()),  # exactly the text the venue sent ("0", "1000"), null if none
        ("transaction_hash", pa.string()),  # the on-chain settlement; the trade's only unique id
    ),
    dictionary=("token_id", "side"),
)

COLLECTOR_EVENTS = TableSpec(
    name="collector_events",
    prefix="collector/events",
    partition_key=None,
    schema=_schema(
        ("recv_ts", pa.int64()),
        ("source", pa.string()),
        ("kind", pa.string()),  # reconnect, gap, subscribe, unsubscribe, overflow, degraded, ...
        ("key", pa.string()),  # symbol/token or ""
        ("detail", pa.string()),  # JSON
    ),
    dictionary=("source", "kind", "key"),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (BINANCE_BBO, BINANCE_TRADES, POLYMARKET_L2, POLYMARKET_TRADES, COLLECTOR_EVENTS)
}
EVENTS_TABLE = COLLECTOR_EVENTS.name


def bbo_row(ev: Bbo) -> tuple[Any, ...]:
    """BBO row from a relay event: recv_ts is the Amsterdam arrival, sender_recv_ts Frankfurt's.
    A venue time of 0 on the wire means "Binance sent none": stored as null, never as 1970."""
    return (
        ev.arrival_ts,
        ev.exch_ts or None,
        ev.symbol,
        ev.bid,
        ev.ask,
        ev.bid_qty,
        ev.ask_qty,
        ev.txn_ts or None,
        ev.update_id,
        ev.recv_ts,
        ev.seq,
    )


def binance_trade_row(ev: Trade) -> tuple[Any, ...]:
    return (
        ev.arrival_ts,
        ev.exch_ts or None,
        ev.symbol,
        ev.price,
        ev.qty,
        ev.side,
        ev.trade_id,
        ev.trade_ts or None,
        ev.is_agg,
        ev.recv_ts,
        ev.seq,
    )


def l2_row(
    recv_ts: int,
    token_id: str,
    bids: Sequence[tuple[float, float]],
    asks: Sequence[tuple[float, float]],
    exch_ts: int,
    book_hash: str,
) -> tuple[Any, ...]:
    return (recv_ts, token_id, bids, asks, exch_ts or None, book_hash)  # no venue time: null, not 0


def polymarket_trade_row(
    recv_ts: int,
    token_id: str,
    price: float,
    size: float,
    side: str,
    exch_ts: int,
    fee_rate_bps: str | None,
    transaction_hash: str | None,
) -> tuple[Any, ...]:
    """`side` is lowercased (one convention across the lake); the fee text is kept as sent."""
    return (recv_ts, token_id, price, size, side.lower(), exch_ts or None, fee_rate_bps,
            transaction_hash or None)  # fmt: skip


def event_row(recv_ts: int, source: str, kind: str, key: str = "", detail: str = "{}") -> tuple[Any, ...]:
    return (recv_ts, source, kind, key, detail)
