"""binance-sender: Binance WebSocket market data -> mutual-TLS relay to Amsterdam.

systemd: READY=1 once every Binance connection is up; WATCHDOG=1 only while market data flows
(a stuck feed gets the service restarted); STATUS= with rates and buffer state.
"""

from __future__ import annotations

import asyncio
import logging
import time

from polymm.binance.client import BinanceFeed
from polymm.binance.streams import plan_connections
from polymm.relay.config import SenderConfig
from polymm.relay.link import RelayLink
from polymm.service.backoff import sleep_or_stop
from polymm.service.logs import setup_logging
from polymm.service.runtime import ServiceMain, run_service
from polymm.service.systemd import Notifier, watchdog_interval_s

log = logging.getLogger("polymm.sender")


class Sender:
    def __init__(self, config: SenderConfig) -> None:
        self.config = config
        self.link = RelayLink(
            config.ams_host,
            config.ams_port,
            config.ssl_context(),
            {
                "sender": config.sender_name,
                "market": config.market,
                "symbols": config.symbols,
                "include_trades": config.include_trades,
            },
            server_hostname=config.server_name,
            buffer_limit=config.buffer_limit,
            heartbeat_s=config.heartbeat_s,
            dead_after_s=config.dead_after_s,
        )
        plans = plan_connections(config.market, config.binance_url, config.symbols, config.include_trades)
        self.feeds = [
            BinanceFeed(
                plan,
                self.link.send,
                self.link.notice,
                stale_after_s=config.stale_after_s,
                rotate_after_s=config.rotate_after_s,
            )
            for plan in plans
        ]
        self.notifier = Notifier()

    def flowing(self) -> bool:
        """Market data is arriving on every connection."""
        return all(f.connected and f.last_message_age_s() < self.config.stale_after_s for f in self.feeds)

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        log.info(
            "binance-sender starting: %s %s trades=%s -> %s:%d (%d Binance connections)",
            c.market, ",".join(c.symbols), c.include_trades, c.ams_host, c.ams_port, len(self.feeds),
        )  # fmt: skip
        tasks = [asyncio.create_task(self.link.run(stop))]
        tasks += [asyncio.create_task(feed.run(stop)) for feed in self.feeds]
        tasks.append(asyncio.create_task(self._report(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.notifier.stopping()
            log.info("binance-sender stopped: %s", self._status_text(0.0, 0.0))

    async def _report(self, stop: asyncio.Event) -> None:
        interval = max(0.2, min(5.0, watchdog_interval_s(2.0)))
        last_t = time.monotonic()
        last_msgs = last_frames = 0
        last_log = last_t
        while not await sleep_or_stop(stop, interval):
            now = time.monotonic()
            msgs = sum(f.stats.messages for f in self.feeds)
            frames = self.link.stats.frames_sent
            dt = max(now - last_t, 1e-9)
            text = self._status_text((msgs - last_msgs) / dt, (frames - last_frames) / dt)
            last_t, last_msgs, last_frames = now, msgs, frames
            if all(f.connected for f in self.feeds):
                self.notifier.ready(text)
            if self.flowing():
                self.notifier.watchdog()
            self.notifier.status(text)
            if now - last_log >= self.config.status_log_s:
                last_log = now
                log.info("status: %s", text)

    def _status_text(self, msg_rate: float, frame_rate: float) -> str:
        up = sum(f.connected for f in self.feeds)
        s = self.link.stats
        return (
            f"binance {msg_rate:.1f} msg/s ({up}/{len(self.feeds)} conns up), "
            f"relay {'up' if self.link.connected else 'DOWN'} {frame_rate:.1f} frames/s, "
            f"held {self.link.buffered}, dropped {s.trades_dropped}, conflated {s.bbo_conflated}"
        )


def main() -> int:
    setup_logging("binance-sender")

    def build() -> ServiceMain:
        return Sender(SenderConfig.from_env()).run

    return run_service(build, "binance-sender")


if __name__ == "__main__":
    raise SystemExit(main())
