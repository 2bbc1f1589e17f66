"""Test lakes written with the data-collector's own writer (polymm.lake.Lake), so the files have
exactly the schema, sorting, partitioning and file names a real collector produces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymm.lake import Lake, event_row, l2_row, polymarket_trade_row

T0 = 1_795_600_800_000_000_000  # 2026-11-25T10:00:00Z in ns
MS = 1_000_000
S = 1_000_000_000
COND = "0x" + "5f" * 32
YES = "7" * 76
NO = "8" * 76
SYMBOL = "BTCUSDT"


@dataclass
class LakeRows:
    rows: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    _seq: int = 0

    def bbo(self, ts: int, bid: float, ask: float, symbol: str = SYMBOL) -> None:
        self._seq += 1
        self.rows.append(
            ("binance_bbo", symbol, (ts, 0, symbol, bid, ask, 1.0, 1.0, 0, self._seq, ts - 5 * MS, self._seq))
        )

    def book(
        self, ts: int, token: str, bids: Iterable[tuple[float, float]], asks: Iterable[tuple[float, float]]
    ) -> None:
        self.rows.append(("polymarket_l2", token, l2_row(ts, token, list(bids), list(asks), ts // MS, "h")))

    def trade(self, ts: int, token: str, price: float, size: float, side: str = "SELL") -> None:
        row = polymarket_trade_row(ts, token, price, size, side, ts // MS, "0", f"0x{len(self.rows):064x}")
        self.rows.append(("polymarket_trades", token, row))

    def event(self, ts: int, source: str, kind: str, key: str = "", **detail: Any) -> None:
        self.rows.append(("collector_events", "", event_row(ts, source, kind, key, json.dumps(detail))))

    def bbo_stream(self, start: int, end: int, step: int, mid: float = 97_000.0, spread: float = 1.0) -> None:
        for ts in range(start, end, step):
            self.bbo(ts, mid - spread / 2, mid + spread / 2)


def write_lake(data_dir: Path, rows: LakeRows) -> Path:
    """Write the rows through Lake (journal -> compaction to hourly Parquet); returns the lake root."""

    async def go() -> None:
        lake = Lake(data_dir, flush_interval_s=3600, clock=lambda: T0 + 10 * 3600 * S)
        for table, part, row in rows.rows:
            assert lake.append(table, part, row), (table, row)
        await lake.close()

    asyncio.run(go())
    return data_dir / "lake"


def markets_toml(path: Path, **params: Any) -> Path:
    """One 'BTC above 97,000' market expiring a day after T0, on the test tokens."""
    fields = {
        "name": "test-above",
        "condition_id": COND,
        "yes_token": YES,
        "no_token": NO,
        "binance_symbol": SYMBOL,
        "kind": "above",
        "strike": 97_000.0,
        "expiry": T0 // S + 86_400,
        "tick_size": 0.01,
        "quote_size": 10,
        "min_edge": 0.02,
        "requote_threshold": 0.01,
        "vol_prior_annual": 0.6,
        "max_position": 1000,
        "max_notional": 1000,
    }
    fields.update(params)
    lines = ["[[markets]]"]
    for k, v in fields.items():
        lines.append(f"{k} = {json.dumps(v) if isinstance(v, str) else v}")
    path.write_text("\n".join(lines) + "\n")
    return path
