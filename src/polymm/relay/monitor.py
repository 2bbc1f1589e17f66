"""relay-monitor: a receiver that prints what arrives, with per-hop latency (demo and debugging)."""

from __future__ import annotations

import asyncio
import logging
import time

from polymm.relay.config import ReceiverConfig
from polymm.relay.events import Bbo, Notice, RelayEvent, Trade
from polymm.relay.receiver import RelayReceiver
from polymm.service.config import Env
from polymm.service.logs import setup_logging
from polymm.service.runtime import ServiceMain, run_service

log = logging.getLogger("polymm.monitor")


def describe(event: RelayEvent) -> str:
    if type(event) is Notice:
        return f"NOTICE {event.event} {event.detail}"
    hop_us = (event.arrival_ts - event.send_ts) / 1000  # type: ignore[union-attr]
    inside_us = (event.send_ts - event.recv_ts) / 1000  # type: ignore[union-attr]
    lat = f"hop {hop_us:7.1f}us sender {inside_us:6.1f}us"
    if type(event) is Bbo:
        return (
            f"BBO   {event.symbol:<9} {event.bid:>12.2f} x {event.bid_qty:<9.4f} | "
            f"{event.ask:>12.2f} x {event.ask_qty:<9.4f} u={event.update_id} {lat}"
        )
    assert type(event) is Trade
    return (
        f"TRADE {event.symbol:<9} {event.side:<4} {event.qty:.4f} @ {event.price:.2f} "
        f"id={event.trade_id} {lat}"
    )


class Monitor:
    def __init__(self, config: ReceiverConfig, max_lines_per_s: float) -> None:
        self.receiver = RelayReceiver(
            config.listen_host, config.listen_port, config.ssl_context(), self._on_event,
            idle_timeout_s=config.idle_timeout_s,
        )  # fmt: skip
        self.receiver.bind()  # a port in use ends start-up at once, with one line (ListenError)
        self.max_lines_per_s = max_lines_per_s
        self._budget = max_lines_per_s
        self._last = time.monotonic()

    def _on_event(self, event: RelayEvent) -> None:
        now = time.monotonic()
        self._budget = min(self.max_lines_per_s, self._budget + (now - self._last) * self.max_lines_per_s)
        self._last = now
        if self._budget >= 1 or type(event) is Notice:
            self._budget -= 1
            print(describe(event), flush=True)

    async def run(self, stop: asyncio.Event) -> None:
        await self.receiver.start()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 5.0)
                except TimeoutError:
                    self._summary()
        finally:
            self._summary()
            await self.receiver.close()

    def _summary(self) -> None:
        s = self.receiver.stats
        p50, p99, p999 = self.receiver.hop_latency.percentiles_us(50, 99, 99.9)
        log.info(
            "received bbo=%d trades=%d notices=%d | hop p50 %.1fus p99 %.1fus p99.9 %.1fus | "
            "seq gaps %d, trade id gaps %d, dup %d, refused %d, malformed %d",
            s.bbo, s.trades, s.notices, p50, p99, p999,
            s.seq_gaps, s.trade_id_gaps, s.duplicates, s.handshake_failures, s.malformed + s.oversized,
        )  # fmt: skip


def main() -> int:
    setup_logging("relay-monitor")

    def build() -> ServiceMain:
        env = Env()
        return Monitor(ReceiverConfig.from_env(env), env.float("MONITOR_LINES_PER_S", 10.0, low=0)).run

    return run_service(build, "relay-monitor")


if __name__ == "__main__":
    raise SystemExit(main())
