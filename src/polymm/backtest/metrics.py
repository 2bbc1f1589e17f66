"""Numbers of a finished backtest: PnL three ways, drawdown, uptime, markouts, rate use."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from polymm.backtest.engine import Backtest, FillRecord
from polymm.backtest.timerange import fmt_ns
from polymm.strategy.markets import MarketConfig

MARKOUTS_S = (1, 5, 30)


def mid_at(bt: Backtest, token: str, ts: int) -> float | None:
    times, values = bt.mids.get(token, ([], []))
    i = bisect.bisect_right(times, ts) - 1
    return values[i] if i >= 0 else None


def final_mid(bt: Backtest, token: str) -> float | None:
    values = bt.mids.get(token, ([], []))[1]
    return values[-1] if values else None


def settlement(bt: Backtest, m: MarketConfig) -> tuple[dict[str, float], str]:
    """Price per token at resolution and where it came from."""
    res = bt.resolutions.get(m.condition_id)
    if res is not None:
        winner, ts = res
        prices = {t: (1.0 if t == winner else 0.0) for t in (m.yes_token, m.no_token)}
        return prices, f"market_resolved event at {fmt_ns(ts)}"
    prices = {}
    for t in (m.yes_token, m.no_token):
        mid = final_mid(bt, t)
        prices[t] = mid if mid is not None else 0.0
    return prices, "final Polymarket mid (no market_resolved event in the range)"


def realised(fills: Sequence[FillRecord], yes: str, no: str) -> float:
    """Average-cost PnL of what was closed: sells against the average buy, and YES+NO pairs
    (a complete set is worth exactly 1 pUSD) against what the pair cost."""
    pos = {yes: [0.0, 0.0], no: [0.0, 0.0]}  # shares, cost of those shares
    pnl = 0.0
    for f in fills:
        p = pos.setdefault(f.token_id, [0.0, 0.0])
        pnl -= f.fee
        if f.side == "BUY":
            p[0] += f.size
            p[1] += f.price * f.size
        else:
            avg = p[1] / p[0] if p[0] > 0 else f.price
            closed = min(f.size, max(p[0], 0.0))
            pnl += (f.price - avg) * closed
            p[0] -= f.size
            p[1] -= avg * closed + f.price * (f.size - closed)
        y, n = pos[yes], pos[no]
        pairs = min(y[0], n[0])
        if pairs > 1e-9:
            ay, an = y[1] / y[0], n[1] / n[0]
            pnl += pairs * (1.0 - ay - an)
            y[0] -= pairs
            y[1] -= ay * pairs
            n[0] -= pairs
            n[1] -= an * pairs
    return pnl


def max_drawdown(equity: Sequence[float]) -> float:
    peak, worst = float("-inf"), 0.0
    for e in equity:
        peak = max(peak, e)
        worst = max(worst, peak - e)
    return worst


def max_in_window(times: Sequence[int], window_ns: int) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window_ns:
            j += 1
        best = max(best, i - j + 1)
    return best


def markout(bt: Backtest, f: FillRecord, horizon_s: float) -> float | None:
    """pUSD gained by the fill at the mid `horizon_s` later (negative: adverse selection)."""
    mid = mid_at(bt, f.token_id, f.ts_ns + int(horizon_s * 1e9))
    if mid is None:
        return None
    edge = mid - f.price if f.side == "BUY" else f.price - mid
    return edge * f.size


def summarize(bt: Backtest, markets: Sequence[MarketConfig]) -> dict[str, Any]:
    per_market: dict[str, Any] = {}
    eq = [s["equity"] for s in bt.samples]
    for m in markets:
        tokens = (m.yes_token, m.no_token)
        fills = [f for f in bt.fills if f.token_id in tokens]
        cash = sum(f.price * f.size * (1 if f.side == "SELL" else -1) - f.fee for f in fills)
        shares = {
            t: sum(f.size if f.side == "BUY" else -f.size for f in fills if f.token_id == t) for t in tokens
        }
        prices, source = settlement(bt, m)
        marked = cash + sum(shares[t] * (final_mid(bt, t) or 0.0) for t in tokens)
        settled = cash + sum(shares[t] * prices[t] for t in tokens)
        orders = [r for r in bt.records.values() if r.token_id in tokens]
        quoted, total = bt.uptime_ticks.get(m.condition_id, [0, 0])
        marks = {}
        for h in MARKOUTS_S:
            values = [v for v in (markout(bt, f, h) for f in fills) if v is not None]
            marks[f"{h}s"] = round(sum(values), 6)
        m_eq = _market_equity(bt, tokens)
        per_market[m.name] = {
            "condition_id": m.condition_id,
            "fills": len(fills),
            "maker_volume_shares": round(sum(f.size for f in fills), 6),
            "maker_volume_pusd": round(sum(f.size * f.price for f in fills), 6),
            "fees_pusd": round(sum(f.fee for f in fills), 6),
            "pnl_realised": round(realised(fills, *tokens), 6),
            "pnl_marked_mid": round(marked, 6),
            "pnl_settled": round(settled, 6),
            "settlement_source": source,
            "settlement_prices": {t: round(p, 6) for t, p in prices.items()},
            "position_end": {t: round(v, 6) for t, v in shares.items()},
            "max_drawdown": round(max_drawdown(m_eq), 6),
            "quote_uptime": round(quoted / total, 6) if total else 0.0,
            "orders_posted": len(orders),
            "orders_rejected_cross": sum(1 for r in orders if r.status == "rejected_cross"),
            "orders_canceled": sum(1 for r in orders if r.status == "canceled"),
            "markout_pusd": marks,
        }
    posts = sorted(r.sent_ns for r in bt.records.values())
    cancels = sorted(r.cancel_sent_ns for r in bt.records.values() if r.cancel_sent_ns)
    c = bt.counters
    return {
        "markets": per_market,
        "total": {
            "fills": len(bt.fills),
            "maker_volume_shares": round(sum(f.size for f in bt.fills), 6),
            "maker_volume_pusd": round(sum(f.size * f.price for f in bt.fills), 6),
            "pnl_realised": round(sum(v["pnl_realised"] for v in per_market.values()), 6),
            "pnl_marked_mid": round(sum(v["pnl_marked_mid"] for v in per_market.values()), 6),
            "pnl_settled": round(sum(v["pnl_settled"] for v in per_market.values()), 6),
            "max_drawdown": round(max_drawdown(eq), 6),
            "markout_pusd": {
                f"{h}s": round(sum(v["markout_pusd"][f"{h}s"] for v in per_market.values()), 6)
                for h in MARKOUTS_S
            },
        },
        "rate_use": {
            "orders_posted": c.posts,
            "post_requests": c.post_requests,
            "cancels_sent": c.cancels,
            "cancel_requests": c.cancel_requests,
            "cancel_alls": c.cancel_alls,
            "max_orders_in_1s": max_in_window(posts, 1_000_000_000),
            "max_orders_in_10s": max_in_window(posts, 10_000_000_000),
            "max_cancels_in_1s": max_in_window(cancels, 1_000_000_000),
            "max_cancels_in_10s": max_in_window(cancels, 10_000_000_000),
            "local_limit_orders_per_s": bt.cfg.orders_per_s,
            "local_limit_cancels_per_s": bt.cfg.cancels_per_s,
            "held_by_rate_limit": c.rate_limited,
        },
        "events": {
            "total": c.events,
            "binance_bbo": c.bbo,
            "polymarket_l2": c.l2,
            "polymarket_trades": c.ptrades,
            "binance_trades": c.btrades,
            "collector_events": c.collector_events,
        },
        "decisions": c.decisions,
        "risk_rejects": dict(sorted(c.risk_rejects.items())),
        "kills": dict(sorted(c.kills.items())),
        "strategy_errors": c.strategy_errors,
        "gaps": [g.as_dict() for g in bt.gaps],
    }


def _market_equity(bt: Backtest, tokens: Sequence[str]) -> list[float]:
    """Marked equity of one market at each sample (cash of its fills + its shares at the mid)."""
    out = []
    fills = [f for f in bt.fills if f.token_id in tokens]
    i, cash = 0, 0.0
    shares = dict.fromkeys(tokens, 0.0)
    for s in bt.samples:
        while i < len(fills) and fills[i].ts_ns <= s["ts"]:
            f = fills[i]
            cash += f.price * f.size * (1 if f.side == "SELL" else -1) - f.fee
            shares[f.token_id] += f.size if f.side == "BUY" else -f.size
            i += 1
        marked = 0.0
        for t in tokens:
            mid = mid_at(bt, t, s["ts"])
            marked += shares[t] * (mid or 0.0)
        out.append(cash + marked)
    return out
