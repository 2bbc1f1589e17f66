"""Markets the executor quotes, from a TOML file (MARKETS_CONFIG, default /config/markets.toml).

    [[markets]]
    name = "btc-updown-15m-1795600800"
    condition_id = "0x5f65...f1"
    yes_token = "7132...563"          # "Up"
    no_token = "5211...426"           # "Down"
    binance_symbol = "BTCUSDT"
    kind = "up_down"                  # strike = the Binance price captured at start_time
    start_time = "2026-11-25T10:00:00Z"
    expiry = "2026-11-25T10:15:00Z"
    tick_size = 0.01
    quote_size = 10                   # shares per side
    min_edge = 0.02                   # half-spread floor, in probability
    max_position = 100                # net YES shares (NO counts negative)
    basis = 0.0                       # resolution price (Chainlink BTC/USD) minus Binance mid, USD
    basis_uncertainty = 15.0          # USD, widens the distribution near expiry

`kind = "above"` takes a fixed `strike` instead. Times are ISO-8601 UTC or unix seconds.
Short crypto up/down markets resolve on Chainlink's BTC/USD stream, not on Binance: the basis
terms are how that difference enters the fair value.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from polymm.service.config import ConfigError

ANNUAL_S = 365 * 24 * 3600
TICKS = (0.1, 0.01, 0.005, 0.0025, 0.001, 0.0001)


class MarketConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str
    condition_id: str
    yes_token: str
    no_token: str
    binance_symbol: str
    kind: Literal["up_down", "above"]
    expiry: float | str
    start_time: float | str | None = None
    strike: float | None = None
    tick_size: float = 0.01
    neg_risk: bool = False
    min_order_size: float = 5.0
    quote_size: float = 10.0
    min_edge: float = 0.02
    requote_threshold: float = 0.01
    skew: float = 0.02  # price shift at max_position, in probability
    max_position: float = 100.0
    basis: float = 0.0
    basis_uncertainty: float = 0.0
    stop_before_expiry_s: float = 30.0
    vol_prior_annual: float = 0.6

    @property
    def expiry_s(self) -> float:
        return _seconds(self.expiry)

    @property
    def start_s(self) -> float | None:
        return None if self.start_time is None else _seconds(self.start_time)

    @property
    def vol_prior_per_sqrt_s(self) -> float:
        return self.vol_prior_annual / math.sqrt(ANNUAL_S)


class _File(msgspec.Struct, forbid_unknown_fields=True):
    markets: list[MarketConfig]


def _seconds(value: float | str) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def load_markets(path: Path) -> list[MarketConfig]:
    try:
        parsed = msgspec.toml.decode(path.read_bytes(), type=_File)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"MARKETS_CONFIG={str(path)!r}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"MARKETS_CONFIG={str(path)!r}: {exc.strerror}") from None
    if not parsed.markets:
        raise ConfigError(f"MARKETS_CONFIG={str(path)!r} lists no markets")
    seen: set[str] = set()
    for m in parsed.markets:
        _check(m, path)
        for token in (m.yes_token, m.no_token):
            if token in seen:
                raise ConfigError(f"MARKETS_CONFIG market {m.name!r}: token {token} appears twice")
            seen.add(token)
    return parsed.markets


def _check(m: MarketConfig, path: Path) -> None:
    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"MARKETS_CONFIG={str(path)!r} market {m.name!r}: {field} {why}")

    for field in ("yes_token", "no_token"):
        if not getattr(m, field).isdigit():
            raise bad(field, "must be a numeric token id")
    if m.yes_token == m.no_token:
        raise bad("no_token", "must differ from yes_token")
    if not (m.condition_id.startswith("0x") and len(m.condition_id) == 66):
        raise bad("condition_id", "must be a 0x-prefixed 32-byte hex id")
    if m.tick_size not in TICKS:
        raise bad("tick_size", f"must be one of {TICKS}")
    try:
        expiry, start = m.expiry_s, m.start_s
    except ValueError:
        raise bad("expiry/start_time", "must be ISO-8601 or unix seconds") from None
    if m.kind == "above" and (m.strike is None or m.strike <= 0):
        raise bad("strike", "must be set and positive for kind = 'above'")
    if m.kind == "up_down" and m.strike is None and start is None:
        raise bad("start_time", "is needed to capture the opening price of an up_down market")
    if start is not None and start >= expiry:
        raise bad("start_time", "must be before expiry")
    for field in ("quote_size", "max_position", "min_edge", "requote_threshold", "vol_prior_annual"):
        if getattr(m, field) <= 0:
            raise bad(field, "must be positive")
    for field in ("basis_uncertainty", "stop_before_expiry_s", "skew", "min_order_size"):
        if getattr(m, field) < 0:
            raise bad(field, "must not be negative")
    if m.min_edge >= 0.5:
        raise bad("min_edge", "must be below 0.5")
