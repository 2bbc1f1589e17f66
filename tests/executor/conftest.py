"""Executor test helpers: throwaway keys and market specs."""

from __future__ import annotations

import pytest
from eth_account import Account

from polymm.executor.types import MarketSpec

TOKEN_UP = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
TOKEN_DOWN = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
CONDITION = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"


@pytest.fixture
def private_key() -> str:
    return "0x" + Account.create().key.hex().removeprefix("0x")


@pytest.fixture
def market() -> MarketSpec:
    return MarketSpec(CONDITION, (TOKEN_UP, TOKEN_DOWN), end_ts_s=0.0, tick_size="0.01")
