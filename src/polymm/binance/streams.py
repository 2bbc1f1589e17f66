"""Which WebSocket connections to open for a set of symbols.

Spot: one combined stream carries bookTicker and trade. USD-M futures (since 2026-04-23): BBO
lives on the `/public` route and aggTrade on `/market`, and the two must not share a connection.
"""

from __future__ import annotations

import re

import msgspec

SPOT_URL = "wss://stream.binance.com:9443"
FUTURES_URL = "wss://fstream.binance.com"
MAX_STREAMS_PER_CONNECTION = 1024
_SYMBOL = re.compile(r"^[a-z0-9]{2,20}$")


class ConnectionPlan(msgspec.Struct, frozen=True):
    name: str  # short label for logs, e.g. "spot-1" or "futures-public-1"
    url: str
    streams: tuple[str, ...]


def default_url(market: str) -> str:
    return SPOT_URL if market == "spot" else FUTURES_URL


def valid_symbol(symbol: str) -> bool:
    return bool(_SYMBOL.match(symbol))


def plan_connections(
    market: str,
    base_url: str,
    symbols: list[str],
    include_trades: bool,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
) -> list[ConnectionPlan]:
    base = base_url.rstrip("/")
    bbo = [f"{s}@bookTicker" for s in symbols]
    if market == "spot":
        streams = bbo + ([f"{s}@trade" for s in symbols] if include_trades else [])
        return _chunked("spot", base, streams, max_streams)
    plans = _chunked("futures-public", f"{base}/public", bbo, max_streams)
    if include_trades:
        plans += _chunked("futures-market", f"{base}/market", [f"{s}@aggTrade" for s in symbols], max_streams)
    return plans


def _chunked(label: str, base: str, streams: list[str], size: int) -> list[ConnectionPlan]:
    plans = []
    for n, start in enumerate(range(0, len(streams), size), 1):
        chunk = tuple(streams[start : start + size])
        plans.append(ConnectionPlan(f"{label}-{n}", f"{base}/stream?streams={'/'.join(chunk)}", chunk))
    return plans
