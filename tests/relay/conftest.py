from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from polymm.relay import tls
from polymm.relay.config import SenderConfig
from polymm.relay.events import Bbo, Notice, RelayEvent, Trade
from polymm.relay.receiver import RelayReceiver
from polymm.relay.sender import Sender
from polymm.service.config import Env
from polymm.sim.binance_ws import BinanceSim
from tests.conftest import running


class Inbox(list[RelayEvent]):
    """What a receiver handed to its consumer, with filters for assertions."""

    def bbo(self, symbol: str | None = None) -> list[Bbo]:
        return [e for e in self if type(e) is Bbo and (symbol is None or e.symbol == symbol)]

    def trades(self, symbol: str | None = None) -> list[Trade]:
        return [e for e in self if type(e) is Trade and (symbol is None or e.symbol == symbol)]

    def notices(self, event: str | None = None) -> list[Notice]:
        return [e for e in self if type(e) is Notice and (event is None or e.event == event)]


def make_receiver(certs: Path, port: int = 0, **kwargs: float) -> tuple[RelayReceiver, Inbox]:
    inbox = Inbox()
    context = tls.server_context(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    kwargs.setdefault("idle_timeout_s", 2.0)
    return RelayReceiver("127.0.0.1", port, context, inbox.append, **kwargs), inbox


@pytest.fixture
async def receiver(certs: Path) -> AsyncIterator[tuple[RelayReceiver, Inbox]]:
    rx, inbox = make_receiver(certs)
    await rx.start()
    yield rx, inbox
    await rx.close()


@pytest.fixture
async def binance() -> AsyncIterator[BinanceSim]:
    async with BinanceSim(rate_hz=0) as sim:
        yield sim


def sender_config(certs: Path, port: int, sim: BinanceSim, **extra: str) -> SenderConfig:
    env = {
        "AMS_HOST": "127.0.0.1",
        "AMS_PORT": str(port),
        "CERT_DIR": str(certs),
        "BINANCE_WS_URL": sim.url,
        "BINANCE_MARKET": sim.market,
        "SYMBOLS": "btcusdt,ethusdt",
        "INCLUDE_TRADES": "true",
        "SENDER_NAME": "test-sender",
        "HEARTBEAT_SECS": "0.2",
        "LINK_DEAD_SECS": "1.5",
        "BINANCE_STALE_SECS": "30",
        **extra,
    }
    return SenderConfig.from_env(Env(env))


@asynccontextmanager
async def running_sender(config: SenderConfig) -> AsyncIterator[Sender]:
    sender = Sender(config)
    async with running(sender.run, 10):
        yield sender
