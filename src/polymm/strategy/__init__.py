"""Strategy layer of trading-executor: pure, replayable pricing and quoting.

- markets: the markets file (TOML) -> validated MarketConfig
- fair_value: P(price ends above strike), digital under a driftless lognormal
- volatility: EWMA volatility of the Binance mid on a fixed time grid
- quoting: fair value -> tick-exact, skewed, post-only, limit-aware YES quotes; requote rule
- interface: the four-callback Strategy protocol, its value types and the executor adapter
- reference: ReferenceStrategy, the first implementation
"""
