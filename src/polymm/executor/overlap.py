"""May a replacement's new quotes go out while the old ones' cancel is still in flight? Pure.

Polymarket has no amend: a re-quote is cancel + new orders. Waiting for the cancel's answer
before posting keeps worst-case exposure at one set of quotes, but costs a round trip. Posting
alongside the cancel is safe exactly when the hard limits already allow both sets to rest at
once: worst case = current position + every order that may rest (the old ones whose cancel is not
confirmed, the kept ones, the new ones) as if all filled. That is the question
`RiskEngine.would_reject` answers for one more order, so the limit arithmetic stays in risk.py.

If the cancel then fails, the old orders are still resting, and that is a state the limits were
already checked against: nothing can exceed them.

One more refusal that is not a limit: a new quote that would cross an old one of ours (a bid at or
above our own old ask, also through the YES/NO complement) would trade with it, or be refused as
post-only, while both rest. That replacement waits for the cancel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from polymm.executor.risk import RiskEngine
from polymm.executor.types import LiveOrder, Quote, Side


class OverlapMode(StrEnum):
    AUTO = "auto"  # overlap where the limits allow it, cancel-first elsewhere
    NEVER = "never"  # always cancel, wait for the answer, then post (the rule before overlap)


@dataclass(frozen=True, slots=True)
class OverlapDecision:
    overlap: bool  # True: post without waiting for the cancel
    reason: str  # "room", "disabled", "self_cross", or the risk.Reject value that needs the cancel


SELF_CROSS = "self_cross"


def decide_overlap(
    mode: OverlapMode,
    risk: RiskEngine,
    place: Sequence[Quote],
    canceling: Sequence[LiveOrder],
    resting: Iterable[LiveOrder],
    positions: Mapping[str, float],
    now_ns: int,
) -> OverlapDecision:
    """Decide for one replacement: `place` the new quotes, `canceling` the old orders about to be
    cancelled, `resting` every order that may rest meanwhile (it must include `canceling`)."""
    if mode is OverlapMode.NEVER:
        return OverlapDecision(False, "disabled")
    if _crosses_own(risk, place, canceling):
        return OverlapDecision(False, SELF_CROSS)
    orders = list(resting)
    shares = dict(positions)
    for q in place:
        reject = risk.would_reject(q, orders, shares, now_ns)
        if reject is not None:
            return OverlapDecision(False, reject.value)
        orders.append(LiveOrder("?", q.token_id, "", q.side, q.price, q.size))  # later quotes see it
    return OverlapDecision(True, "room")


def _crosses_own(risk: RiskEngine, place: Sequence[Quote], old: Sequence[LiveOrder]) -> bool:
    """Would a new quote trade with one of the old orders of the same market?"""
    if not old:
        return False
    old_bids: dict[str, float] = {}  # book -> highest old bid
    old_asks: dict[str, float] = {}
    for o in old:
        book, is_bid, price = _on_one_book(risk, o.token_id, o.side, o.price)
        if is_bid:
            old_bids[book] = max(old_bids.get(book, 0.0), price)
        else:
            old_asks[book] = min(old_asks.get(book, 1.0), price)
    for q in place:
        book, is_bid, price = _on_one_book(risk, q.token_id, q.side, q.price)
        if is_bid and book in old_asks and price >= old_asks[book] - 1e-9:
            return True
        if not is_bid and book in old_bids and price <= old_bids[book] + 1e-9:
            return True
    return False


def _on_one_book(risk: RiskEngine, token: str, side: Side, price: float) -> tuple[str, bool, float]:
    """(book, is a bid, price) on one book: for a YES/NO market buying the second token at p is
    selling the first at 1 - p (the CLOB matches the two books against each other)."""
    market = risk.token_market.get(token)
    spec = risk.markets.get(market) if market is not None else None
    if spec is not None and len(spec.token_ids) == 2 and token == spec.token_ids[1]:
        return spec.token_ids[0], side is Side.SELL, 1.0 - price
    return token, side is Side.BUY, price
