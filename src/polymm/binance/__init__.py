"""Binance market-data WebSocket: stream URLs, payload parsing, and a self-healing client."""
