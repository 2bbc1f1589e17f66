"""The overlap rule: may a replacement's posts go out while its cancel is in flight? At and around
each hard limit, with the old orders counted as resting (worst case: everything fills)."""

from __future__ import annotations

import pytest

from polymm.executor.config import ExecutorServiceConfig
from polymm.executor.overlap import SELF_CROSS, OverlapDecision, OverlapMode, decide_overlap
from polymm.executor.risk import Reject, RiskEngine, RiskLimits
from polymm.executor.types import LiveOrder, MarketSpec, OrderState, Quote, Side
from polymm.service.config import ConfigError, Env

from .conftest import CONDITION, TOKEN_DOWN, TOKEN_UP

NOW = 1_700_000_000_000_000_000
SPEC = MarketSpec(CONDITION, (TOKEN_UP, TOKEN_DOWN), end_ts_s=NOW / 1e9 + 3600)


def engine(**kw: float) -> RiskEngine:
    return RiskEngine(RiskLimits(**kw), [SPEC])  # type: ignore[arg-type]


def old(token: str, side: Side, price: float, size: float, oid: str = "old") -> LiveOrder:
    return LiveOrder(oid, token, CONDITION, side, price, size, state=OrderState.CANCELING)


def decide(
    risk: RiskEngine,
    place: list[Quote],
    cancel: list[LiveOrder],
    keep: tuple[LiveOrder, ...] | list[LiveOrder] = (),
    pos: dict[str, float] | None = None,
    mode: OverlapMode = OverlapMode.AUTO,
) -> OverlapDecision:
    return decide_overlap(mode, risk, place, cancel, [*cancel, *keep], pos or {}, NOW)


def test_room_under_every_limit_overlaps() -> None:
    d = decide(engine(), [Quote(TOKEN_UP, Side.BUY, 0.52, 10)], [old(TOKEN_UP, Side.BUY, 0.47, 10)])
    assert (d.overlap, d.reason) == (True, "room")


def test_never_mode_is_cancel_first() -> None:
    d = decide(engine(), [Quote(TOKEN_UP, Side.BUY, 0.52, 10)], [old(TOKEN_UP, Side.BUY, 0.47, 10)],
               mode=OverlapMode.NEVER)  # fmt: skip
    assert (d.overlap, d.reason) == (False, "disabled")


@pytest.mark.parametrize(("new_size", "overlap"), [(29.99, True), (30.0, True), (30.01, False)])
def test_position_per_token_at_the_limit(new_size: float, overlap: bool) -> None:
    # position 50 + old bid 20 + new bid -> worst case long 70 + new; the limit is 100
    r = engine(max_position_per_token=100)
    d = decide(r, [Quote(TOKEN_UP, Side.BUY, 0.5, new_size)], [old(TOKEN_UP, Side.BUY, 0.4, 20)],
               pos={TOKEN_UP: 50})  # fmt: skip
    assert d.overlap is overlap
    assert d.reason == ("room" if overlap else Reject.POSITION_TOKEN.value)
    assert r.rejects == {}  # a what-if: nothing counted as a refused order


def test_the_old_order_is_what_tips_it() -> None:
    # The same new quote alone is well inside the limit: only old + new together is not.
    r = engine(max_position_per_token=15)
    q = Quote(TOKEN_UP, Side.BUY, 0.5, 10)
    assert r.would_reject(q, [], {}, NOW) is None
    d = decide(r, [q], [old(TOKEN_UP, Side.BUY, 0.47, 10)])
    assert (d.overlap, d.reason) == (False, "position_token")


def test_sells_are_checked_short_side_too() -> None:
    r = engine(max_position_per_token=25)
    assert decide(r, [Quote(TOKEN_UP, Side.SELL, 0.6, 15)], [old(TOKEN_UP, Side.SELL, 0.62, 10)]).overlap
    d = decide(r, [Quote(TOKEN_UP, Side.SELL, 0.6, 15.01)], [old(TOKEN_UP, Side.SELL, 0.62, 10)])
    assert d.reason == "position_token"


