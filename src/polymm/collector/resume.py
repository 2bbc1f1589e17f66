"""Where an earlier run left off: the last Binance trade ids it made durable.

After a crash the sender replays trades the collector had journaled but not yet acknowledged
(at most one ack interval's worth). Seeding the receiver's de-duplication with the highest ids
in the data files recovered from the earlier run's journals keeps them from being written twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from polymm.lake.compact import CompactResult

TRADES_PREFIX = "binance/trades/"


def last_trade_ids(lake_root: Path, recovered: Iterable[CompactResult]) -> dict[tuple[str, bool], int]:
    """Highest trade id per (symbol, is_agg) in the recovered binance/trades data files."""
    last: dict[tuple[str, bool], int] = {}
    for result in recovered:
        if result.key is None or not result.key.startswith(TRADES_PREFIX):
            continue
        table = pq.read_table(lake_root / result.key, columns=["symbol", "is_agg", "trade_id"])
        per_key = table.group_by(["symbol", "is_agg"]).aggregate([("trade_id", "max")]).to_pydict()
        for symbol, is_agg, tid in zip(
            per_key["symbol"], per_key["is_agg"], per_key["trade_id_max"], strict=True
        ):
            key = (str(symbol), bool(is_agg))
            last[key] = max(last.get(key, tid), tid)
    return last
