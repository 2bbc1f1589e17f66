"""Fixtures for the Polymarket tests: the market-channel and Gamma sims, a running feed, a recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from polymm.polymarket.book import OrderBook
from polymm.polymarket.market_ws import MarketFeed
from polymm.sim.gamma import GammaSim
from polymm.sim.polymarket_ws import PolymarketSim
from tests.conftest import running

YES = "1111111111111111111111111111111111111111111111111111111111111111111111111111"
NO = "2222222222222222222222222222222222222222222222222222222222222222222222222222"


class Recorder:
    """Collects every callback of a MarketFeed, copying what a book looked like at that moment."""

    def __init__(self) -> None:
        self.books: list[dict[str, Any]] = []
        self.trades: list[tuple[Any, ...]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_book(self, token: str, book: OrderBook, recv_ts: int, exch_ts: int, hash: str) -> None:
        self.books.append({"token": token, "valid": book.valid, "bid": book.best_bid(),
                           "ask": book.best_ask(), "recv_ts": recv_ts, "exch_ts": exch_ts,
                           "hash": hash})  # fmt: skip

    def on_trade(self, *args: Any) -> None:
        self.trades.append(args)

    def on_event(self, kind: str, detail: dict[str, Any]) -> None:
        self.events.append((kind, detail))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]

    def books_for(self, token: str) -> list[dict[str, Any]]:
        return [b for b in self.books if b["token"] == token]


@pytest.fixture
async def sim() -> AsyncIterator[PolymarketSim]:
    """A quiet market-channel sim (no random activity): tests push exactly what they need."""
    async with PolymarketSim(rate_hz=0) as server:
        server.token(YES).set_levels([(0.48, 30), (0.49, 20), (0.50, 15)], [(0.52, 25), (0.53, 60)])
        server.token(NO).set_levels([(0.47, 10)], [(0.51, 10)])
        yield server


@pytest.fixture
async def gamma_sim() -> AsyncIterator[GammaSim]:
    async with GammaSim() as server:
        yield server


@asynccontextmanager
async def running_feed(
    url: str, tokens: list[str], recorder: Recorder | None = None, **kwargs: Any
) -> AsyncIterator[MarketFeed]:
    """A MarketFeed running in a task, with short keep-alive timings unless overridden."""
    rec = recorder or Recorder()
    kwargs.setdefault("ping_interval_s", 0.5)
    kwargs.setdefault("silence_timeout_s", 5.0)
    kwargs.setdefault("backoff_initial_s", 0.05)
    kwargs.setdefault("backoff_cap_s", 0.2)
    feed = MarketFeed(
        tokens, url=url, on_book=rec.on_book, on_trade=rec.on_trade, on_event=rec.on_event, **kwargs
    )
    async with running(feed.run, 5.0):
        yield feed
