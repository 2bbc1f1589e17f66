"""`--sweep`: a grid of strategy parameters x days, each cell an independent backtest in its own
process (local processes by default), results gathered into one table."""

from __future__ import annotations

import csv
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from polymm.backtest.errors import BacktestInputError
from polymm.backtest.run import RunOptions
from polymm.backtest.timerange import parse_time


def parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        for part in spec.replace(";", " ").split():
            name, sep, values = part.partition("=")
            if not sep or not name or not values:
                raise BacktestInputError(f"--sweep {part!r}: expected name=v1,v2,...")
            grid[name] = [parse_value(v) for v in values.split(",") if v]
    return grid


def cells(
    base: RunOptions, grid: dict[str, list[Any]], days: list[str]
) -> list[tuple[dict[str, Any], RunOptions]]:
    names = sorted(grid)
    ranges = [(base.start_ns, base.end_ns, "")]
    if days:
        ranges = [(parse_time(d, option="--days"), parse_time(d, end=True, option="--days"), d) for d in days]
    out = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values, strict=True))
        for start, end, day in ranges:
            label = dict(params, **({"day": day} if day else {}))
            out.append(
                (
                    label,
                    replace(
                        base,
                        start_ns=start,
                        end_ns=end,
                        overrides={**base.overrides, **params},
                        progress=False,
                    ),
                )
            )
    return out


def _run_cell(args: tuple[int, RunOptions, str]) -> dict[str, Any]:
    from polymm.backtest.report import write_outputs
    from polymm.backtest.run import run_backtest

    index, opts, out = args
    try:
        res = run_backtest(opts)
    except BacktestInputError as exc:
        return {"cell": index, "error": str(exc)}
    summary = write_outputs(res, Path(out))
    t = summary["total"]
    return {
        "cell": index,
        "fills": t["fills"],
        "volume": t["maker_volume_shares"],
        "pnl_realised": t["pnl_realised"],
        "pnl_marked_mid": t["pnl_marked_mid"],
        "pnl_settled": t["pnl_settled"],
        "max_drawdown": t["max_drawdown"],
        "markout_5s": t["markout_pusd"]["5s"],
        "orders": summary["rate_use"]["orders_posted"],
        "events": summary["events"]["total"],
        "wall_s": round(res.wall_s, 3),
    }


def run_sweep(
    base: RunOptions, grid: dict[str, list[Any]], days: list[str], out: Path, jobs: int
) -> list[dict[str, Any]]:
    todo = cells(base, grid, days)
    out.mkdir(parents=True, exist_ok=True)
    args = [(i, opts, str(out / f"cell-{i:03d}")) for i, (_, opts) in enumerate(todo)]
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(args)))
    if jobs == 1:
        results = [_run_cell(a) for a in args]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_run_cell, args))
    rows = [{**label, **res} for (label, _), res in zip(todo, results, strict=True)]
    (out / "sweep.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    keys = sorted({k for r in rows for k in r})
    with (out / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k != "cell"] if rows else []
    keys = ["cell", *keys]
    cells_ = [[str(r.get(k, "")) for k in keys] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells_]) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells_]
    return "\n".join(lines)
