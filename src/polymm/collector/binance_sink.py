"""Relay events -> lake rows. Runs on the receiver's hot path: one append per event."""

from __future__ import annotations

import time

from polymm.lake import Lake, bbo_row, binance_trade_row
from polymm.relay.events import Bbo, Notice, RelayEvent, Trade


class BinanceSink:
    __slots__ = ("_lake", "bbo", "last_event_ns", "notices", "refused", "trades")

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self.bbo = 0
        self.trades = 0
        self.notices = 0
        self.refused = 0
        self.last_event_ns = 0

    def __call__(self, event: RelayEvent) -> None:
        if type(event) is Bbo:
            self.bbo += 1
            self.last_event_ns = event.arrival_ts
            if not self._lake.append("binance_bbo", event.symbol, bbo_row(event)):
                self.refused += 1
        elif type(event) is Trade:
            self.trades += 1
            self.last_event_ns = event.arrival_ts
            if not self._lake.append("binance_trades", event.symbol, binance_trade_row(event)):
                self.refused += 1
        elif type(event) is Notice:
            self.notices += 1
            detail = dict(event.detail, notice_id=event.notice_id, sender_ts=event.ts)
            key = str(event.detail.get("symbol", event.detail.get("conn", "")))
            self._lake.event("binance", event.event, key, detail)

    def age_s(self) -> float:
        return (time.time_ns() - self.last_event_ns) / 1e9 if self.last_event_ns else float("inf")
