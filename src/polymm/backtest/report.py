"""Write a finished run: summary.json, fills.parquet, orders.parquet, report.html, terminal table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polymm.backtest import html
from polymm.backtest.metrics import MARKOUTS_S, markout, summarize
from polymm.backtest.run import RunResult
from polymm.backtest.timerange import fmt_ns

FILLS_SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("token_id", pa.string()),
        ("market", pa.string()),
        ("side", pa.string()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("fee", pa.float64()),
        ("order_id", pa.string()),
        ("trade_id", pa.string()),
        *[(f"markout_{h}s", pa.float64()) for h in MARKOUTS_S],
    ]
)
ORDERS_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("token_id", pa.string()),
        ("market", pa.string()),
        ("side", pa.string()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("sent_ns", pa.int64()),
        ("rest_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("status", pa.string()),
        ("filled", pa.float64()),
        ("queue_ahead", pa.float64()),
        ("cancel_sent_ns", pa.int64()),
    ]
)


def build_summary(res: RunResult) -> dict[str, Any]:
    o = res.opts
    summary = summarize(res.bt, res.markets)
    summary["run"] = {
        "lake": o.lake,
        "start": fmt_ns(o.start_ns),
        "end": fmt_ns(o.end_ns),
        "markets_config": str(o.markets_path),
        "latency": res.bt.cfg.latency.describe(),
        "fill_model": asdict(o.fill),
        "fees_bps": {"maker": o.maker_fee_bps, "rebate": o.maker_rebate_bps, "per_market": o.market_fees},
        "parameters": dict(sorted(o.overrides.items())),
        "strategy": o.strategy or "polymm.strategy.reference:ReferenceStrategy",
        "seed": o.seed,
        "read": res.read,
    }
    return summary


def write_outputs(res: RunResult, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    bt = res.bt
    summary = build_summary(res)
    fills = [asdict(f) | {f"markout_{h}s": markout(bt, f, h) for h in MARKOUTS_S} for f in bt.fills]
    pq.write_table(pa.Table.from_pylist(fills, FILLS_SCHEMA), out / "fills.parquet")
    orders = [asdict(r) for r in sorted(bt.records.values(), key=lambda r: r.order_id)]
    pq.write_table(pa.Table.from_pylist(orders, ORDERS_SCHEMA), out / "orders.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out / "report.html").write_text(html.render(summary, bt.samples, res.markets))
    return summary


def terminal_table(summary: dict[str, Any]) -> str:
    head = (
        "market",
        "fills",
        "vol",
        "realised",
        "marked",
        "settled",
        "maxDD",
        "uptime",
        "posts",
        "cxl",
        "mk1s",
        "mk5s",
        "mk30s",
    )
    rows = []
    for name, v in [*summary["markets"].items(), ("TOTAL", None)]:
        if v is None:
            t = summary["total"]
            rows.append(
                (
                    name,
                    t["fills"],
                    f"{t['maker_volume_shares']:g}",
                    f"{t['pnl_realised']:+.4f}",
                    f"{t['pnl_marked_mid']:+.4f}",
                    f"{t['pnl_settled']:+.4f}",
                    f"{t['max_drawdown']:.4f}",
                    "",
                    summary["rate_use"]["orders_posted"],
                    sum(m["orders_canceled"] for m in summary["markets"].values()),
                    *(f"{t['markout_pusd'][f'{h}s']:+.3f}" for h in MARKOUTS_S),
                )
            )
            continue
        rows.append(
            (
                name[:28],
                v["fills"],
                f"{v['maker_volume_shares']:g}",
                f"{v['pnl_realised']:+.4f}",
                f"{v['pnl_marked_mid']:+.4f}",
                f"{v['pnl_settled']:+.4f}",
                f"{v['max_drawdown']:.4f}",
                f"{v['quote_uptime'] * 100:.1f}%",
                v["orders_posted"],
                v["orders_canceled"],
                *(f"{v['markout_pusd'][f'{h}s']:+.3f}" for h in MARKOUTS_S),
            )
        )
    cells = [tuple(str(c) for c in r) for r in [head, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    for name, v in summary["markets"].items():
        lines.append(f"{name}: settled on {v['settlement_source']}")
    kills = ", ".join(f"{k} x{n}" for k, n in summary["kills"].items()) or "none"
    lines.append(f"kill switches tripped: {kills}")
    gaps = summary["gaps"]
    lines.append(
        f"gaps crossed: {len(gaps)}"
        + "".join(f"\n  {fmt_ns(g['ts_ns'])} {g['source']} {g['kind']} {g['key']}" for g in gaps[:20])
    )
    if len(gaps) > 20:
        lines.append(f"  ... {len(gaps) - 20} more in summary.json")
    return "\n".join(lines)
