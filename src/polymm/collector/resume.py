"""Where earlier runs left off: the highest Binance trade ids the lake has ever stored.

After a crash the sender replays trades the collector had journaled but not yet acknowledged.
The floor comes from lake.db, raised in the same transaction that records each compacted
trades file, so it covers every earlier run -- also one that crashed again before the sender
reconnected, and files already uploaded and deleted -- not only the journals this start
recovered. Call it after `Lake.recover()`, which compacts (and so records) what was left.
"""

from __future__ import annotations

from polymm.lake.state import StateStore, TradeIds


def last_trade_ids(state: StateStore) -> TradeIds:
    """Highest stored trade id per (symbol, is_agg). Blocking (SQLite): call it in a thread."""
    return state.last_trade_ids()
