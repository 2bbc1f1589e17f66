"""Strategy layer: fair value of a crypto binary from Binance, quoting, market config.

Pure functions and a reference strategy behind the executor's four-callback port
(`on_binance_bbo`, `on_polymarket_book`, `on_fill`, `on_timer`), so a backtester can replay it.
"""
