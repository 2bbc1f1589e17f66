"""One backtest: options -> lake reader -> merged hours -> engine -> results (no files written here)."""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import msgspec

from polymm.backtest.engine import Backtest, EngineConfig, Fees
from polymm.backtest.errors import BacktestInputError
from polymm.backtest.latency import parse_latency
from polymm.backtest.merge import Selection, chunks
from polymm.backtest.reader import LakeReader, hours_between
from polymm.backtest.timerange import fmt_ns
from polymm.backtest.venue import FillParams
from polymm.executor.risk import RiskLimits
from polymm.executor.strategy_bridge import market_spec
from polymm.lake.partition import NS_PER_HOUR, PartKey
from polymm.service.config import ConfigError
from polymm.strategy.interface import ExecutorAdapter, StrategyContext
from polymm.strategy.markets import MarketConfig, load_markets
from polymm.strategy.reference import ReferenceStrategy, StrategyParams

MARKET_FIELDS = {f for f in MarketConfig.__struct_fields__}
PARAM_FIELDS = {f.name for f in fields(StrategyParams)}


@dataclass
class RunOptions:
    lake: str
    start_ns: int
    end_ns: int
    markets_path: Path
    limits: RiskLimits = field(default_factory=RiskLimits)
    latency: str = "constant:45"
    seed: int = 0
    fill: FillParams = field(default_factory=FillParams)
    maker_fee_bps: float = 0.0
    maker_rebate_bps: float = 0.0
    market_fees: dict[str, float] = field(default_factory=dict)  # market name -> maker bps
    overrides: dict[str, Any] = field(default_factory=dict)  # strategy / market parameters
    strategy: str | None = None  # "module:factory", factory(markets, ctx) -> Strategy
    allow_missing: bool = False
    progress: bool = False
    book_depth: int = 0
    timer_s: float = 0.25


@dataclass
class RunResult:
    opts: RunOptions
    bt: Backtest
    markets: list[MarketConfig]
    read: dict[str, Any]
    wall_s: float


def load_config(opts: RunOptions) -> tuple[list[MarketConfig], StrategyParams]:
    try:
        markets = load_markets(opts.markets_path)
    except ConfigError as exc:
        raise BacktestInputError(str(exc)) from None
    market_over = {k: v for k, v in opts.overrides.items() if k in MARKET_FIELDS}
    param_over = {k: v for k, v in opts.overrides.items() if k in PARAM_FIELDS}
    unknown = set(opts.overrides) - MARKET_FIELDS - PARAM_FIELDS
    if unknown:
        raise BacktestInputError(f"unknown strategy parameter(s): {', '.join(sorted(unknown))}")
    if market_over:
        try:
            markets = [
                msgspec.convert({**msgspec.structs.asdict(m), **market_over}, MarketConfig) for m in markets
            ]
        except msgspec.ValidationError as exc:
            raise BacktestInputError(f"strategy parameter: {exc}") from None
    return markets, replace(StrategyParams(), **param_over)


def build_adapter(
    opts: RunOptions, markets: list[MarketConfig], params: StrategyParams, bt_clock: Any
) -> Any:
    ctx = StrategyContext()
    if opts.strategy:
        module, _, name = opts.strategy.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name or "Strategy")
        except (ImportError, AttributeError) as exc:
            raise BacktestInputError(f"--strategy {opts.strategy!r}: {exc}") from None
        strategy = factory(markets, ctx)
    else:
        strategy = ReferenceStrategy(markets, ctx, params)
    return ExecutorAdapter(strategy, ctx, clock=bt_clock, book_depth=opts.book_depth)


def check_partitions(reader: LakeReader, sel: Selection) -> tuple[list[int], list[str]]:
    """(hours that have data, partition dirs missing between the first and last of them).

    Hours before the first and after the last recorded hour are outside the recording: the range
    is clipped to it. Inside it, an absent Binance BBO or Polymarket L2 partition is a hole. (An
    hour without trades or collector events has no partition; that is not a hole.)"""
    hours = list(hours_between(reader.start_ns, reader.end_ns))
    absent: dict[int, list[str]] = {}
    for hour in hours:
        keys = [PartKey("binance_bbo", s, hour) for s in sel.symbols]
        keys += [PartKey("polymarket_l2", t, hour) for t in sel.tokens]
        absent[hour] = [reader.location(k.dir) for k in keys if not reader.files(k)]
    total = len(sel.symbols) + len(sel.tokens)
    present = [h for h in hours if len(absent[h]) < total]
    if not present:
        return [], []
    inside = [h for h in hours if present[0] <= h <= present[-1]]
    return inside, [d for h in inside for d in absent[h]]


