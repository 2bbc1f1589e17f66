"""Markets the strategy quotes, from a TOML file whose path the caller gives (MARKETS_CONFIG).

    [[markets]]
    name = "btc-updown-15m-1795600800"
    condition_id = "0x5f65...f1"          # 0x + 64 hex
    yes_token = "7132...563"              # "Up" outcome token id (decimal string)
    no_token = "5211...426"               # "Down"
    binance_symbol = "BTCUSDT"
    kind = "up_down"                      # strike = price at start_time (captured from Binance)
    start_time = "2026-11-25T10:00:00Z"   # ISO-8601 with Z/offset, TOML datetime, or unix seconds
    expiry = "2026-11-25T10:15:00Z"
    tick_size = 0.01                      # 0.1, 0.01, 0.005, 0.0025, 0.001, 0.0001
    neg_risk = false
    min_order_size = 5                    # shares (the market's orderMinSize)
    quote_size = 10                       # shares per side, 2 decimals
    quote_mode = "both"                   # "both": YES bid + NO bid; "yes_only": YES bid + YES sell
    min_edge = 0.02                       # half-spread floor, probability points
    requote_threshold = 0.01              # re-post only when a price moves this much
    skew = 0.02                           # quote shift at max_market_position, probability points
    max_position = 100                    # shares held per token
    max_market_position = 100             # |YES - NO| shares (default: max_position)
    max_notional = 100                    # pUSD spent in this market (inventory cost + resting bids)
    basis = 0.0                           # resolution price (Chainlink BTC/USD) - Binance mid
    basis_unit = "usd"                    # or "bps" of the Binance mid
    basis_uncertainty = 5.0               # same unit; widens the distribution and the spread
    stop_before_expiry_s = 30
    vol_prior_annual = 0.6                # volatility used until the estimator has warmed up

`kind = "above"` needs a fixed `strike` (resolution units, e.g. Chainlink USD). An `up_down` market
may set `strike` too (e.g. the Chainlink open read after a restart); otherwise the strategy captures
it from Binance at start_time. BTC up/down markets resolve on Chainlink's BTC/USD stream, not on
Binance: `basis` and `basis_uncertainty` are how that difference enters the prices.

Every problem raises ConfigError naming the file, the market and the field.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from polymm.service.config import ConfigError

TICKS = (0.1, 0.01, 0.005, 0.0025, 0.001, 0.0001)
ANNUAL_S = 365 * 24 * 3600
# Unix seconds between 2001 and 2286: catches a timestamp pasted in milliseconds.
_MIN_TS, _MAX_TS = 1e9, 1e10

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Probability = Annotated[float, Meta(gt=0, lt=0.5)]


class MarketConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    condition_id: Annotated[str, Meta(pattern="^0x[0-9a-fA-F]{64}$")]
    yes_token: Annotated[str, Meta(pattern="^[0-9]{1,80}$")]
    no_token: Annotated[str, Meta(pattern="^[0-9]{1,80}$")]
    binance_symbol: Annotated[str, Meta(pattern="^[A-Z0-9]{4,20}$")]
    kind: Literal["up_down", "above"]
    expiry: float | str
    start_time: float | str | None = None
    strike: Positive | None = None
    tick_size: float = 0.01
    neg_risk: bool = False
    min_order_size: Positive = 5.0
    quote_size: Positive = 10.0
    quote_mode: Literal["both", "yes_only"] = "both"
    min_edge: Probability = 0.02
    requote_threshold: Probability = 0.01
    skew: Annotated[float, Meta(ge=0, lt=0.5)] = 0.02
    max_position: Positive = 100.0
    max_market_position: Positive | None = None
    max_notional: Positive = 100.0
    basis: float = 0.0
    basis_unit: Literal["usd", "bps"] = "usd"
    basis_uncertainty: NonNegative = 0.0
    stop_before_expiry_s: NonNegative = 30.0
    vol_prior_annual: Annotated[float, Meta(gt=0, le=10)] = 0.6

    @property
    def expiry_s(self) -> float:
        return _seconds(self.expiry)

    @property
    def start_s(self) -> float | None:
        return None if self.start_time is None else _seconds(self.start_time)

    @property
    def net_limit(self) -> float:
        return self.max_position if self.max_market_position is None else self.max_market_position

    @property
    def vol_prior_per_sqrt_s(self) -> float:
        return self.vol_prior_annual / math.sqrt(ANNUAL_S)

    def basis_usd(self, mid: float) -> float:
        return self.basis if self.basis_unit == "usd" else mid * self.basis * 1e-4

    def basis_uncertainty_usd(self, mid: float) -> float:
        return self.basis_uncertainty if self.basis_unit == "usd" else mid * self.basis_uncertainty * 1e-4


class _File(msgspec.Struct, forbid_unknown_fields=True):
    markets: list[dict[str, object]]


def _seconds(value: float | str) -> float:
    if isinstance(value, int | float):
        return float(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no timezone")
    return parsed.timestamp()


def load_markets(path: Path) -> list[MarketConfig]:
    """Parse and validate the markets file; times come back normalised to unix seconds."""
    where = f"MARKETS_CONFIG={str(path)!r}"
    try:
        parsed = msgspec.toml.decode(path.read_bytes(), type=_File)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if not parsed.markets:
        raise ConfigError(f"{where} lists no markets")
    markets = [parse_market(raw, i, where) for i, raw in enumerate(parsed.markets)]
    names: set[str] = set()
    tokens: set[str] = set()
    for m in markets:
        if m.name in names:
            raise ConfigError(f"{where} market {m.name!r}: name: appears twice")
        names.add(m.name)
        for field in ("yes_token", "no_token"):
            token = getattr(m, field)
            if token in tokens:
                raise ConfigError(f"{where} market {m.name!r}: {field}: token {token} appears twice")
            tokens.add(token)
    return markets


_AT_FIELD = re.compile(r"at `\$\.(\w+)`")
_NAMED_FIELD = re.compile(r"field `(\w+)`")


def parse_market(raw: dict[str, object], index: int = 0, where: str = "MARKETS_CONFIG") -> MarketConfig:
    label = repr(raw["name"]) if isinstance(raw.get("name"), str) else f"#{index}"
    raw = dict(raw)
    for key in ("expiry", "start_time"):  # TOML's own datetime type -> unix seconds
        value = raw.get(key)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ConfigError(f"{where} market {label}: {key}: datetime needs Z or an offset")
            raw[key] = value.timestamp()
    try:
        m = msgspec.convert(raw, MarketConfig)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _AT_FIELD.search(text) or _NAMED_FIELD.search(text)
        field = found.group(1) if found else "?"
        raise ConfigError(f"{where} market {label}: {field}: {text}") from None
    return _check(m, f"{where} market {m.name!r}")


def _check(m: MarketConfig, where: str) -> MarketConfig:
    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: {field}: {why}")

    for field in ("basis", "basis_uncertainty", "quote_size", "min_order_size", "max_notional"):
        if not math.isfinite(getattr(m, field)):
            raise bad(field, "must be a finite number")
    if m.yes_token == m.no_token:
        raise bad("no_token", "must differ from yes_token")
    if m.tick_size not in TICKS:
        raise bad("tick_size", f"{m.tick_size} is not one of {TICKS}")
    times: dict[str, float] = {}
    for field in ("expiry", "start_time"):
        value = getattr(m, field)
        if value is None:
            continue
        try:
            seconds = _seconds(value)
        except ValueError:
            raise bad(field, f"{value!r} is not ISO-8601 with Z/offset or unix seconds") from None
        if not _MIN_TS <= seconds <= _MAX_TS:
            raise bad(field, f"{value!r} is not unix seconds (milliseconds?)")
        times[field] = seconds
    expiry, start = times["expiry"], times.get("start_time")
    if m.kind == "above" and m.strike is None:
        raise bad("strike", "is required for kind = 'above'")
    if m.kind == "up_down" and start is None:
        raise bad("start_time", "is required for kind = 'up_down' (the strike is the price then)")
    if start is not None and start >= expiry:
        raise bad("start_time", "must be before expiry")
    if start is not None and m.stop_before_expiry_s >= expiry - start:
        raise bad("stop_before_expiry_s", "leaves no time to quote between start_time and expiry")
    if round(m.quote_size, 2) != m.quote_size:
        raise bad("quote_size", "has more than 2 decimals")
    if m.quote_size < m.min_order_size:
        raise bad("quote_size", f"is below min_order_size {m.min_order_size}")
    if m.max_position < m.min_order_size:
        raise bad("max_position", f"is below min_order_size {m.min_order_size}")
    if m.max_market_position is not None and m.max_market_position < m.min_order_size:
        raise bad("max_market_position", f"is below min_order_size {m.min_order_size}")
    if m.max_notional < m.min_order_size * m.tick_size:
        raise bad("max_notional", "cannot pay for even the smallest order")
    if m.basis_unit == "bps" and (abs(m.basis) > 1000 or m.basis_uncertainty > 1000):
        raise bad("basis", "over 1000 bps: is basis_unit right?")
    return msgspec.structs.replace(m, expiry=expiry, start_time=start)
