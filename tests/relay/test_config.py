"""Bad configuration stops start-up with one line that names the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from polymm.relay.config import SenderConfig
from polymm.service.config import ConfigError, Env


def env_for(certs: Path, **extra: str) -> dict[str, str]:
    return {"AMS_HOST": "127.0.0.1", "CERT_DIR": str(certs), **extra}


def test_defaults_follow_the_seed(certs: Path):
    config = SenderConfig.from_env(Env(env_for(certs)))
    assert (config.ams_port, config.symbols, config.include_trades, config.market) == (
        9001,
        ["btcusdt"],
        False,
        "spot",
    )
    assert config.binance_url == "wss://stream.binance.com:9443"
    assert config.tls_cert == certs / "client.crt"


def test_futures_default_url_and_symbol_case(certs: Path):
    config = SenderConfig.from_env(Env(env_for(certs, BINANCE_MARKET="futures", SYMBOLS="BTCUSDT, ethusdt")))
    assert config.binance_url == "wss://fstream.binance.com"
    assert config.symbols == ["btcusdt", "ethusdt"]


@pytest.mark.parametrize(
    "extra, variable",
    [
        ({"AMS_HOST": ""}, "AMS_HOST"),
        ({"AMS_PORT": "90x"}, "AMS_PORT"),
        ({"AMS_PORT": "70000"}, "AMS_PORT"),
        ({"SYMBOLS": "btcusdt,,ethusdt"}, "SYMBOLS"),
        ({"SYMBOLS": "btc-usdt"}, "SYMBOLS"),
        ({"SYMBOLS": "btcusdt,btcusdt"}, "SYMBOLS"),
        ({"INCLUDE_TRADES": "maybe"}, "INCLUDE_TRADES"),
        ({"BINANCE_MARKET": "options"}, "BINANCE_MARKET"),
        ({"BINANCE_WS_URL": "http://x"}, "BINANCE_WS_URL"),
        ({"TLS_CERT": "/nonexistent/client.crt"}, "TLS_CERT"),
        ({"HEARTBEAT_SECS": "nan"}, "HEARTBEAT_SECS"),
        ({"TRADE_BUFFER": "5"}, "TRADE_BUFFER"),
    ],
)
def test_each_bad_value_names_its_variable(certs: Path, extra: dict[str, str], variable: str):
    with pytest.raises(ConfigError, match=variable):
        SenderConfig.from_env(Env(env_for(certs, **extra)))


def test_service_exits_2_with_one_clear_line(certs: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("AMS_HOST", "NOTIFY_SOCKET")}
    env.update(env_for(certs, AMS_PORT="not-a-port"))
    proc = subprocess.run(
        [sys.executable, "-m", "polymm.relay.sender"], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["config error: AMS_PORT='not-a-port' is not an integer"]
