"""Builds the strategy and the executor's market specs from the markets file."""

from __future__ import annotations

from pathlib import Path

from polymm.executor.types import MarketSpec
from polymm.strategy.interface import ExecutorAdapter, StrategyContext
from polymm.strategy.markets import MarketConfig, load_markets
from polymm.strategy.reference import ReferenceStrategy


def market_spec(m: MarketConfig) -> MarketSpec:
    return MarketSpec(
        m.condition_id, (m.yes_token, m.no_token), end_ts_s=m.expiry_s, tick_size=f"{m.tick_size:g}",
        neg_risk=m.neg_risk, min_order_size=m.min_order_size,
    )  # fmt: skip


def build_strategy(path: Path) -> tuple[ExecutorAdapter, list[MarketSpec]]:
    """The reference strategy behind the adapter that speaks the executor's quote types."""
    markets = load_markets(path)
    ctx = StrategyContext()
    return ExecutorAdapter(ReferenceStrategy(markets, ctx), ctx), [market_spec(m) for m in markets]
