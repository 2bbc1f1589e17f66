"""Polymarket market data: market-channel events, local books, the WebSocket feed, Gamma discovery.

`polymm.polymarket.gamma` needs httpx and is imported on its own, so the feed works without it.
"""

from polymm.polymarket.book import OrderBook
from polymm.polymarket.market_ws import DEFAULT_URL, FeedStats, MarketFeed
from polymm.polymarket.messages import FrameDecoder

__all__ = ["DEFAULT_URL", "FeedStats", "FrameDecoder", "MarketFeed", "OrderBook"]
