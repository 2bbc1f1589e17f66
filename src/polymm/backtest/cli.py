"""polymm-backtest: replay the data-collector's lake through the trading-executor's strategy.

    polymm-backtest --lake demo-data/collector/lake --markets demo-data/markets.toml --date 2026-12-03
    polymm-backtest --lake s3://marketdata-backtest --markets markets.toml --start 2026-12-03T10 \\
        --end 2026-12-03T12:30:00Z --latency journal:/var/lib/trading-executor/journal
    polymm-backtest ... --sweep min_edge=0.01,0.02,0.03 --sweep quote_size=10,20 --days 2026-12-01,2026-12-02

Bad input (empty range, missing partition, old schema, corrupt file, bad option) prints one line
naming the file or option and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from polymm.backtest.errors import BacktestInputError
from polymm.backtest.run import RunOptions
from polymm.backtest.sweep import parse_grid, parse_value
from polymm.backtest.timerange import parse_time
from polymm.backtest.venue import FillParams
from polymm.service.config import ConfigError, Env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polymm-backtest", description=__doc__.splitlines()[0])
    p.add_argument(
        "--lake",
        help="lake root: a folder (DATA_DIR/lake) or s3://bucket/prefix "
        "(default: s3://$S3_BUCKET/$S3_PREFIX when S3_BUCKET is set)",
    )
    p.add_argument("--markets", help="the executor's MARKETS_CONFIG TOML (default: $MARKETS_CONFIG)")
    p.add_argument("--date", help="one UTC day, YYYY-MM-DD")
    p.add_argument("--start", help="UTC start: YYYY-MM-DD, YYYY-MM-DDTHH, ISO-8601 or unix seconds")
    p.add_argument("--end", help="UTC end (exclusive; a date or hour covers all of it)")
    p.add_argument("--out", default="backtest-out", help="output directory (default backtest-out)")
    p.add_argument(
        "--latency",
        default="constant:45",
        help="constant:<ms RTT> | journal:<executor journal> | replay:<journal> | file:<ms per line>",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the latency draws")
    p.add_argument(
        "--queue-decrease",
        choices=("proportional", "front", "none"),
        default="proportional",
        help="how an unexplained size decrease at our price moves us up the queue",
    )
    p.add_argument(
        "--trade-window-ms",
        type=float,
        default=200.0,
        help="a book decrease and a trade this close are one event",
    )
    p.add_argument(
        "--no-book-cross-fills",
        action="store_true",
        help="do not fill when the recorded book's other side reaches our price",
    )
    p.add_argument(
        "--own-orders-in-book",
        action="store_true",
        help="the lake was recorded while this account quoted: its own size is not queue ahead",
    )
    p.add_argument("--maker-fee-bps", type=float, default=0.0, help="maker fee (bps of min(p,1-p) x size)")
    p.add_argument("--maker-rebate-bps", type=float, default=0.0, help="maker rebate, same base")
    p.add_argument("--fee", action="append", default=[], metavar="MARKET=BPS", help="maker fee of one market")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a market field (min_edge, quote_size, ...) or StrategyParams field",
    )
    p.add_argument("--strategy", help="module:factory, called as factory(markets, ctx) (default: reference)")
    p.add_argument("--book-depth", type=int, default=0, help="levels per side passed to the strategy")
    p.add_argument(
        "--timer-s", type=float, default=None, help="strategy timer (default $STRATEGY_TIMER_SECS or 0.25)"
    )
    p.add_argument("--allow-missing", action="store_true", help="backtest around missing partitions")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="parameter grid; each combination (x each of --days) is one job",
    )
    p.add_argument("--days", default="", help="comma list of UTC days for --sweep")
    p.add_argument("--jobs", type=int, default=0, help="parallel processes for --sweep (default: CPUs)")
    return p


def options(args: argparse.Namespace) -> RunOptions:
    env = Env()
    lake = args.lake
    if not lake:
        bucket = env.str("S3_BUCKET", "")
        if not bucket:
            raise BacktestInputError("--lake is required (a folder or s3://bucket/prefix), or set S3_BUCKET")
        prefix = env.str("S3_PREFIX", "").strip("/")
        lake = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    markets = args.markets or env.str("MARKETS_CONFIG", "")
    if not markets:
        raise BacktestInputError("--markets is required (the executor's MARKETS_CONFIG TOML)")
    if args.date:
        start, end = parse_time(args.date, option="--date"), parse_time(args.date, end=True, option="--date")
    elif args.start and args.end:
        start, end = parse_time(args.start), parse_time(args.end, end=True, option="--end")
    elif args.days and args.sweep:
        start = end = 0  # each cell has its own day
    else:
        raise BacktestInputError("give --date, or --start and --end")
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise BacktestInputError(f"--set {item!r}: expected NAME=VALUE")
        overrides[name] = parse_value(value)
    fees = {}
    for item in args.fee:
        name, sep, value = item.rpartition("=")
        try:
            fees[name] = float(value)
        except ValueError:
            raise BacktestInputError(f"--fee {item!r}: expected MARKET=BPS") from None
    if args.trade_window_ms < 0:
        raise BacktestInputError("--trade-window-ms must be >= 0")
    from polymm.executor.config import risk_limits_from_env

    try:
        limits = risk_limits_from_env(env)
        timer_s = args.timer_s or env.float("STRATEGY_TIMER_SECS", 0.25, low=0.01, high=60)
    except ConfigError as exc:
        raise BacktestInputError(str(exc)) from None
    return RunOptions(
        lake=lake,
        start_ns=start,
        end_ns=end,
        markets_path=Path(markets),
        limits=limits,
        latency=args.latency,
        seed=args.seed,
        fill=FillParams(
            args.queue_decrease, args.trade_window_ms, not args.no_book_cross_fills, args.own_orders_in_book
        ),
        maker_fee_bps=args.maker_fee_bps,
        maker_rebate_bps=args.maker_rebate_bps,
        market_fees=fees,
        overrides=overrides,
        strategy=args.strategy,
        allow_missing=args.allow_missing,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        book_depth=args.book_depth,
        timer_s=timer_s,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    if "LOG_LEVEL" not in os.environ:
        # Every kill switch of the replay would be an ERROR line; they are counted in the report.
        logging.getLogger("polymm.executor.risk").setLevel(logging.CRITICAL)
    try:
        opts = options(args)
        out = Path(args.out)
        if args.sweep:
            from polymm.backtest.sweep import run_sweep, table

            days = [d for d in args.days.split(",") if d]
            rows = run_sweep(opts, parse_grid(args.sweep), days, out, args.jobs)
            print(table(rows))
            print(f"\nsweep: {len(rows)} cells -> {out / 'sweep.csv'}")
            return 0
        from polymm.backtest.report import terminal_table, write_outputs
        from polymm.backtest.run import run_backtest

        res = run_backtest(opts)
        summary = write_outputs(res, out)
    except BacktestInputError as exc:
        print(f"backtest: {exc}", file=sys.stderr, flush=True)
        return 2
    print(terminal_table(summary))
    ev = summary["events"]["total"]
    print(
        f"\n{ev} events in {res.wall_s:.2f}s ({ev / max(res.wall_s, 1e-9):,.0f}/s); "
        f"latency {summary['run']['latency']['source']}"
    )
    print(f"report: {out / 'report.html'}  fills: {out / 'fills.parquet'}  orders: {out / 'orders.parquet'}")
    return 0
