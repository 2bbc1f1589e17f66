"""`--churn`: external makers requote in turn, so the market channel stays live while the book keeps
its shape (the VM bed's market for the executor, whose stale-feed kill switch needs live data)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import websockets

from polymm.sim.clob import ClobSim, ExternalOrder, external_churn
from tests.clob.conftest import NO, YES, WsRecorder
from tests.conftest import eventually


async def test_churn_keeps_the_market_channel_live_and_the_book_unchanged(sim: ClobSim) -> None:
    levels = [("BUY", 0.48), ("BUY", 0.49), ("SELL", 0.51), ("SELL", 0.52)]
    orders = [ExternalOrder(YES, s, p, 100, sim.add_external_order(YES, s, p, 100)) for s, p in levels]
    before = sim.book(YES)
    ws = await websockets.connect(f"{sim.ws_url}/ws/market")
    await ws.send(json.dumps({"type": "market", "assets_ids": [YES, NO]}))
    rec = WsRecorder(ws)
    await eventually(lambda: len(rec.of("book")) == 2, what="book snapshots")
    first_ids = [o.order_id for o in orders]

    churn = asyncio.create_task(external_churn(sim, orders, 0.05))
    await eventually(lambda: len(rec.of("price_change")) >= 8, what="price changes from the churn")
    churn.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await churn
    await asyncio.sleep(0.2)  # a cycle in flight completes (cancel and re-place are one step each)

    assert all(o.order_id != old for o, old in zip(orders, first_ids, strict=True))  # each was replaced
    assert sim.book(YES) == before  # same prices, same sizes
    await rec.close()
