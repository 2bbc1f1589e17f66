"""report.html: one self-contained file (inline SVG, no scripts, no network) a trader opens."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from polymm.backtest.timerange import fmt_ns

W, H, PAD = 900, 220, 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def _polyline(
    xs: Sequence[float],
    ys: Sequence[float | None],
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    color: str,
    step: bool = False,
) -> str:
    def px(x: float) -> float:
        return PAD + (x - x0) / ((x1 - x0) or 1) * (W - 2 * PAD)

    def py(y: float) -> float:
        return H - PAD - (y - y0) / ((y1 - y0) or 1) * (H - 2 * PAD)

    parts, seg = [], []
    prev_y = None
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if seg:
                parts.append(seg)
            seg, prev_y = [], None
            continue
        if step and prev_y is not None:
            seg.append(f"{px(x):.1f},{py(prev_y):.1f}")
        seg.append(f"{px(x):.1f},{py(y):.1f}")
        prev_y = y
    if seg:
        parts.append(seg)
    return "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{" ".join(s)}"/>' for s in parts
    )


def chart(
    title: str, ts: Sequence[int], series: Sequence[tuple[str, Sequence[float | None]]], step: bool = False
) -> str:
    values = [v for _, ys in series for v in ys if v is not None]
    if not ts or not values:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    x0, x1 = ts[0] / 1e9, ts[-1] / 1e9
    y0, y1 = min(values), max(values)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    xs = [t / 1e9 for t in ts]
    lines = "".join(
        _polyline(xs, ys, x0, x1, y0, y1, COLORS[i % len(COLORS)], step) for i, (_, ys) in enumerate(series)
    )
    legend = " ".join(
        f'<span style="color:{COLORS[i % len(COLORS)]}">&#9632; {html.escape(name)}</span>'
        for i, (name, _) in enumerate(series)
    )
    axes = (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>'
        f'<text x="{PAD}" y="{H - 10}" font-size="11">{fmt_ns(ts[0])}</text>'
        f'<text x="{W - PAD}" y="{H - 10}" font-size="11" text-anchor="end">{fmt_ns(ts[-1])}</text>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="11" text-anchor="end">{y1:.4g}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" font-size="11" text-anchor="end">{y0:.4g}</text>'
    )
    return (
        f"<h3>{html.escape(title)}</h3><div>{legend}</div>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">'
        f"{axes}{lines}</svg>"
    )


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


MAX_POINTS = 3000  # per series: a day of 1 s samples would make a 10 MB page


def render(summary: dict[str, Any], samples: list[dict[str, Any]], markets: list[Any]) -> str:
    step = max(1, -(-len(samples) // MAX_POINTS))
    samples = samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else [])
    ts = [s["ts"] for s in samples]
    parts = [chart("Equity (pUSD, marked at mid)", ts, [("equity", [s["equity"] for s in samples])])]
    for m in markets:
        yes, no = m.yes_token, m.no_token
        inv = [
            ("YES", [s["inventory"].get(yes, 0.0) for s in samples]),
            ("NO", [s["inventory"].get(no, 0.0) for s in samples]),
        ]
        parts.append(chart(f"{m.name}: inventory (shares)", ts, inv, step=True))

        def yes_view(s: dict[str, Any], which: int, yes: str = yes, no: str = no) -> float | None:
            # our quotes in YES terms: YES bid, and the NO bid mirrored as a YES ask
            q = s["quotes"]
            if which == 0:
                return q.get(yes, (None, None))[0]
            ask = q.get(yes, (None, None))[1]
            no_bid = q.get(no, (None, None))[0]
            return ask if ask is not None else (1.0 - no_bid if no_bid is not None else None)

        series = [
            ("fair value", [s["fair"].get(yes) for s in samples]),
            ("our bid", [yes_view(s, 0) for s in samples]),
            ("our ask", [yes_view(s, 1) for s in samples]),
            ("book bid", [s["books"].get(yes, (None, None))[0] for s in samples]),
            ("book ask", [s["books"].get(yes, (None, None))[1] for s in samples]),
        ]
        parts.append(chart(f"{m.name}: fair value vs our quotes vs book (YES)", ts, series, step=True))
    rows = [
        [
            name,
            v["fills"],
            v["maker_volume_shares"],
            f"{v['pnl_realised']:.4f}",
            f"{v['pnl_marked_mid']:.4f}",
            f"{v['pnl_settled']:.4f}",
            v["settlement_source"],
            f"{v['max_drawdown']:.4f}",
            f"{v['quote_uptime'] * 100:.1f}%",
            v["orders_posted"],
            v["orders_canceled"],
            " / ".join(f"{x:.4f}" for x in v["markout_pusd"].values()),
        ]
        for name, v in summary["markets"].items()
    ]
    table = _table(
        rows,
        [
            "market",
            "fills",
            "maker vol",
            "realised",
            "marked",
            "settled",
            "settled on",
            "max DD",
            "uptime",
            "posts",
            "cancels",
            "markout 1s/5s/30s",
        ],
    )
    gaps = _table(
        [[fmt_ns(g["ts_ns"]), g["source"], g["kind"], g["key"]] for g in summary["gaps"]],
        ["time", "source", "kind", "key"],
    )
    meta = html.escape(json.dumps(summary["run"], indent=1, sort_keys=True))
    rate = html.escape(json.dumps(summary["rate_use"], indent=1, sort_keys=True))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>polymm backtest</title><style>"
        "body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}pre{font-size:12px}</style></head><body>"
        f"<h1>polymm backtest</h1><h2>Per market</h2>{table}"
        f"<h2>Plots</h2>{''.join(parts)}"
        f"<h2>Gaps crossed ({len(summary['gaps'])})</h2>{gaps}"
        f"<h2>Order and cancel rates</h2><pre>{rate}</pre>"
        f"<h2>Run</h2><pre>{meta}</pre></body></html>\n"
    )
