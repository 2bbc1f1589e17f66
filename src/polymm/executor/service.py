"""trading-executor: Binance signal (relay) + Polymarket book -> strategy -> quotes on the CLOB.

The strategy sits behind `QuoteSource` (four callbacks, each returning the desired quotes per
token or None for "no change"), so another strategy plugs in without touching the rest; the
executor engine diffs desired against live orders, applies risk limits and kill switches.

systemd: READY=1 once the gateway is ready and the receiver listens; WATCHDOG=1 only while both
feeds are fresh; STATUS= with positions, open orders, Binance age, PnL and any kill reason.
`trading-executor cancel-all` cancels every order of the account and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from polymm.executor.clob_gateway import ClobGateway, GatewayConfig
from polymm.executor.config import ExecutorServiceConfig
from polymm.executor.engine import Executor, ExecutorConfig
from polymm.executor.quote_view import format_quote_line, yes_terms
from polymm.executor.types import Fill, MarketSpec, Quote, Side
from polymm.polymarket.book import OrderBook
from polymm.polymarket.market_ws import MarketFeed
from polymm.relay.events import Bbo, RelayEvent
from polymm.relay.receiver import RelayReceiver
from polymm.service.backoff import sleep_or_stop
from polymm.service.config import ConfigError
from polymm.service.logs import Throttle, setup_logging
from polymm.service.runtime import ServiceMain, refuse_start, run_service
from polymm.service.startup import storage_error
from polymm.service.systemd import Notifier

if TYPE_CHECKING:
    from polymm.strategy.interface import StrategyContext

log = logging.getLogger("polymm.executor.service")

Desired = Mapping[str, Sequence[Quote]]


class QuoteSource(Protocol):
    """What the executor needs from a strategy. Each callback returns the full set of quotes it
    wants for the tokens it names (an empty list cancels that token's quotes), or None."""

    def on_binance_bbo(self, bbo: Bbo) -> Desired | None: ...
    def on_polymarket_book(self, token_id: str, book: OrderBook, recv_ts: int) -> Desired | None: ...
    def on_fill(self, fill: Fill) -> Desired | None: ...
    def on_timer(self, now_ns: int) -> Desired | None: ...


def gateway_config(cfg: ExecutorServiceConfig) -> GatewayConfig:
    return GatewayConfig(
        host=cfg.clob_url, private_key=cfg.private_key, chain_id=cfg.chain_id,
        signature_type=cfg.signature_type, funder=cfg.funder, api_key=cfg.api_key,
        api_secret=cfg.api_secret, api_passphrase=cfg.api_passphrase, dry_run=cfg.dry_run,
    )  # fmt: skip


class TradingExecutor:
    def __init__(
        self, cfg: ExecutorServiceConfig, strategy: QuoteSource, markets: Sequence[MarketSpec]
    ) -> None:
        self.cfg = cfg
        try:  # here, not in the journal's thread: a JOURNAL_DIR we cannot create ends start-up
            cfg.journal_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error("JOURNAL_DIR", cfg.journal_dir, exc) from None
        self.strategy = strategy
        self.markets = tuple(markets)
        self.engine = Executor(
            ExecutorConfig(
                gateway=gateway_config(cfg),
                ws_url=f"{cfg.ws_url}/ws/user",
                markets=self.markets,
                journal_dir=cfg.journal_dir,
                limits=cfg.limits,
                overlap=cfg.overlap_posts,
            )
        )
        self.engine.orders.on_fill.append(self._on_fill)
        self.engine.on_resume.append(self._on_resume)
        self._ctx: StrategyContext | None = getattr(strategy, "ctx", None)  # the adapter's, if any
        self.strategy_errors = 0
        on_void = getattr(strategy, "on_void", None)
        if on_void is not None:  # a trade that failed on chain is taken back out of the strategy's book
            self.engine.orders.on_void.append(on_void)
        rc = cfg.receiver
        self.receiver = RelayReceiver(
            rc.listen_host, rc.listen_port, rc.ssl_context(), self._on_relay, idle_timeout_s=rc.idle_timeout_s
        )
        self.receiver.bind()  # a port in use ends start-up here, before anything runs (ListenError)
        self.feed = MarketFeed(
            [t for m in self.markets for t in m.token_ids],
            url=f"{cfg.ws_url}/ws/market",
            on_book=self._on_book,
            on_event=self._on_feed_event,
        )
        self.notifier = Notifier()
        self.cash = 0.0  # pUSD from fills: sells add, buys spend
        self.binance_last_ns = 0
        self.last_bbo: Bbo | None = None
        self.decisions = 0
        self._last_quote_log = 0.0
        self._throttle = Throttle()

    # -- inputs ---------------------------------------------------------------------------------------

    def _on_relay(self, event: RelayEvent) -> None:
        if type(event) is Bbo:
            self.binance_last_ns = event.arrival_ts
            self.last_bbo = event
            self.engine.on_binance(event, event.arrival_ts)
            self._ask(self.strategy.on_binance_bbo, event, trigger=event)

    def _on_book(self, token_id: str, book: OrderBook, recv_ts: int, _exch_ts: int, _hash: str) -> None:
        self.engine.set_poly_feed(True, recv_ts)
        self._ask(self.strategy.on_polymarket_book, token_id, book, recv_ts, trigger="book")

    def _on_feed_event(self, kind: str, detail: Mapping[str, object]) -> None:
        if kind == "disconnected":
            self.engine.set_poly_feed(False)
        elif kind == "tick_size_change":
            token, tick = detail.get("asset_id"), detail.get("new_tick_size")
            if isinstance(token, str) and tick is not None:
                self.engine.gateway.set_tick_size(token, str(tick))
                regrid = getattr(self.strategy, "on_tick_size_change", None)  # optional callback
                if regrid is not None:
                    self._ask(regrid, token, float(str(tick)), trigger="tick size change")

    def _on_fill(self, fill: Fill) -> None:
        self.cash += fill.price * fill.size * (1 if fill.side is Side.SELL else -1)
        self._ask(self.strategy.on_fill, fill, trigger="fill")

    def _on_resume(self) -> None:
        # Quoting may start again: let the strategy quote afresh now rather than on its next input.
        self._ask(self.strategy.on_timer, time.time_ns(), trigger="resume")

    def _ask(self, callback: Callable[..., Desired | None], *args: Any, trigger: Bbo | str) -> None:
        """Run one strategy callback with the executor's state in its context, submit its answer.

        A strategy that raises is logged (throttled) and counted; the event is dropped, the
        service and the resting orders carry on (the risk checks still apply to what is live)."""
        if self._ctx is not None:
            self._ctx.halted = self.engine.risk.halted
        try:
            desired = callback(*args)
        except Exception:
            self.strategy_errors += 1
            self._throttle.warn(
                log,
                "strategy",
                "strategy %s raised",
                getattr(callback, "__name__", "callback"),
                exc_info=True,
            )
            return
        self._submit(desired, trigger)

    def _submit(self, desired: Desired | None, trigger: Bbo | str) -> None:
        if desired is None:
            return
        decided_ns = time.time_ns()
        self.decisions += 1
        self.engine.submit(desired)
        now = time.monotonic()
        if now - self._last_quote_log >= 1.0:  # operators see quotes move; the journal has every one
            self._last_quote_log = now
            fair_value = getattr(self.strategy, "fair_value", None)
            for market in self.markets:
                yes, no = market.token_ids[0], market.token_ids[-1]
                if yes in desired or no in desired:
                    fair = fair_value(yes) if fair_value is not None else None
                    line = format_quote_line(
                        decided_ns, yes_terms(desired, yes, no), fair, self.last_bbo, trigger
                    )
                    log.info("%s", line)

    # -- run ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        log.info(
            "trading-executor starting: %s, %d markets, CLOB %s%s",
            "DRY_RUN" if cfg.dry_run else "LIVE TRADING", len(self.markets), cfg.clob_url,
            "" if cfg.dry_run else " (orders are real)",
        )  # fmt: skip
        await self.engine.start()
        await self.receiver.start()
        feed_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self.feed.run(feed_stop)),
            asyncio.create_task(self._timer(stop)),
            asyncio.create_task(self._report(stop)),
        ]
        self.notifier.ready(self.status_text())
        try:
            await self.engine.run(stop)  # returns after its final cancel-all
        finally:
            self.notifier.stopping()
            feed_stop.set()
            await self.receiver.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("trading-executor stopped: %s", self.status_text())

    async def _timer(self, stop: asyncio.Event) -> None:
        while not await sleep_or_stop(stop, self.cfg.timer_s):
            # PONGs do not count: only data proves the book is live.
            self.engine.set_poly_feed(self.feed.connected, self.feed.stats.last_message_ns or None)
            self._ask(self.strategy.on_timer, time.time_ns(), trigger="timer")

    def fresh(self) -> bool:
        now = time.time_ns()
        limits = self.cfg.limits
        binance_ok = self.binance_last_ns and now - self.binance_last_ns < limits.binance_stale_ms * 1e6
        poly_last = self.feed.stats.last_message_ns
        poly_ok = self.feed.connected and poly_last and now - poly_last < limits.poly_feed_stale_ms * 1e6
        return bool(binance_ok and poly_ok)

    def pnl(self) -> float:
        marked = 0.0
        for token, shares in self.engine.orders.positions.shares.items():
            book = self.feed.books.get(token)
            mid = book.mid() if book is not None and book.valid else None
            marked += shares * (mid if mid is not None else 0.0)
        return self.cash + marked

    def status_text(self) -> str:
        st = self.engine.status()
        age = (time.time_ns() - self.binance_last_ns) / 1e6 if self.binance_last_ns else float("inf")
        positions = ",".join(f"{t[:6]}..:{q:+.2f}" for t, q in st["positions"].items() if q) or "flat"
        kills = ",".join(st["kill_reasons"]) or "none"
        stats = st["stats"]
        return (
            f"{'DRY_RUN' if self.cfg.dry_run else 'LIVE'} open {st['open_orders']} pos {positions} "
            f"pnl {self.pnl():+.2f} binance age {age:.0f}ms poly {'up' if self.feed.connected else 'DOWN'} "
            f"kill {kills} overlap {stats.overlapped}/{stats.overlapped + stats.cancel_first}"
        )

    async def _report(self, stop: asyncio.Event) -> None:
        last_log = time.monotonic()
        while not await sleep_or_stop(stop, 1.0):
            if self.fresh():
                self.notifier.watchdog()
            text = self.status_text()
            self.notifier.status(text)
            if time.monotonic() - last_log >= self.cfg.status_log_s:
                last_log = time.monotonic()
                log.info("status: %s", text)


