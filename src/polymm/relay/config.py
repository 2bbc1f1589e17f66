"""Environment configuration of the relay's two ends, with the seed's variable names."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import msgspec

from polymm.binance.streams import default_url, valid_symbol
from polymm.relay import tls
from polymm.service.config import ConfigError, Env


class SenderConfig(msgspec.Struct, frozen=True):
    ams_host: str
    ams_port: int
    symbols: list[str]
    include_trades: bool
    market: str
    binance_url: str
    tls_ca: Path
    tls_cert: Path
    tls_key: Path
    server_name: str
    sender_name: str
    buffer_limit: int
    heartbeat_s: float
    dead_after_s: float
    stale_after_s: float
    rotate_after_s: float
    status_log_s: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> SenderConfig:
        env = env or Env()
        symbols = [s.lower() for s in env.list("SYMBOLS", ["btcusdt"])]
        for symbol in symbols:
            if not valid_symbol(symbol):
                raise ConfigError(f"SYMBOLS has an invalid symbol {symbol!r} (expected e.g. btcusdt)")
        if len(set(symbols)) != len(symbols):
            raise ConfigError("SYMBOLS lists a symbol twice")
        market = env.choice("BINANCE_MARKET", "spot", ("spot", "futures"))
        url = env.str("BINANCE_WS_URL", default_url(market))
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"BINANCE_WS_URL={url!r} must start with ws:// or wss://")
        cert_dir = env.str("CERT_DIR", "/certs")
        host = env.str("AMS_HOST")
        return cls(
            ams_host=host,
            ams_port=env.int("AMS_PORT", 9001, low=1, high=65535),
            symbols=symbols,
            include_trades=env.bool("INCLUDE_TRADES", False),
            market=market,
            binance_url=url,
            tls_ca=env.readable_file("TLS_CA", f"{cert_dir}/ca.crt"),
            tls_cert=env.readable_file("TLS_CERT", f"{cert_dir}/client.crt"),
            tls_key=env.readable_file("TLS_KEY", f"{cert_dir}/client.key"),
            server_name=env.str("TLS_SERVER_NAME", host),
            sender_name=env.str("SENDER_NAME", socket.gethostname()),
            buffer_limit=env.int("TRADE_BUFFER", 100_000, low=100, high=10_000_000),
            heartbeat_s=env.float("HEARTBEAT_SECS", 1.0, low=0.05, high=30),
            dead_after_s=env.float("LINK_DEAD_SECS", 5.0, low=0.2, high=120),
            stale_after_s=env.float("BINANCE_STALE_SECS", 10.0, low=0.5, high=600),
            rotate_after_s=env.float("BINANCE_ROTATE_SECS", 23 * 3600 + 50 * 60, low=10, high=24 * 3600),
            status_log_s=env.float("STATUS_LOG_SECS", 60.0, low=1, high=3600),
        )

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return tls.client_context(self.tls_ca, self.tls_cert, self.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"TLS_CERT/TLS_KEY/TLS_CA unusable: {exc}") from None


class ReceiverConfig(msgspec.Struct, frozen=True):
    listen_host: str
    listen_port: int
    tls_ca: Path
    tls_cert: Path
    tls_key: Path
    idle_timeout_s: float

    @classmethod
    def from_env(cls, env: Env | None = None) -> ReceiverConfig:
        env = env or Env()
        cert_dir = env.str("CERT_DIR", "/certs")
        return cls(
            listen_host=env.str("LISTEN_HOST", "0.0.0.0"),
            listen_port=env.int("LISTEN_PORT", 9001, low=0, high=65535),
            tls_ca=env.readable_file("TLS_CA", f"{cert_dir}/ca.crt"),
            tls_cert=env.readable_file("TLS_CERT", f"{cert_dir}/server.crt"),
            tls_key=env.readable_file("TLS_KEY", f"{cert_dir}/server.key"),
            idle_timeout_s=env.float("LINK_DEAD_SECS", 5.0, low=0.2, high=120),
        )

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return tls.server_context(self.tls_ca, self.tls_cert, self.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"TLS_CERT/TLS_KEY/TLS_CA unusable: {exc}") from None
