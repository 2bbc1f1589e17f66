"""The overlap rule end to end: the production chain (local Binance -> sender -> executor -> real
py-clob-client-v2 -> local CLOB). The CLOB holds the cancel back (a slow venue) or fails it, and
its arrival, answer and order logs show what reached it when and what rested at every moment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from polymm.sim.binance_ws import BinanceSim
from polymm.sim.clob import ClobSim
from polymm.sim.ports import free_port
from tests.conftest import eventually
from tests.executor.conftest import COND, NO, YES
from tests.executor.test_service_end_to_end import FollowBinance, our_orders, production_chain
from tests.executor.test_service_process import executor_env, start

CANCEL_HOLD_S = 0.3  # the CLOB sits on the replacement's cancel this long before handling it


def logs(clob: ClobSim, api_key: str) -> list[dict]:
    """Start the CLOB's logs (quiet moment); returns our orders resting at that point."""
    clob.request_log, clob.answer_log, clob.order_log = [], [], []
    return clob.orders_of(api_key)


def first(log: list[tuple[int, str, str]] | None, method: str, path: str, after_ns: int = 0) -> int:
    assert log is not None
    return next(t for t, m, p in log if (m, p) == (method, path) and t >= after_ns)


def max_worst_case(clob: ClobSim, api_key: str, before: list[dict]) -> tuple[float, float]:
    """Replay the CLOB's order log from the orders resting `before` it started: the largest
    (per-token, per-market gross) worst-case position our resting orders ever added up to (no
    fills in these tests, so the position is 0)."""
    resting: dict[str, tuple[str, str, float]] = {}
    worst_token = worst_market = 0.0
    assert clob.order_log is not None
    for ev in [*before, *(ev for _t, ev in list(clob.order_log))]:
        if ev["owner"] != api_key:
            continue
        left = float(ev["original_size"]) - float(ev["size_matched"])
        if ev["status"] == "LIVE" and left > 0:
            resting[ev["id"]] = (ev["asset_id"], ev["side"], left)
        else:
            resting.pop(ev["id"], None)
        gross = 0.0
        for token in (YES, NO):
            long_ = sum(s for a, side, s in resting.values() if a == token and side == "BUY")
            short = sum(s for a, side, s in resting.values() if a == token and side == "SELL")
            worst_token = max(worst_token, long_, short)
            gross += max(long_, short)
        worst_market = max(worst_market, gross)
    return worst_token, worst_market


async def tick(binance: BinanceSim, mid: float) -> None:
    await binance.push_bbo("btcusdt", mid - 0.5, mid + 0.5)


async def test_with_room_the_posts_reach_the_clob_before_the_cancel_is_confirmed(
    certs: Path, tmp_path: Path, clob: ClobSim
):
    strategy = FollowBinance()
    chain = production_chain(certs, tmp_path, clob, strategy, BINANCE_STALE_MS="60000", OVERLAP_POSTS="auto")
    async with chain as (binance, executor):
        await tick(binance, 100_000)  # bid YES 0.47, bid NO 0.47: 10 shares each
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
        before = logs(clob, executor.engine.gateway.api_key)
        clob.delay_next(1, CANCEL_HOLD_S, path="/orders", method="DELETE")
        await tick(binance, 100_050)  # requote to 0.52 / 0.42: old + new = 20 shares, limit 500
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.52], NO: [0.42]}, what="requote")
        stats = executor.engine.orders.stats
        assert (stats.overlapped, stats.cancel_first) == (1, 0)
        cancel_in = first(clob.request_log, "DELETE", "/orders")
        cancel_out = first(clob.answer_log, "DELETE", "/orders")
        post_in = first(clob.request_log, "POST", "/orders")
        assert cancel_out - cancel_in >= CANCEL_HOLD_S * 1e9 * 0.9
        assert post_in < cancel_out - CANCEL_HOLD_S * 1e9 / 2  # did not wait for the confirmation
        assert post_in > cancel_in  # ... but for the cancel to be written: the stale quotes go first
        # Both sets rested together for a while: exactly what the limits were checked against.
        assert max_worst_case(clob, executor.engine.gateway.api_key, before) == (20.0, 40.0)
        assert "overlap 1/1" in executor.status_text()


