"""Executor test helpers: throwaway keys and market specs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account

from polymm.executor.types import MarketSpec
from polymm.sim.clob import ClobSim

TOKEN_UP = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
TOKEN_DOWN = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
CONDITION = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"


@pytest.fixture
def private_key() -> str:
    return "0x" + Account.create().key.hex().removeprefix("0x")


@pytest.fixture
def market() -> MarketSpec:
    return MarketSpec(CONDITION, (TOKEN_UP, TOKEN_DOWN), end_ts_s=0.0, tick_size="0.01")


# A market on the local CLOB for the service-level tests.
COND = "0x" + "5f" * 32
YES, NO = "7" * 76, "8" * 76


@pytest.fixture
def clob() -> Iterator[ClobSim]:
    sim = ClobSim(heartbeat_timeout_s=3.0, trade_confirm_delay_s=0.05)
    sim.add_market(COND, YES, NO, tick_size=0.01, min_size=5)
    sim.add_external_order(YES, "BUY", 0.20, 100)  # outside liquidity, far from our quotes
    sim.add_external_order(YES, "SELL", 0.80, 100)
    sim.start_in_thread()
    yield sim
    sim.stop_thread()
