"""data-collector configuration, with the seed's variable names (S3_BUCKET, S3_REGION, POLYMARKET_TOKENS)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from polymm.relay.config import ReceiverConfig
from polymm.service.config import ConfigError, Env

POLYMARKET_WS_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
GAMMA_URL = "https://gamma-api.polymarket.com"


class S3Target(msgspec.Struct, frozen=True):
    """Where the lake goes: data-collector's and polymm-lake-salvage's S3 settings."""

    bucket: str
    region: str
    endpoint_url: str | None
    prefix: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> S3Target:
        env = env or Env()
        endpoint = env.str("S3_ENDPOINT_URL", "") or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"S3_ENDPOINT_URL={endpoint!r} must start with http:// or https://")
        return cls(
            bucket=env.str("S3_BUCKET"),
            region=env.str("S3_REGION", "eu-central-1"),
            endpoint_url=endpoint,
            prefix=env.str("S3_PREFIX", ""),
        )


class CollectorConfig(msgspec.Struct, frozen=True):
    receiver: ReceiverConfig
    data_dir: Path
    s3: S3Target
    flush_interval_s: float
    upload_interval_s: float
    retention_s: float
    polymarket_tokens: list[str]
    polymarket_ws_url: str
    gamma_url: str
    discovery_slugs: list[str]
    discovery_tag: str | None
    discovery_interval_s: float
    l2_depth: int
    source_stale_s: float
    status_log_s: float
    stop_timeout_s: float  # SIGTERM -> exit, whatever S3 does; below the unit's TimeoutStopSec (45 s)

    @property
    def discovery(self) -> bool:
        return bool(self.discovery_slugs or self.discovery_tag)

    @classmethod
    def from_env(cls, env: Env | None = None) -> CollectorConfig:
        env = env or Env()
        tokens = env.list("POLYMARKET_TOKENS", [])
        slugs = env.list("DISCOVERY_SLUGS", [])
        tag = env.str("DISCOVERY_TAG", "") or None
        if not tokens and not slugs and not tag:
            raise ConfigError("POLYMARKET_TOKENS is empty and no DISCOVERY_SLUGS/DISCOVERY_TAG is set")
        for token in tokens:
            if not token.isdigit():
                raise ConfigError(f"POLYMARKET_TOKENS has {token!r}, which is not a numeric token id")
        ws_url = env.str("POLYMARKET_WS_URL", POLYMARKET_WS_URL)
        if not ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"POLYMARKET_WS_URL={ws_url!r} must start with ws:// or wss://")
        gamma = env.str("GAMMA_URL", GAMMA_URL)
        if not gamma.startswith(("http://", "https://")):
            raise ConfigError(f"GAMMA_URL={gamma!r} must start with http:// or https://")
        s3 = S3Target.from_env(env)
        data_dir = Path(env.str("DATA_DIR", "/data"))
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"DATA_DIR={str(data_dir)!r} is not a directory")
        return cls(
            receiver=ReceiverConfig.from_env(env),
            data_dir=data_dir,
            s3=s3,
            flush_interval_s=env.float("FLUSH_INTERVAL_SECS", 1.0, low=0.05, high=60),
            upload_interval_s=env.float("UPLOAD_INTERVAL_SECS", 3600.0, low=1, high=86400),
            retention_s=env.float("RETENTION_SECS", 86400.0, low=0, high=90 * 86400),
            polymarket_tokens=tokens,
            polymarket_ws_url=ws_url,
            gamma_url=gamma,
            discovery_slugs=slugs,
            discovery_tag=tag,
            discovery_interval_s=env.float("DISCOVERY_INTERVAL_SECS", 60.0, low=1, high=3600),
            l2_depth=env.int("L2_DEPTH", 50, low=1, high=10_000),
            source_stale_s=env.float("SOURCE_STALE_SECS", 30.0, low=0.5, high=3600),
            status_log_s=env.float("STATUS_LOG_SECS", 60.0, low=1, high=3600),
            stop_timeout_s=env.float("STOP_TIMEOUT_SECS", 35.0, low=1, high=3600),
        )
