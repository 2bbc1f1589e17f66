"""User channel against a local websockets server: auth frame, PING, events, malformed frames, reconnect."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve

from polymm.executor.user_ws import OrderEvent, TradeEvent, UserChannel

from ..conftest import eventually

ORDER = {
    "event_type": "order",
    "type": "PLACEMENT",
    "id": "0xo1",
    "market": "0xc",
    "asset_id": "1",
    "side": "BUY",
    "price": "0.45",
    "original_size": "10",
    "size_matched": "0",
    "status": "LIVE",
}
TRADE = {
    "event_type": "trade",
    "id": "t1",
    "status": "MATCHED",
    "market": "0xc",
    "asset_id": "1",
    "side": "SELL",
    "price": "0.45",
    "size": "4",
    "taker_order_id": "0xt",
    "trader_side": "MAKER",
    "maker_orders": [
        {
            "order_id": "0xo1",
            "owner": "k",
            "matched_amount": "4",
            "price": "0.45",
            "asset_id": "1",
            "side": "BUY",
        }
    ],
}


async def test_subscribe_events_malformed_and_reconnect() -> None:
    firsts: list[dict[str, object]] = []
    pings = 0
    conns: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        nonlocal pings
        conns.append(ws)
        firsts.append(json.loads(await ws.recv()))
        await ws.send(json.dumps([ORDER, TRADE]))
        await ws.send("{not json")
        await ws.send(json.dumps({"event_type": "trade"}))  # no id: malformed
        await ws.send(json.dumps({"event_type": "something_else"}))
        async for msg in ws:
            if msg == "PING":
                pings += 1
                await ws.send("PONG")

    orders: list[OrderEvent] = []
    trades: list[TradeEvent] = []
    states: list[str] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ch = UserChannel(
            f"ws://127.0.0.1:{port}/ws/user",
            lambda: {"apiKey": "k", "secret": "s", "passphrase": "p"},
            ["0xc"],
            on_order=orders.append,
            on_trade=trades.append,
            on_connect=lambda: states.append("up"),
            on_disconnect=lambda: states.append("down"),
            ping_interval_s=0.05,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(ch.run(stop))
        await eventually(lambda: len(trades) == 1 and ch.malformed == 2, 5, "events")
        assert firsts[0] == {
            "type": "user",
            "auth": {"apiKey": "k", "secret": "s", "passphrase": "p"},
            "markets": ["0xc"],
        }
        assert orders[0].order_id == "0xo1" and orders[0].price == 0.45
        assert trades[0].maker_orders[0].matched_amount == 4.0
        await eventually(lambda: pings >= 2, 5, "pings")
        await conns[0].close()  # server drops us: we reconnect and resubscribe
        await eventually(lambda: ch.connects == 2 and ch.connected, 5, "reconnect")
        assert states[:3] == ["up", "down", "up"] and len(firsts) == 2
        stop.set()
        await asyncio.wait_for(task, 5)
        assert states[-1] == "down"
