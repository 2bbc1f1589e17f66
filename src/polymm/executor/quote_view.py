"""One line per requote, as a trader checks it at a glance (the trading-executor's `quote` lines).

    quote 12:00:01.234Z BTCUSDT mid 97012.35 | fair 0.5312 | YES bid 0.51 x10 / ask 0.55 x10 |
          tick->quote 0.43ms (sender 0.03 + relay 0.35 + decide 0.05)

Prices are on YES terms whatever was sent: a NO bid at q is shown as the YES ask 1 - q it is.
Tick-to-quote runs from binance-sender's receipt of the Binance tick that caused the requote to
the quotes handed to the order engine (signing and the CLOB round trip follow; see
bench/executor_reaction.py); the hops are the sender's own time, the relay, and the strategy.
The relay hop compares two hosts' clocks, so it is as good as their NTP sync.
A requote caused by something else (a Polymarket book, a fill, the timer) names its trigger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from polymm.executor.types import Quote, Side
from polymm.relay.events import Bbo
from polymm.service.logs import utc_ms


@dataclass(frozen=True, slots=True)
class YesQuotes:
    bid: float | None = None
    bid_size: float = 0.0
    ask: float | None = None
    ask_size: float = 0.0


def yes_terms(quotes: Mapping[str, Sequence[Quote]], yes_token: str, no_token: str) -> YesQuotes:
    """Best YES bid and ask among the quotes for one market's two tokens."""
    bids: list[tuple[float, float]] = []
    asks: list[tuple[float, float]] = []
    for q in quotes.get(yes_token, ()):
        (bids if q.side is Side.BUY else asks).append((q.price, q.size))
    for q in quotes.get(no_token, ()):  # buying NO at q sells YES at 1 - q, and vice versa
        (asks if q.side is Side.BUY else bids).append((round(1.0 - q.price, 6), q.size))
    bid = max(bids) if bids else None
    ask = min(asks) if asks else None
    return YesQuotes(
        bid=bid[0] if bid else None, bid_size=bid[1] if bid else 0.0,
        ask=ask[0] if ask else None, ask_size=ask[1] if ask else 0.0,
    )  # fmt: skip


def format_quote_line(
    decided_ns: int,
    yes: YesQuotes,
    fair: float | None,
    bbo: Bbo | None,
    trigger: Bbo | str,
) -> str:
    """`bbo` is the last Binance quote seen (for the mid); `trigger` the tick that caused this
    requote, or the name of what did ("book", "fill", "timer")."""
    mid = f"{bbo.symbol} mid {0.5 * (bbo.bid + bbo.ask):.2f}" if bbo is not None else "binance mid -"
    fair_text = f"fair {fair:.4f}" if fair is not None else "fair -"
    bid = f"{yes.bid:.2f} x{yes.bid_size:g}" if yes.bid is not None else "-"
    ask = f"{yes.ask:.2f} x{yes.ask_size:g}" if yes.ask is not None else "-"
    if isinstance(trigger, Bbo):
        sender_ms = (trigger.send_ts - trigger.recv_ts) / 1e6
        relay_ms = (trigger.arrival_ts - trigger.send_ts) / 1e6
        decide_ms = (decided_ns - trigger.arrival_ts) / 1e6
        total_ms = (decided_ns - trigger.recv_ts) / 1e6
        hops = f"sender {sender_ms:.2f} + relay {relay_ms:.2f} + decide {decide_ms:.2f}"
        latency = f"tick->quote {total_ms:.2f}ms ({hops})"
    else:
        latency = f"on {trigger}"
    return f"quote {utc_ms(decided_ns)} {mid} | {fair_text} | YES bid {bid} / ask {ask} | {latency}"
