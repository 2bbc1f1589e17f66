"""data-collector service: relay receiver + Polymarket market feed -> Lake -> S3.

systemd: READY=1 once the receiver listens and the lake has recovered what an earlier run left;
WATCHDOG=1 only while every source is live (Binance events, Polymarket messages, lake flushes);
STATUS= with per-source rates, rows pending, files waiting for S3 and the last upload.
Shutdown (SIGTERM): stop the sources first, then flush and compact everything to Parquet, then
give S3 one last upload attempt until STOP_TIMEOUT_SECS after the signal (below the unit's
TimeoutStopSec); what does not make it stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

from polymm.collector.binance_sink import BinanceSink
from polymm.collector.config import CollectorConfig, S3Target
from polymm.collector.polymarket_sink import PolymarketSink
from polymm.collector.resume import last_trade_ids
from polymm.lake import DiskWatch, Lake, S3Uploader
from polymm.lake.s3check import S3AccessError, check_bucket
from polymm.lake.uploader import normalise_prefix
from polymm.polymarket.gamma import GammaDiscovery
from polymm.polymarket.market_ws import MarketFeed
from polymm.relay.receiver import RelayReceiver
from polymm.service.backoff import sleep_or_stop
from polymm.service.config import ConfigError
from polymm.service.logs import setup_logging
from polymm.service.runtime import ServiceMain, run_service
from polymm.service.startup import StorageError, storage_error
from polymm.service.systemd import Notifier, watchdog_interval_s

log = logging.getLogger("polymm.collector")

S3_CHECK_TIMEOUT_S = 5.0  # per connect / read of the start-up probe (TimeoutStartSec is 60 s)
HANGUP_WAIT_S = 2.0  # for senders to acknowledge our TLS close during shutdown


class DataCollector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error("DATA_DIR", config.data_dir, exc) from None
        self.disk = DiskWatch(config.data_dir)
        self.uploader = S3Uploader(
            config.data_dir, config.s3.bucket, config.s3.region, endpoint_url=config.s3.endpoint_url,
            prefix=config.s3.prefix, retention_s=config.retention_s, interval_s=config.upload_interval_s,
        )  # fmt: skip
        try:
            self.lake = Lake(
                config.data_dir,
                flush_interval_s=config.flush_interval_s,
                disk=self.disk,
                on_compacted=self.uploader.kick,
            )
        except OSError as exc:  # e.g. a DATA_DIR owned by another user
            raise storage_error("DATA_DIR", config.data_dir, exc, "cannot use") from None
        except sqlite3.Error as exc:  # lake.db unreadable or not writable
            raise StorageError(f"DATA_DIR={str(config.data_dir)!r}: cannot use lake.db ({exc})") from None
        self.binance = BinanceSink(self.lake)
        rc = config.receiver
        # Acknowledge relay frames only once they are in a journal on disk: after a crash the
        # sender replays whatever we had not made durable (duplicates are dropped by trade id).
        self.receiver = RelayReceiver(
            rc.listen_host, rc.listen_port, rc.ssl_context(), self.binance, idle_timeout_s=rc.idle_timeout_s,
            ack_gate=lambda: self.lake.durable_mark,
        )  # fmt: skip
        self.lake.delivery_counter = lambda: self.receiver.delivered
        self.receiver.bind()  # a port in use ends start-up here, before anything runs (ListenError)
        self.polymarket = PolymarketSink(self.lake, config.l2_depth)
        self.feed = MarketFeed(
            config.polymarket_tokens,
            url=config.polymarket_ws_url,
            on_book=self.polymarket.on_book,
            on_trade=self.polymarket.on_trade,
            on_event=self.polymarket.on_event,
        )
        self.discovery = (
            GammaDiscovery(
                config.gamma_url,
                slug_prefixes=config.discovery_slugs or None,
                tag_id=config.discovery_tag,
                interval_s=config.discovery_interval_s,
                on_tokens=self._on_discovered,
            )
            if config.discovery
            else None
        )
        self.notifier = Notifier()

    def _on_discovered(self, added: set[str], removed: set[str]) -> None:
        fixed = set(self.config.polymarket_tokens)
        removed = removed - fixed  # configured tokens stay subscribed whatever Gamma says
        if added:
            log.info("discovery: subscribing %d new tokens", len(added))
            self.feed.subscribe(sorted(added))
        if removed:
            log.info("discovery: unsubscribing %d tokens of closed markets", len(removed))
            self.feed.unsubscribe(sorted(removed))
        for token in added:
            self.lake.event("polymarket", "subscribe", token, {"via": "discovery"})
        for token in removed:
            self.lake.event("polymarket", "unsubscribe", token, {"via": "discovery"})

    def live(self) -> dict[str, bool]:
        stale = self.config.source_stale_s
        last_flush = self.lake.stats.last_flush_ns
        flush_age = (time.time_ns() - last_flush) / 1e9 if last_flush else float("inf")
        return {
            "binance": self.binance.age_s() < stale,
            "polymarket": self.feed.connected and self.feed.last_message_age() < stale,
            "lake": flush_age < max(10.0, 10 * self.config.flush_interval_s),
        }

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config
        log.info(
            "data-collector starting: data_dir=%s s3://%s/%s (%s) tokens=%d discovery=%s",
            c.data_dir, c.s3.bucket, c.s3.prefix, c.s3.region, len(c.polymarket_tokens), c.discovery,
        )  # fmt: skip
        sources_stop, storage_stop = asyncio.Event(), asyncio.Event()
        # Recover the earlier runs' journals first: then lake.db holds the last trade id ever
        # stored per symbol, which tells the receiver which of the sender's replays to drop.
        await self.lake.recover()
        try:
            last_ids = await asyncio.to_thread(last_trade_ids, self.lake.state)
        except Exception:  # replays may then be stored twice (same trade_id): worse is losing data
            log.exception("could not read the last stored trade ids; replayed trades may repeat")
            last_ids = {}
        self.receiver.seed_trade_ids(last_ids)
        for (symbol, is_agg), tid in last_ids.items():
            log.info("resuming %s %s after trade id %d", symbol, "aggTrades" if is_agg else "trades", tid)
        storage = [
            asyncio.create_task(self.lake.run(storage_stop)),
            asyncio.create_task(self.uploader.run(storage_stop)),
            asyncio.create_task(self.disk.run(storage_stop)),
        ]
        await self.receiver.start()
        sources = [asyncio.create_task(self.feed.run(sources_stop))]
        if self.discovery is not None:
            sources.append(asyncio.create_task(self.discovery.run(sources_stop)))
        reporter = asyncio.create_task(self._report(stop))
        self.notifier.ready("starting")
        try:
            await stop.wait()
        finally:
            self.notifier.stopping()
            stop_deadline = time.monotonic() + self.config.stop_timeout_s
            log.info("stopping: closing sources, then flushing and compacting")
            sources_stop.set()
            # Take no more frames, make what arrived durable, acknowledge it, then hang up: the
            # sender keeps (and replays to the next run) only what was not persisted.
            self.receiver.pause()
            with contextlib.suppress(Exception):
                await self.lake.flush()
            await self.receiver.close(final_ack=True)
            await asyncio.gather(*sources, return_exceptions=True)
            # Each hang-up records a relay_disconnected event once its TLS close completes: wait
            # for them before the lake's final flush, so a clean stop loses nothing.
            await self._senders_gone(HANGUP_WAIT_S)
            reporter.cancel()
            storage_stop.set()
            await asyncio.gather(*storage, return_exceptions=True)
            # Whatever S3 does, the process ends before systemd's stop timeout; files that did
            # not make it stay on disk and in lake.db for the next start.
            with contextlib.suppress(Exception):
                await self.uploader.final_upload(max(0.5, stop_deadline - time.monotonic()))
            log.info("data-collector stopped: %s", self._status_text(0, 0, 0))

    async def _senders_gone(self, timeout_s: float) -> None:
        # polled: the receiver (relay/) offers no event for "last connection gone"
        for _ in range(int(timeout_s / 0.01)):
            if not self.receiver.connected_senders:
                return
            await asyncio.sleep(0.01)
        if self.receiver.connected_senders:
            log.warning("%d senders still connected after %.0fs; their disconnect events may be lost",
                        self.receiver.connected_senders, timeout_s)  # fmt: skip

    async def _report(self, stop: asyncio.Event) -> None:
        interval = max(0.2, min(5.0, watchdog_interval_s(2.0)))
        last = time.monotonic()
        last_bbo = last_trades = last_pm = 0
        last_log = last
        while not await sleep_or_stop(stop, interval):
            now = time.monotonic()
            dt = max(now - last, 1e-9)
            pm = self.polymarket.messages
            text = self._status_text(
                (self.binance.bbo - last_bbo) / dt,
                (self.binance.trades - last_trades) / dt,
                (pm - last_pm) / dt,
            )
            last, last_bbo, last_trades, last_pm = now, self.binance.bbo, self.binance.trades, pm
            if all(self.live().values()):
                self.notifier.watchdog()
            self.notifier.status(text)
            if now - last_log >= self.config.status_log_s:
                last_log = now
                log.info("status: %s", text)

    def _status_text(self, bbo_rate: float, trade_rate: float, pm_rate: float) -> str:
        live = self.live()
        down = [name for name, ok in live.items() if not ok]
        up = self.uploader.stats
        last_upload = (
            time.strftime("%H:%M:%S", time.gmtime(up.last_upload_ns / 1e9)) if up.last_upload_ns else "never"
        )
        return (
            f"binance {bbo_rate:.0f} bbo/s {trade_rate:.0f} trades/s, polymarket {pm_rate:.0f} msg/s "
            f"({len(self.feed.tokens)} tokens), rows pending {self.lake.rows_pending}, "
            f"S3 pending {up.files_pending} files, last upload {last_upload}, disk {self.disk.used_pct:.0f}%"
            + (f", NOT LIVE: {','.join(down)}" if down else "")
        )


def check_s3(target: S3Target) -> None:
    """Before anything runs: a bucket or credentials S3 refuses stop start-up (ConfigError, exit 2);
    an S3 that does not answer only gets a warning (the uploader buffers and retries)."""
    try:
        check_bucket(target.bucket, target.region, endpoint_url=target.endpoint_url,
                     prefix=normalise_prefix(target.prefix), timeout_s=S3_CHECK_TIMEOUT_S)  # fmt: skip
    except S3AccessError as exc:
        raise ConfigError(str(exc)) from None


def main() -> int:
    setup_logging("data-collector")

    def build() -> ServiceMain:
        config = CollectorConfig.from_env()
        check_s3(config.s3)
        return DataCollector(config).run

    return run_service(build, "data-collector")


if __name__ == "__main__":
    raise SystemExit(main())
