"""Holes in the recorded data, from `collector/events` and from partitions that are missing.

The collector writes an event for every hole it knows of: a Binance reconnect (Binance never
replays what was missed), a trade-id gap, trades the sender had to drop, a relay sender
disconnecting, a Polymarket disconnect or a book that had to be rebuilt (resync, tick change).
The backtest does not trade across one silently: every gap touching the traded symbols or tokens
cancels all quotes at once (the executor's kill path) and is listed in the report; quoting resumes
only through the executor's own kill-switch rules once fresh data arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

GAP_KINDS = {
    ("binance", "binance_reconnect"),
    ("binance", "trade_id_gap"),
    ("binance", "trades_dropped"),
    ("binance", "relay_disconnected"),
    ("polymarket", "disconnected"),
    ("polymarket", "book_invalidated"),
}


@dataclass(frozen=True, slots=True)
class Gap:
    ts_ns: int
    source: str
    kind: str
    key: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "ts_ns": self.ts_ns,
            "source": self.source,
            "kind": self.kind,
            "key": self.key,
            "detail": self.detail[:300],
        }


def detail_of(raw: object) -> dict[str, object]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def touches(source: str, key: str, detail: dict[str, object], symbols: set[str], tokens: set[str]) -> bool:
    """Does this event concern what we trade? Events without a key concern everything."""
    ours = symbols if source == "binance" else tokens
    keys = {key} if key else set()
    for field in ("symbol", "asset_id", "token_id"):
        value = detail.get(field)
        if isinstance(value, str):
            keys.add(value.upper() if source == "binance" else value)
    assets = detail.get("assets_ids")
    if isinstance(assets, list):
        keys.update(str(a) for a in assets)
    if source == "binance":
        keys = {k.upper() for k in keys}
    return not keys or bool(keys & ours)
