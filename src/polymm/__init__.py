"""polymm: Polymarket market making on Binance signals, and the data pipeline that backtests it."""

__version__ = "0.1.0"
