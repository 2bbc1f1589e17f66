"""data-collector: Binance (via the relay) and Polymarket market data into a Parquet lake on S3."""
