"""Market and user channels, with fills driven by external takers."""

from __future__ import annotations

import asyncio
import json

import websockets
from py_clob_client_v2 import ClobClient, OrderArgs
from py_clob_client_v2.clob_types import OrderPayload

from polymm.sim.clob import ClobSim
from tests.clob.conftest import COND, NO, YES, WsRecorder
from tests.conftest import eventually


async def user_channel(sim: ClobSim, client: ClobClient, markets: list[str] | None = None) -> WsRecorder:
    ws = await websockets.connect(f"{sim.ws_url}/ws/user")
    creds = client.creds
    first = {
        "type": "user",
        "auth": {"apiKey": creds.api_key, "secret": creds.api_secret, "passphrase": creds.api_passphrase},
    }
    if markets is not None:
        first["markets"] = markets
    await ws.send(json.dumps(first))
    rec = WsRecorder(ws)
    await ws.send("PING")
    await eventually(lambda: "PONG" in rec.texts, what="PONG")  # also: the auth frame was processed
    return rec


async def test_external_take_fills_our_order_with_user_events(sim: ClobSim, client: ClobClient) -> None:
    rec = await user_channel(sim, client, [COND])
    resp = await asyncio.to_thread(
        client.post_order, client.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
    )
    oid = resp["orderID"]
    await eventually(lambda: rec.of("order", type="PLACEMENT", id=oid), what="PLACEMENT")
    assert rec.of("order", id=oid)[0]["status"] == "LIVE"
    assert rec.of("order", id=oid)[0]["original_size"] == "10"

    assert sim.take(YES, "SELL", 0.44, 4) == 4.0  # an outside seller hits our bid at our price
    await eventually(lambda: rec.of("trade", status="CONFIRMED"), what="trade confirmed")
    [upd] = rec.of("order", type="UPDATE", id=oid)
    assert upd["size_matched"] == "4" and upd["status"] == "LIVE"
    statuses = [t["status"] for t in rec.of("trade")]
    assert statuses == ["MATCHED", "MINED", "CONFIRMED"]
    trade = rec.of("trade")[0]
    assert trade["trader_side"] == "MAKER" and trade["side"] == "SELL" and trade["price"] == "0.45"
    [mine] = [mo for mo in trade["maker_orders"] if mo["order_id"] == oid]
    assert mine["matched_amount"] == "4" and mine["owner"] == client.creds.api_key and mine["price"] == "0.45"
    assert int(trade["timestamp"]) < 10**11  # user-channel timestamps are seconds

    # the rest fills, then a cancel of the finished order fails; a new order gets cancelled
    assert sim.take(NO, "BUY", 0.56, 100) == 6.0  # a NO bid at 0.56 is a YES ask at 0.44: crosses our 0.45
    await eventually(lambda: any(e["status"] == "MATCHED" for e in rec.of("order", type="UPDATE", id=oid)))
    res = await asyncio.to_thread(client.cancel_order, OrderPayload(orderID=oid))
    assert res["canceled"] == []
    resp2 = await asyncio.to_thread(
        client.post_order, client.create_order(OrderArgs(token_id=NO, price=0.3, size=5, side="BUY"))
    )
    await asyncio.to_thread(client.cancel_all)
    await eventually(lambda: rec.of("order", type="CANCELLATION", id=resp2["orderID"]), what="CANCELLATION")
    assert rec.of("order", type="CANCELLATION")[0]["status"] == "CANCELED"
    await rec.close()


async def test_user_channel_bad_auth_is_closed(sim: ClobSim, client: ClobClient) -> None:
    ws = await websockets.connect(f"{sim.ws_url}/ws/user")
    await ws.send(
        json.dumps(
            {"type": "user", "auth": {"apiKey": client.creds.api_key, "secret": "x", "passphrase": "y"}}
        )
    )
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1008 and sim.rejects["ws_auth"] == 1


async def test_market_channel_book_price_change_trades(sim: ClobSim, client: ClobClient) -> None:
    sim.add_external_order(YES, "SELL", 0.60, 50)
    ws = await websockets.connect(f"{sim.ws_url}/ws/market")
    await ws.send(json.dumps({"type": "market", "assets_ids": [YES, NO], "custom_feature_enabled": True}))
    rec = WsRecorder(ws)
    await eventually(lambda: len(rec.of("book")) == 2, what="book snapshots")
    [yes_book] = rec.of("book", asset_id=YES)
    [no_book] = rec.of("book", asset_id=NO)
    assert yes_book["asks"] == [{"price": "0.6", "size": "50"}] and yes_book["market"] == COND
    assert no_book["bids"] == [{"price": "0.4", "size": "50"}]

    await asyncio.to_thread(
        client.post_order, client.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
    )
    await eventually(lambda: rec.of("price_change"), what="price_change")
    pc = rec.of("price_change")[0]
    by_asset = {c["asset_id"]: c for c in pc["price_changes"]}
    assert by_asset[YES] == {
        **by_asset[YES],
        "price": "0.45",
        "size": "10",
        "side": "BUY",
        "best_bid": "0.45",
        "best_ask": "0.6",
    }
    assert by_asset[NO] == {
        **by_asset[NO],
        "price": "0.55",
        "size": "10",
        "side": "SELL",
        "best_bid": "0.4",
        "best_ask": "0.55",
    }
    await eventually(lambda: rec.of("best_bid_ask", asset_id=YES), what="best_bid_ask")

    sim.take(YES, "SELL", 0.45, 10)
    await eventually(lambda: rec.of("last_trade_price", asset_id=YES), what="last_trade_price")
    ltp = rec.of("last_trade_price", asset_id=YES)[0]
    assert (ltp["price"], ltp["size"], ltp["side"]) == ("0.45", "10", "SELL")
    await eventually(
        lambda: any(c["size"] == "0" for e in rec.of("price_change") for c in e["price_changes"])
    )

    sim.set_tick_size(YES, 0.001)
    await eventually(lambda: rec.of("tick_size_change", asset_id=YES), what="tick_size_change")
    assert rec.of("tick_size_change", asset_id=YES)[0]["new_tick_size"] == "0.001"

    await ws.send("PING")
    await eventually(lambda: "PONG" in rec.texts)
    await ws.send(json.dumps({"type": "market", "assets_ids": [YES]}))  # the first frame again
    await eventually(lambda: "INVALID OPERATION" in rec.texts)
    n = len(rec.of("book"))
    await ws.send(json.dumps({"operation": "subscribe", "assets_ids": [YES]}))  # resubscribe = resync
    await eventually(lambda: len(rec.of("book")) == n + 1)

    sim.drop_ws()
    await asyncio.wait_for(ws.wait_closed(), 5)
    rec.task.cancel()
