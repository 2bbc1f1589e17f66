"""Polymarket market-feed callbacks -> lake rows (L2 snapshots, trades, feed events)."""

from __future__ import annotations

import time
from typing import Any

from polymm.lake import Lake, l2_row, polymarket_trade_row
from polymm.polymarket.book import OrderBook


class PolymarketSink:
    """Each valid book change becomes one L2 row with the top `depth` levels per side; the feed
    only calls on_book for books built from a snapshot on the current connection, so no row is
    ever written from a book built across a gap."""

    def __init__(self, lake: Lake, depth: int) -> None:
        self._lake = lake
        self.depth = depth
        self.books = 0
        self.trades = 0
        self.events = 0
        self.refused = 0
        self.last_message_ns = 0

    @property
    def messages(self) -> int:
        return self.books + self.trades

    def on_book(self, token_id: str, book: OrderBook, recv_ts: int, exch_ts: int, book_hash: str) -> None:
        self.books += 1
        self.last_message_ns = recv_ts
        bids, asks = book.top(self.depth)
        if not self._lake.append(
            "polymarket_l2", token_id, l2_row(recv_ts, token_id, bids, asks, exch_ts, book_hash)
        ):
            self.refused += 1

    def on_trade(
        self,
        token_id: str,
        price: float,
        size: float,
        side: str,
        exch_ts: int,
        recv_ts: int,
        fee_rate_bps: str | None,
        transaction_hash: str,
    ) -> None:
        self.trades += 1
        self.last_message_ns = recv_ts
        row = polymarket_trade_row(
            recv_ts, token_id, price, size, side, exch_ts, fee_rate_bps, transaction_hash
        )
        if not self._lake.append("polymarket_trades", token_id, row):
            self.refused += 1

    def on_event(self, kind: str, detail: dict[str, Any]) -> None:
        self.events += 1
        key = str(detail.get("token_id", detail.get("asset_id", "")))
        self._lake.event("polymarket", kind, key, {k: _jsonable(v) for k, v in detail.items()})

    def age_s(self) -> float:
        return (time.time_ns() - self.last_message_ns) / 1e9 if self.last_message_ns else float("inf")


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return value
