"""trading-executor configuration from the environment (seed names POLY_PRIVATE_KEY, POLY_FUNDER).

Secrets (private key, API secret and passphrase) come from an EnvironmentFile of mode 0600 pushed
from Ansible Vault. Error messages name the variable but never echo a secret's value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from polymm.executor.overlap import OverlapMode
from polymm.executor.risk import RiskLimits
from polymm.relay.config import ReceiverConfig
from polymm.service.config import ConfigError, Env

log = logging.getLogger("polymm.executor.config")

CLOB_URL = "https://clob.polymarket.com"
CLOB_WS_URL = "wss://ws-subscriptions-clob.polymarket.com"
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class ExecutorServiceConfig:
    receiver: ReceiverConfig
    markets_path: Path
    clob_url: str
    ws_url: str  # base of /ws/market and /ws/user
    chain_id: int
    private_key: str = field(repr=False)
    signature_type: int
    funder: str | None
    api_key: str
    api_secret: str = field(repr=False)
    api_passphrase: str = field(repr=False)
    dry_run: bool
    journal_dir: Path
    limits: RiskLimits
    timer_s: float
    status_log_s: float
    overlap_posts: OverlapMode = OverlapMode.NEVER

    @classmethod
    def from_env(cls, env: Env | None = None, *, need_receiver: bool = True) -> ExecutorServiceConfig:
        env = env or Env()
        dry_run = env.bool("DRY_RUN", True)
        key = env.str("POLY_PRIVATE_KEY", "")
        if not key:
            if not dry_run:
                raise ConfigError("POLY_PRIVATE_KEY is required when DRY_RUN=false")
            from eth_account import Account

            key = Account.create().key.hex()  # dry run: sign with a throwaway key, send nothing
            log.warning("POLY_PRIVATE_KEY not set: DRY_RUN signs with a throwaway key")
        elif not _KEY.match(key):
            raise ConfigError("POLY_PRIVATE_KEY is not a 32-byte hex key")
        funder = env.str("POLY_FUNDER", "") or None
        if funder is not None and not _ADDRESS.match(funder):
            raise ConfigError(f"POLY_FUNDER={funder!r} is not a 0x address")
        creds = [env.str(n, "") for n in ("POLY_API_KEY", "POLY_API_SECRET", "POLY_API_PASSPHRASE")]
        if any(creds) and not all(creds):
            raise ConfigError("POLY_API_KEY, POLY_API_SECRET and POLY_API_PASSPHRASE must be set together")
        clob_url = env.str("CLOB_URL", CLOB_URL).rstrip("/")
        if not clob_url.startswith(("http://", "https://")):
            raise ConfigError(f"CLOB_URL={clob_url!r} must start with http:// or https://")
        ws_url = env.str("CLOB_WS_URL", CLOB_WS_URL).rstrip("/")
        if not ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"CLOB_WS_URL={ws_url!r} must start with ws:// or wss://")
        limits = risk_limits_from_env(env)
        return cls(
            receiver=ReceiverConfig.from_env(env) if need_receiver else None,  # type: ignore[arg-type]
            markets_path=env.readable_file("MARKETS_CONFIG", "/config/markets.toml"),
            clob_url=clob_url,
            ws_url=ws_url,
            chain_id=env.int("CHAIN_ID", 137, low=1),
            private_key=key,
            signature_type=env.int("POLY_SIGNATURE_TYPE", 0, low=0, high=3),
            funder=funder,
            api_key=creds[0],
            api_secret=creds[1],
            api_passphrase=creds[2],
            dry_run=dry_run,
            journal_dir=Path(env.str("JOURNAL_DIR", "/var/lib/trading-executor/journal")),
            limits=limits,
            timer_s=env.float("STRATEGY_TIMER_SECS", 0.25, low=0.01, high=60),
            status_log_s=env.float("STATUS_LOG_SECS", 60.0, low=1, high=3600),
            # auto: a replacement's posts go out with its cancel where the hard limits allow old
            # and new to rest together (docs/overlap.md); never: always wait for the cancel.
            overlap_posts=OverlapMode(
                env.choice("OVERLAP_POSTS", OverlapMode.NEVER.value, tuple(m.value for m in OverlapMode))
            ),
        )


def risk_limits_from_env(env: Env) -> RiskLimits:
    """The hard limits and kill-switch thresholds from the executor's variables (the backtester
    reads the same ones, so a backtest runs under the limits the service would)."""
    return RiskLimits(
        max_position_per_token=env.float("MAX_POSITION_PER_TOKEN", 500.0, low=0),
        max_position_per_market=env.float("MAX_POSITION_PER_MARKET", 1000.0, low=0),
        max_open_orders=env.int("MAX_OPEN_ORDERS", 40, low=0, high=10_000),
        max_notional=env.float("MAX_NOTIONAL", 2000.0, low=0),
        max_orders_per_s=env.int("MAX_ORDERS_PER_SEC", 30, low=1, high=1000),
        binance_stale_ms=env.float("BINANCE_STALE_MS", 500.0, low=10, high=600_000),
        poly_feed_stale_ms=env.float("POLY_FEED_STALE_MS", 5000.0, low=100, high=600_000),
        stop_before_expiry_s=env.float("STOP_BEFORE_EXPIRY_SECS", 30.0, low=0),
    )