def test_every_new_quote_sees_the_earlier_ones() -> None:
    # Two new bids of 10 next to an old bid of 10: 30 in the worst case.
    r = engine(max_position_per_token=29)
    cancel = [old(TOKEN_UP, Side.BUY, 0.47, 10)]
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.5, 10)], cancel).overlap
    two = [Quote(TOKEN_UP, Side.BUY, 0.5, 10), Quote(TOKEN_UP, Side.BUY, 0.49, 10)]
    assert decide(r, two, cancel).reason == "position_token"


def test_kept_orders_count_too() -> None:
    r = engine(max_position_per_token=25)
    keep = [LiveOrder("k", TOKEN_UP, CONDITION, Side.BUY, 0.3, 10, state=OrderState.LIVE)]
    cancel = [old(TOKEN_UP, Side.BUY, 0.47, 5)]
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.5, 10)], cancel, keep).overlap  # 25
    assert not decide(r, [Quote(TOKEN_UP, Side.BUY, 0.5, 10.01)], cancel, keep).overlap


def test_position_per_market_is_gross() -> None:
    r = engine(max_position_per_token=100, max_position_per_market=40)
    cancel = [old(TOKEN_UP, Side.BUY, 0.47, 10, "a"), old(TOKEN_DOWN, Side.BUY, 0.47, 10, "b")]
    place = [Quote(TOKEN_UP, Side.BUY, 0.52, 10), Quote(TOKEN_DOWN, Side.BUY, 0.42, 10)]
    assert decide(r, place, cancel).overlap  # 20 + 20 = 40
    place[1] = Quote(TOKEN_DOWN, Side.BUY, 0.42, 10.01)
    assert decide(r, place, cancel).reason == "position_market"


def test_open_orders_and_notional_at_the_limit() -> None:
    cancel = [old(TOKEN_UP, Side.BUY, 0.5, 10)]  # notional 5
    q = Quote(TOKEN_UP, Side.BUY, 0.5, 10)  # notional 5
    assert decide(engine(max_open_orders=2), [q], cancel).overlap
    assert decide(engine(max_open_orders=1), [q], cancel).reason == "open_orders"
    assert decide(engine(max_notional=10), [q], cancel).overlap
    assert decide(engine(max_notional=9.99), [q], cancel).reason == "notional"


def test_a_new_bid_crossing_our_own_old_ask_waits() -> None:
    r = engine()
    cancel = [old(TOKEN_UP, Side.SELL, 0.53, 10)]
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.52, 10)], cancel).overlap
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.53, 10)], cancel).reason == SELF_CROSS


def test_crossing_through_the_complement_waits() -> None:
    # An old NO bid at 0.47 is a YES offer at 0.53: a new YES bid at 0.53 would trade with it.
    r = engine()
    cancel = [old(TOKEN_DOWN, Side.BUY, 0.47, 10)]
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.52, 10)], cancel).overlap
    assert decide(r, [Quote(TOKEN_UP, Side.BUY, 0.53, 10)], cancel).reason == SELF_CROSS
    # ... and a new NO bid at 0.48 meets an old YES bid at 0.52 (YES offer at 0.52)
    cancel = [old(TOKEN_UP, Side.BUY, 0.52, 10)]
    assert decide(r, [Quote(TOKEN_DOWN, Side.BUY, 0.47, 10)], cancel).overlap
    assert decide(r, [Quote(TOKEN_DOWN, Side.BUY, 0.48, 10)], cancel).reason == SELF_CROSS


def test_unknown_market_is_cancel_first() -> None:
    d = decide(engine(), [Quote("999", Side.BUY, 0.5, 10)], [old(TOKEN_UP, Side.BUY, 0.47, 10)])
    assert (d.overlap, d.reason) == (False, "unknown_market")


def _env(**extra: str) -> Env:
    return Env({"DRY_RUN": "true", "MARKETS_CONFIG": __file__, **extra})


def test_setting_defaults_to_never_and_is_validated() -> None:
    assert ExecutorServiceConfig.from_env(_env(), need_receiver=False).overlap_posts is OverlapMode.NEVER
    cfg = ExecutorServiceConfig.from_env(_env(OVERLAP_POSTS="Auto"), need_receiver=False)
    assert cfg.overlap_posts is OverlapMode.AUTO
    with pytest.raises(ConfigError, match="OVERLAP_POSTS='sometimes' must be one of auto, never"):
        ExecutorServiceConfig.from_env(_env(OVERLAP_POSTS="sometimes"), need_receiver=False)
