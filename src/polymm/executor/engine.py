"""Executor: wires gateway, order manager, risk, heartbeat, user channel and journal together.

The service main builds one Executor, feeds it market-data liveness (`on_binance`,
`set_poly_feed`) and desired quotes (`submit`), and runs `run(stop)`. Everything that stops
quoting goes through `_trip`, which cancels all orders at once; the supervisor re-evaluates
health every `supervise_s` and retries a failed cancel-all until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymm.executor.clob_gateway import ClobGateway, GatewayConfig
from polymm.executor.heartbeat import Heartbeater
from polymm.executor.journal import Journal
from polymm.executor.orders import OrderManager
from polymm.executor.overlap import OverlapMode
from polymm.executor.ratelimit import TokenBucket
from polymm.executor.risk import LATCHING, Health, KillReason, RiskEngine, RiskLimits
from polymm.executor.types import Fill, MarketSpec, Quote
from polymm.executor.user_ws import UserChannel
from polymm.service.backoff import Backoff, sleep_or_stop

log = logging.getLogger("polymm.executor")


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    gateway: GatewayConfig
    ws_url: str  # user channel, e.g. wss://ws-subscriptions-clob.polymarket.com/ws/user
    markets: tuple[MarketSpec, ...]
    journal_dir: Path
    limits: RiskLimits = field(default_factory=RiskLimits)
    orders_per_s: float = 40.0
    orders_burst: float = 60.0
    cancels_per_s: float = 80.0
    cancels_burst: float = 120.0
    size_tolerance: float = 0.0
    overlap: OverlapMode = OverlapMode.NEVER  # OVERLAP_POSTS (opt-in: docs/overlap.md)
    heartbeat_interval_s: float = 5.0
    heartbeat_threshold_s: float = 7.0
    supervise_s: float = 0.02
    require_poly_feed: bool = True  # False only where no market feed is wired (tests, tools)
    user_ws_ping_s: float = 10.0


class Executor:
    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        self.journal = Journal(cfg.journal_dir)
        self.gateway = ClobGateway(cfg.gateway, cfg.markets)
        self.risk = RiskEngine(cfg.limits, cfg.markets)
        self.orders = OrderManager(
            self.gateway,
            self.risk,
            self.journal,
            order_bucket=TokenBucket(cfg.orders_per_s, cfg.orders_burst),
            cancel_bucket=TokenBucket(cfg.cancels_per_s, cfg.cancels_burst),
            size_tolerance=cfg.size_tolerance,
            overlap=cfg.overlap,
        )
        self.orders.on_fill.append(self._on_fill)
        self.heartbeat = Heartbeater(
            self.gateway,
            interval_s=cfg.heartbeat_interval_s,
            threshold_s=cfg.heartbeat_threshold_s,
            on_fail=lambda why: self._trip(KillReason.HEARTBEAT_FAILED, why),
        )
        self.user_ws = UserChannel(
            cfg.ws_url,
            self.gateway.user_ws_auth,
            [m.condition_id for m in cfg.markets],
            on_order=self.orders.on_order_event,
            on_trade=self.orders.on_trade_event,
            on_connect=self._on_user_connect,
            on_disconnect=self._on_user_disconnect,
            ping_interval_s=cfg.user_ws_ping_s,
        )
        self.binance_last_ns = 0
        self.poly_feed_up = not cfg.require_poly_feed
        self.poly_feed_last_ns = 0
        self._cancel_all_pending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._armed = False  # becomes True once everything was healthy once (quiet start-up)
        self.on_resume: list[Callable[[], None]] = []  # called when quoting may start again

    # -- inputs from the service -----------------------------------------------------------------

    def on_binance(self, _event: object = None, arrival_ns: int | None = None) -> None:
        """Call on every Binance update (e.g. a relay Bbo); only arrival time matters here."""
        self.binance_last_ns = arrival_ns or time.time_ns()

    def set_poly_feed(self, up: bool, last_ns: int | None = None) -> None:
        self.poly_feed_up = up
        self.poly_feed_last_ns = last_ns or time.time_ns()

    def submit(self, desired: Mapping[str, Sequence[Quote]]) -> None:
        self.orders.submit(desired)

    def kill(self, reason: KillReason = KillReason.MANUAL, detail: str = "") -> None:
        self._trip(reason, detail)

    def resume(self, reason: KillReason = KillReason.MANUAL) -> bool:
        """Operator clears a latching kill (condition kills clear themselves)."""
        cleared = self.risk.clear(reason)
        if cleared:
            self.journal.record("kill_cleared", reason=reason.value)
            self._resumed()
        return cleared

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.journal.start()
        self.journal.record(
            "start", detail=f"dry_run={self.cfg.gateway.dry_run} markets={len(self.cfg.markets)}"
        )
        await self.gateway.start()
        self.journal.record("gateway_ready", detail=f"sign_ms={self.gateway.sign_ms_median:.3f}")

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop`; then cancel everything (SIGTERM kill) and shut down in order."""
        # Halt on whatever is not healthy yet before any task runs: nothing may be placed in the
        # gap before the supervisor's first pass.
        self.risk.evaluate(self._health(), starting=True)
        inner = asyncio.Event()  # stops the helpers only after the final cancel-all
        helpers = [
            asyncio.create_task(self.heartbeat.run(inner), name="heartbeat"),
            asyncio.create_task(self.orders.run(inner), name="orders"),
            asyncio.create_task(self._supervise(inner), name="supervisor"),
        ]
        if self.cfg.gateway.dry_run:
            self.user_ws.connected = True
            await self.orders.reconcile()
        else:
            helpers.append(asyncio.create_task(self.user_ws.run(inner), name="user_ws"))
        try:
            await stop.wait()
        finally:
            self.risk.trip(KillReason.SIGTERM, "service stopping")
            self.journal.record("kill", reason=KillReason.SIGTERM.value)
            await self._cancel_everything(KillReason.SIGTERM.value, attempts=5)
            inner.set()
            for t in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(t, 5)
            for t in list(self._tasks):
                t.cancel()
            await self.gateway.close()
            self.journal.record("stop")
            await asyncio.to_thread(self.journal.close)

    # -- kill switches -----------------------------------------------------------------------------

    def _trip(self, reason: KillReason, detail: str = "") -> None:
        quiet = not self._armed and reason not in LATCHING
        if not self.risk.trip(reason, detail) or quiet:
            return
        self.journal.record("kill", reason=reason.value, detail=detail)
        self.orders.clear_desired()
        self._cancel_all_pending = True
        self._spawn(self._cancel_everything(reason.value))

    async def _cancel_everything(self, why: str, attempts: int = 3) -> bool:
        backoff = Backoff(0.1, 1.0)
        for _ in range(attempts):
            res = await self.orders.cancel_all(why)
            if res.ok:
                self._cancel_all_pending = False
                return True
            await asyncio.sleep(backoff.next_delay())
        log.critical("cancel-all failed %d times (%s); the supervisor keeps trying", attempts, why)
        return False

    async def _supervise(self, stop: asyncio.Event) -> None:
        reconcile_backoff = Backoff(0.2, 5.0)
        next_reconcile = 0.0
        next_cancel_all = 0.0
        while not await sleep_or_stop(stop, self.cfg.supervise_s):
            health = self._health()
            was_armed = self._armed
            if was_armed:
                for reason in self._evaluate(health):
                    self._trip_after_evaluate(reason)
            else:
                self.risk.evaluate(health, starting=True)
                if not self.risk.halted and self.orders.reconciled:
                    self._armed = True
                    self.journal.record("armed")
                    log.info("all inputs healthy: quoting enabled")
                    self._resumed()
            mono = time.monotonic()
            if self.user_ws.connected and self.orders.needs_reconcile and mono >= next_reconcile:
                if await self.orders.reconcile():
                    reconcile_backoff.reset()
                else:
                    next_reconcile = mono + reconcile_backoff.next_delay()
            if self._cancel_all_pending and mono >= next_cancel_all:
                next_cancel_all = mono + 1.0
                self._spawn(self._cancel_everything("retry", attempts=1))

    def _health(self) -> Health:
        now = time.time_ns()
        return Health(
            now_ns=now,
            binance_last_ns=self.binance_last_ns,
            poly_feed_up=self.poly_feed_up,
            poly_feed_last_ns=self.poly_feed_last_ns if self.cfg.require_poly_feed else now,
            user_ws_up=self.user_ws.connected,
            heartbeat_ok=self.heartbeat.ok(),
        )

    def _evaluate(self, health: Health) -> list[KillReason]:
        tripped, cleared = self.risk.evaluate(health)
        for reason in cleared:
            self.journal.record("kill_cleared", reason=reason.value)
        if cleared:
            self._resumed()
        return tripped

    def _resumed(self) -> None:
        """A kill cleared: if nothing else holds quoting back, say so now, not on the next timer."""
        if self.risk.halted:
            return
        self.orders.wake()  # quotes held while halted go out at once
        for callback in self.on_resume:
            try:
                callback()
            except Exception:
                log.exception("on_resume callback failed")

    def _trip_after_evaluate(self, reason: KillReason) -> None:
        # evaluate() already marked the reason active; do the side effects of a trip.
        self.journal.record("kill", reason=reason.value, detail=self.risk.active.get(reason, ""))
        self.orders.clear_desired()
        self._cancel_all_pending = True
        self._spawn(self._cancel_everything(reason.value))

    def _on_fill(self, _fill: Fill) -> None:
        breach = self.risk.position_breach(self.orders.positions.shares)
        if breach is not None:
            self._trip(KillReason.LIMIT_BREACHED, breach)

    def _on_user_connect(self) -> None:
        self.journal.record("user_ws_connected", detail=f"connect={self.user_ws.connects}")
        self.orders.mark_unreconciled()  # supervisor reconciles before anything new is placed

    def _on_user_disconnect(self) -> None:
        self.journal.record("user_ws_disconnected")
        self.orders.mark_unreconciled()
        self._trip(KillReason.USER_WS_DOWN, "user channel disconnected")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "halted": self.risk.halted,
            "kill_reasons": {k.value: v for k, v in self.risk.active.items()},
            "open_orders": len(self.orders.orders),
            "positions": dict(self.orders.positions.shares),
            "user_ws": self.user_ws.connected,
            "heartbeat_ok": self.heartbeat.ok(),
            "reconciled": self.orders.reconciled,
            "gateway_requests": self.gateway.requests,
            "gateway_errors": {k.value: v for k, v in self.gateway.errors.items()},
            "journal_dropped": self.journal.dropped,
            "stats": self.orders.stats,
        }
