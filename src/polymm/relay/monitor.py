"""relay-monitor: a receiver that prints what arrives, with per-hop latency (demo and debugging).

Each line: arrival time (UTC, ms), the event, and its two hops: `sender` (Binance receipt ->
written to the relay, on the sender's clock) and `relay` (written -> decoded here, across hosts).
Quotes and trades each get their own line budget (MONITOR_LINES_PER_S each), so a busy quote
stream never hides the trades, and their own latency percentiles in the periodic summary."""

from __future__ import annotations

import asyncio
import logging
import time

from polymm.relay.config import ReceiverConfig
from polymm.relay.events import Bbo, Notice, RelayEvent, Trade
from polymm.relay.receiver import RelayReceiver
from polymm.service.config import Env
from polymm.service.logs import setup_logging, utc_ms
from polymm.service.metrics import LatencyWindow
from polymm.service.runtime import ServiceMain, run_service

log = logging.getLogger("polymm.monitor")


def describe(event: RelayEvent) -> str:
    if type(event) is Notice:
        return f"{utc_ms(event.arrival_ts or event.ts)} NOTICE {event.event} {event.detail}"
    relay_us = (event.arrival_ts - event.send_ts) / 1000  # type: ignore[union-attr]
    sender_us = (event.send_ts - event.recv_ts) / 1000  # type: ignore[union-attr]
    lat = f"sender {sender_us:6.1f}us relay {relay_us:7.1f}us"
    at = utc_ms(event.arrival_ts)  # type: ignore[union-attr]
    if type(event) is Bbo:
        return (
            f"{at} BBO   {event.symbol:<9} {event.bid:>12.2f} x {event.bid_qty:<9.4f} | "
            f"{event.ask:>12.2f} x {event.ask_qty:<9.4f} u={event.update_id} {lat}"
        )
    assert type(event) is Trade
    return (
        f"{at} TRADE {event.symbol:<9} {event.side:<4} {event.qty:.4f} @ {event.price:.2f} "
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
        now = time.monotonic()
        self._budget = {Bbo: [max_lines_per_s, now], Trade: [max_lines_per_s, now]}  # tokens, last refill
        self.relay_latency = {Bbo: LatencyWindow(), Trade: LatencyWindow()}  # sender write -> here

    def _on_event(self, event: RelayEvent) -> None:
        kind = type(event)
        if kind is Notice:
            print(describe(event), flush=True)
            return
        self.relay_latency[kind].add(event.arrival_ts - event.send_ts)  # type: ignore[union-attr]
        budget = self._budget[kind]
        now = time.monotonic()
        budget[0] = min(self.max_lines_per_s, budget[0] + (now - budget[1]) * self.max_lines_per_s)
        budget[1] = now
        if budget[0] >= 1:
            budget[0] -= 1
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
        bbo50, bbo99 = self.relay_latency[Bbo].percentiles_us(50, 99)
        trade50, trade99 = self.relay_latency[Trade].percentiles_us(50, 99)
        log.info(
            "received bbo=%d trades=%d notices=%d | relay hop: bbo p50 %.1fus p99 %.1fus, "
            "trades p50 %.1fus p99 %.1fus | seq gaps %d, trade id gaps %d, dup %d, refused %d, malformed %d",
            s.bbo, s.trades, s.notices, bbo50, bbo99, trade50, trade99,
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
