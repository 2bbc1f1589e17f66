"""Fixtures: a ClobSim in its own thread, a throwaway wallet, and a real ClobClient with L2 creds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from py_clob_client_v2 import ClobClient
from websockets.asyncio.client import ClientConnection

from polymm.sim.clob import ClobSim

COND = "0x" + "ab" * 32
YES = "7" * 76
NO = "8" * 76
NR_COND = "0x" + "cd" * 32  # neg-risk market with a 0.001 tick
NR_YES = "3" * 76
NR_NO = "4" * 76


@pytest.fixture
def sim() -> Iterator[ClobSim]:
    s = ClobSim(heartbeat_timeout_s=1.0, trade_confirm_delay_s=0.05, page_size=100)
    s.add_market(COND, YES, NO, tick_size=0.01, min_size=5)
    s.add_market(NR_COND, NR_YES, NR_NO, tick_size=0.001, neg_risk=True, min_size=5)
    s.start_in_thread()
    yield s
    s.stop_thread()


@pytest.fixture
def account() -> LocalAccount:
    return Account.create()


def make_client(sim: ClobSim, account: LocalAccount) -> ClobClient:
    client = ClobClient(sim.url, chain_id=137, key=account.key.hex())
    client.set_api_creds(client.create_or_derive_api_key())
    return client


@pytest.fixture
def client(sim: ClobSim, account: LocalAccount) -> ClobClient:
    return make_client(sim, account)


class WsRecorder:
    """Reads a WebSocket in the background; `events` holds every decoded event (arrays flattened)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for raw in self.ws:
            text = raw if isinstance(raw, str) else raw.decode()
            try:
                msg = json.loads(text)
            except ValueError:
                self.texts.append(text)
                continue
            self.events.extend(msg if isinstance(msg, list) else [msg])

    def of(self, event_type: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event_type") == event_type and all(e.get(k) == v for k, v in match.items())
        ]

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