def run_backtest(opts: RunOptions) -> RunResult:
    started = time.monotonic()
    if opts.end_ns <= opts.start_ns:
        raise BacktestInputError(
            f"empty range: end {fmt_ns(opts.end_ns)} is not after start {fmt_ns(opts.start_ns)}"
        )
    markets, params = load_config(opts)
    specs = [market_spec(m) for m in markets]
    latency = parse_latency(opts.latency, opts.seed)
    fees = {}
    for m in markets:
        bps = opts.market_fees.get(m.name, opts.maker_fee_bps)
        fees[m.condition_id] = Fees(bps, opts.maker_rebate_bps)
    unknown = set(opts.market_fees) - {m.name for m in markets}
    if unknown:
        raise BacktestInputError(f"--fee names no market in the markets file: {', '.join(sorted(unknown))}")
    cfg = EngineConfig(
        markets=markets, limits=opts.limits, latency=latency, fill=opts.fill, fees=fees, timer_s=opts.timer_s
    )
    holder: dict[str, Backtest] = {}
    adapter = build_adapter(opts, markets, params, lambda: holder["bt"].now)
    bt = holder["bt"] = Backtest(cfg, adapter, specs)
    reader = LakeReader(opts.lake, opts.start_ns, opts.end_ns)
    sel = Selection(
        tuple(sorted({m.binance_symbol.upper() for m in markets})),
        tuple(t for m in markets for t in (m.yes_token, m.no_token)),
        binance_trades=hasattr(getattr(adapter, "strategy", None), "on_binance_trade"),
    )
    recorded, missing = check_partitions(reader, sel)
    span = f"{fmt_ns(opts.start_ns)} .. {fmt_ns(opts.end_ns)}"
    if not recorded:
        raise BacktestInputError(f"empty range: no Binance BBO or Polymarket L2 in {opts.lake} for {span}")
    if missing and not opts.allow_missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BacktestInputError(
            f"missing partition {missing[0]}{more} (--allow-missing backtests around it, listed as gaps)"
        )
    reader.start_ns = max(reader.start_ns, recorded[0] * NS_PER_HOUR)
    reader.end_ns = min(reader.end_ns, (recorded[-1] + 1) * NS_PER_HOUR)
    progress = _Progress(opts.start_ns, opts.end_ns) if opts.progress else None
    if progress is not None:
        bt.progress = progress.update
    began = False
    for chunk in chunks(reader, sel):
        reader.stats.missing.clear()
        if not began and len(chunk):
            bt.start(chunk.ts[0])
            began = True
        if began:
            bt.run_chunk(chunk)
    if not began:
        raise BacktestInputError(f"empty range: the lake at {opts.lake} has no rows for {span}")
    bt.finish(min(opts.end_ns, bt.now + 1_000_000_000))  # the data ends here, not the range
    if progress is not None:
        progress.done(bt.counters.events)
    read = {
        "files": reader.stats.files,
        "rows": reader.stats.rows,
        "missing_partitions": missing,
        "columns_filled": reader.stats.filled,
    }
    return RunResult(opts, bt, markets, read, time.monotonic() - started)


class _Progress:
    """One status line on stderr, rewritten every half second: how far, how fast."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start, self.span = start_ns, max(1, end_ns - start_ns)
        self.t0 = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, ts: int) -> None:
        now = time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        frac = min(1.0, max(0.0, (ts - self.start) / self.span))
        bar = "#" * int(frac * 30)
        end = "\r" if self.tty else "\n"
        sys.stderr.write(
            f"backtest [{bar:<30}] {frac * 100:5.1f}% at {fmt_ns(ts)}  {now - self.t0:6.1f}s{end}"
        )
        sys.stderr.flush()

    def done(self, events: int) -> None:
        took = time.monotonic() - self.t0
        sys.stderr.write(
            f"backtest [{'#' * 30}] 100.0%  {events} events in {took:.1f}s "
            f"({events / max(took, 1e-9):,.0f}/s)\n"
        )
        sys.stderr.flush()