async def test_near_the_limits_the_cancel_goes_first(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    # one set fits, two do not
    limits = {"BINANCE_STALE_MS": "60000", "MAX_POSITION_PER_TOKEN": "15", "OVERLAP_POSTS": "auto"}
    async with production_chain(certs, tmp_path, clob, strategy, **limits) as (binance, executor):
        await tick(binance, 100_000)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
        before = logs(clob, executor.engine.gateway.api_key)
        clob.delay_next(1, CANCEL_HOLD_S, path="/orders", method="DELETE")
        await tick(binance, 100_050)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.52], NO: [0.42]}, what="requote")
        stats = executor.engine.orders.stats
        assert (stats.overlapped, stats.cancel_first, stats.risk_rejects) == (0, 1, 0)
        cancel_out = first(clob.answer_log, "DELETE", "/orders")
        assert first(clob.request_log, "POST", "/orders") > cancel_out  # waited for the answer
        assert max_worst_case(clob, executor.engine.gateway.api_key, before) == (10.0, 20.0)


async def test_never_mode_keeps_cancel_first_with_room(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    env = {"BINANCE_STALE_MS": "60000", "OVERLAP_POSTS": "never"}
    async with production_chain(certs, tmp_path, clob, strategy, **env) as (binance, executor):
        await tick(binance, 100_000)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
        logs(clob, executor.engine.gateway.api_key)
        await tick(binance, 100_050)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.52], NO: [0.42]}, what="requote")
        assert (executor.engine.orders.stats.overlapped, executor.engine.orders.stats.cancel_first) == (0, 1)
        assert first(clob.request_log, "POST", "/orders") > first(clob.answer_log, "DELETE", "/orders")


async def test_a_failing_cancel_never_takes_exposure_past_the_limits(
    certs: Path, tmp_path: Path, clob: ClobSim
):
    strategy = FollowBinance()
    limit = 25.0  # two sets of 10-share bids fit, three do not
    env = {"BINANCE_STALE_MS": "60000", "MAX_POSITION_PER_TOKEN": str(limit), "OVERLAP_POSTS": "auto"}
    async with production_chain(certs, tmp_path, clob, strategy, **env) as (binance, executor):
        orders = executor.engine.orders
        await tick(binance, 100_000)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
        before = logs(clob, executor.engine.gateway.api_key)
        # Three cancels of three tries each fail, the first only after the posts have gone out
        # (a venue answering 5xx at once puts the gateway in cool-down and the posts are skipped).
        clob.delay_next(1, CANCEL_HOLD_S, path="/orders", method="DELETE")
        clob.fail_next(9, status=500, path="/orders", method="DELETE")
        await tick(binance, 100_050)  # overlap: the new bids go out, the old ones' cancel fails
        await eventually(
            lambda: sorted(our_orders(clob, executor)[YES]) == [0.47, 0.52], what="old and new resting"
        )
        assert orders.stats.overlapped == 1
        await tick(binance, 100_030)  # a third set would make 30 > 25 while the old ones still rest
        await eventually(
            lambda: our_orders(clob, executor) == {YES: [0.50], NO: [0.44]}, timeout_s=20, what="recovered"
        )
        assert orders.stats.cancel_first >= 1
        assert clob.rejects["injected"] == 9  # every injected failure was hit
        worst_token, worst_market = max_worst_case(clob, executor.engine.gateway.api_key, before)
        assert worst_token == 20.0  # the overlap happened, and nothing beyond two sets ever rested
        assert worst_token <= limit and worst_market <= executor.engine.risk.limits.max_position_per_market
        assert not executor.engine.risk.halted
    assert COND  # the market these tokens belong to


@pytest.mark.parametrize("value", ["sometimes"])
async def test_a_bad_setting_stops_start_up_with_one_line(
    value: str, tmp_path: Path, clob: ClobSim, certs: Path
):
    env = executor_env(certs, tmp_path, clob, "0x" + "11" * 32, free_port(), tmp_path / "unused.sock")
    env["OVERLAP_POSTS"] = value
    proc = await start(env)
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert output.decode().strip().splitlines()[-1] == (
        f"config error: OVERLAP_POSTS={value!r} must be one of auto, never"
    )
    assert os.environ.get("OVERLAP_POSTS") is None  # the test's own environment is untouched
