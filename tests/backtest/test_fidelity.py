"""Live vs backtest fidelity, end to end (the chain is in fidelity.py): the production chain trades
the local CLOB (DRY_RUN=false, takers hitting its quotes) while the collection chain records the
same feeds; the backtest of that lake, with the executor's markets file and the latency of its
journal, must post the same orders (token, side, price, size; times within 300 ms) for at least
99 % of the live executor's orders and of its own, and see the same fills within one fill and
10 shares."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.backtest.fidelity import compare, live_session


def test_backtest_reproduces_the_live_executor(tmp_path: Path, certs: Path, s3_server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_server.create_bucket("fidelity")
    session = asyncio.run(live_session(tmp_path / "run", certs, s3_server.env(), bucket, seconds=30))
    result = compare(session, tmp_path / "bt")
    assert result["live_orders"] >= 50 and result["live_fills"] >= 5, result
    assert result["match_of_live"] >= 0.99, result
    assert result["match_of_backtest"] >= 0.99, result
    assert abs(result["live_fills"] - result["backtest_fills"]) <= 1, result
    assert abs(result["live_fill_size"] - result["backtest_fill_size"]) <= 10.0, result
