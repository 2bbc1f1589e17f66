"""A strategy that says exactly what a test scripts, at the Binance update it names. Loaded by the
backtester through --strategy tests.backtest.scripted:factory, like any executor strategy."""

from __future__ import annotations

from typing import Any

from polymm.strategy.interface import Desired, DesiredQuote, Side, StrategyContext

# (ts_ns, {token: [(side, price, size), ...]}) in time order; set by the test before the run.
SCRIPT: list[tuple[int, dict[str, list[tuple[str, float, float]]]]] = []
FILLS: list[Any] = []


class Scripted:
    def __init__(self, markets: Any, ctx: StrategyContext) -> None:
        self.ctx = ctx
        self.script = list(SCRIPT)
        FILLS.clear()

    def _due(self) -> Desired:
        out: Desired = {}
        while self.script and self.script[0][0] <= self.ctx.now_ns:
            _, desired = self.script.pop(0)
            for token, quotes in desired.items():
                out[token] = [DesiredQuote(token, Side(s), p, q) for s, p, q in quotes]
        return out

    def on_binance_bbo(self, bbo: Any) -> Desired:
        return self._due()

    def on_polymarket_book(
        self, token_id: str, best_bid: Any, best_ask: Any, levels: Any, ts: int
    ) -> Desired:
        return {}

    def on_fill(self, fill: Any) -> Desired:
        FILLS.append((self.ctx.now_ns, fill))
        return {}

    def on_timer(self, now_ns: int) -> Desired:
        return {}


def factory(markets: Any, ctx: StrategyContext) -> Scripted:
    return Scripted(markets, ctx)