async def cancel_all(cfg: ExecutorServiceConfig) -> int:
    """Operator's kill switch: cancel every order of the account, whatever DRY_RUN says."""
    gateway = ClobGateway(replace(gateway_config(cfg), dry_run=False))
    try:
        await gateway.start()
        result = await gateway.cancel_all()
    finally:
        await gateway.close()
    if result.ok:
        canceled = result.data.get("canceled", []) if isinstance(result.data, dict) else []
        print(f"cancel-all: {len(canceled)} orders cancelled", flush=True)
        return 0
    print(f"cancel-all FAILED: {result.kind.value} {result.error}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trading-executor", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=("run", "cancel-all"), default="run")
    args = parser.parse_args(argv)
    setup_logging("trading-executor")
    if args.command == "cancel-all":
        import uvloop

        try:
            cfg = ExecutorServiceConfig.from_env(need_receiver=False)
        except ConfigError as exc:
            return refuse_start("trading-executor", exc)
        return uvloop.run(cancel_all(cfg))

    def build() -> ServiceMain:
        from polymm.executor.strategy_bridge import build_strategy

        cfg = ExecutorServiceConfig.from_env()
        strategy, markets = build_strategy(cfg.markets_path)
        return TradingExecutor(cfg, strategy, markets).run

    return run_service(build, "trading-executor")


if __name__ == "__main__":
    raise SystemExit(main())
