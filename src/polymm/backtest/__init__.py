"""polymm-backtest: the lake replayed through the trading-executor's own strategy and rules.

Modules, one job each:
  reader     partitions of the lake (local or S3), column projection, schema checks
  merge      the tables of one hour in Amsterdam receive order
  latency    order-path round trips (constant, from an executor journal, from a file)
  venue      our orders in the recorded book: post-only rejects, queue position, fills
  engine     the replay loop around the executor's rules (diff, tick snapping, risk, kill switches)
  gaps       holes the collector recorded, and what the backtest does at each
  metrics    PnL, drawdown, uptime, markouts, rate use
  report     summary.json, fills.parquet, orders.parquet, terminal table; html: report.html
  sweep      parameter grids in parallel processes
  cli        the `polymm-backtest` command
"""
