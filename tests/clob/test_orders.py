"""Posting, matching, querying and cancelling orders with the real client's V2 signing."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from py_clob_client_v2 import (
    ClobClient,
    MarketOrderArgs,
    OpenOrderParams,
    OrderArgs,
    OrderType,
    PartialCreateOrderOptions,
    PostOrdersV2Args,
    TradeParams,
)
from py_clob_client_v2.clob_types import OrderMarketCancelParams, OrderPayload
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.exceptions import PolyApiException
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2

from polymm.sim.clob import ClobSim
from tests.clob.conftest import COND, NO, NR_YES, YES, make_client


def digest_of(client: ClobClient, order: object, neg_risk: bool) -> str:
    """The order hash computed by the client's own EIP-712 code, independent of the sim's."""
    cfg = get_contract_config(137)
    exchange = cfg.neg_risk_exchange_v2 if neg_risk else cfg.exchange_v2
    builder = ExchangeOrderBuilderV2(exchange, 137, client.signer)
    return builder.build_order_hash(builder.build_order_typed_data(order))


def test_post_order_id_is_eip712_digest(sim: ClobSim, client: ClobClient) -> None:
    order = client.create_order(OrderArgs(token_id=YES, price=0.47, size=12.34, side="BUY"))
    assert (order.makerAmount, order.takerAmount) == ("5799800", "12340000")
    resp = client.post_order(order)
    assert resp["success"] is True and resp["status"] == "live" and resp["errorMsg"] == ""
    assert resp["orderID"] == digest_of(client, order, neg_risk=False)
    got = client.get_order(resp["orderID"])
    assert got["status"] == "LIVE" and got["price"] == "0.47" and got["original_size"] == "12.34"
    assert sim.book(YES)[0] == [(0.47, 12.34)]
    assert sim.book(NO)[1] == [(0.53, 12.34)]  # the NO book mirrors YES


def test_neg_risk_domain_and_fine_tick(sim: ClobSim, client: ClobClient) -> None:
    order = client.create_order(OrderArgs(token_id=NR_YES, price=0.457, size=10, side="SELL"))
    resp = client.post_order(order)
    assert resp["orderID"] == digest_of(client, order, neg_risk=True)
    assert resp["orderID"] != digest_of(client, order, neg_risk=False)
    # the same order signed for the wrong (normal) exchange does not verify on a neg-risk market
    wrong = client.create_order(
        OrderArgs(token_id=NR_YES, price=0.457, size=10, side="SELL"),
        PartialCreateOrderOptions(neg_risk=False),
    )
    with pytest.raises(PolyApiException) as err:
        client.post_order(wrong)
    assert err.value.status_code == 400 and "signature" in str(err.value.error_msg)


def test_post_orders_batch_and_limit(sim: ClobSim, client: ClobClient) -> None:
    args = [
        PostOrdersV2Args(order=client.create_order(OrderArgs(token_id=YES, price=p, size=5, side="BUY")))
        for p in (0.40, 0.41, 0.42)
    ]
    bad = client.create_order(OrderArgs(token_id=YES, price=0.30, size=1, side="BUY"))  # below min size
    res = client.post_orders([*args, PostOrdersV2Args(order=bad)])
    assert [r["success"] for r in res] == [True, True, True, False]
    assert "lower than the minimum" in res[3]["errorMsg"]
    assert [r["orderID"] for r in res[:3]] == [digest_of(client, a.order, False) for a in args]
    assert len(client.get_open_orders()) == 3
    many = [
        PostOrdersV2Args(
            order=client.create_order(OrderArgs(token_id=YES, price=0.2, size=5 + i, side="BUY"))
        )
        for i in range(16)
    ]
    with pytest.raises(PolyApiException) as err:
        client.post_orders(many)
    assert err.value.status_code == 400


def test_tampered_and_foreign_signatures_rejected(sim: ClobSim, client: ClobClient) -> None:
    order = client.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
    order.takerAmount = "20000000"  # change the size after signing
    with pytest.raises(PolyApiException) as err:
        client.post_order(order)
    assert err.value.status_code == 400
    # a valid order signed by another wallet, posted with our key
    other = ClobClient(sim.url, chain_id=137, key=Account.create().key.hex())
    foreign = other.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
    with pytest.raises(PolyApiException):
        client.post_order(foreign)
    assert sim.rejects["signature"] == 2
    assert client.get_open_orders() == []


def test_v1_order_rejected_with_version_mismatch(sim: ClobSim, client: ClobClient) -> None:
    v1 = client.create_order(
        OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"), PartialCreateOrderOptions(version=1)
    )
    with pytest.raises(PolyApiException) as err:
        client.post_order(v1)
    assert err.value.status_code == 400
    assert err.value.error_msg == {"error": "order_version_mismatch"}


def test_order_rules(sim: ClobSim, client: ClobClient) -> None:
    sim.add_external_order(YES, "SELL", 0.50, 100)
    cross = client.create_order(OrderArgs(token_id=YES, price=0.50, size=5, side="BUY"))
    with pytest.raises(PolyApiException) as err:
        client.post_order(cross, post_only=True)
    assert "post-only" in str(err.value.error_msg)
    ok = client.post_order(
        client.create_order(OrderArgs(token_id=YES, price=0.49, size=5, side="BUY")), post_only=True
    )
    assert ok["status"] == "live"
    # tick grid: the client thinks the neg-risk market still has a 0.001 tick, the sim moved it to 0.01
    assert client.get_tick_size(NR_YES) == "0.001"
    sim.set_tick_size(NR_YES, 0.01)
    off_grid = client.create_order(OrderArgs(token_id=NR_YES, price=0.457, size=10, side="BUY"))
    with pytest.raises(PolyApiException) as err:
        client.post_order(off_grid)
    assert "tick size" in str(err.value.error_msg)
    # GTD needs an expiration beyond the 60 s threshold
    soon = client.create_order(
        OrderArgs(token_id=YES, price=0.3, size=5, side="BUY", expiration=int(time.time()) + 30)
    )
    with pytest.raises(PolyApiException):
        client.post_order(soon, OrderType.GTD)
    later = client.create_order(
        OrderArgs(token_id=YES, price=0.3, size=5, side="BUY", expiration=int(time.time()) + 120)
    )
    assert client.post_order(later, OrderType.GTD)["status"] == "live"
    assert (
        sim.rejects["post_only_cross"] == 1
        and sim.rejects["tick_size"] == 1
        and sim.rejects["expiration"] == 1
    )


def test_crossing_orders_match_including_yes_no_complement(sim: ClobSim, client: ClobClient) -> None:
    sim.add_external_order(YES, "SELL", 0.52, 20)
    resp = client.post_order(client.create_order(OrderArgs(token_id=YES, price=0.55, size=8, side="BUY")))
    # taker gets the maker's price: 8 shares for 8 * 0.52 pUSD
    assert resp["status"] == "matched" and resp["takingAmount"] == "8" and resp["makingAmount"] == "4.16"
    assert len(resp["tradeIDs"]) == 1 and resp["transactionsHashes"]
    # a NO bid at 0.56 rests as a YES ask at 0.44 and crosses a YES bid at 0.45 (mint)
    sim.add_external_order(NO, "BUY", 0.56, 10)
    resp = client.post_order(client.create_order(OrderArgs(token_id=YES, price=0.45, size=6, side="BUY")))
    assert resp["status"] == "matched" and resp["takingAmount"] == "6"
    trades = client.get_trades()
    assert {t["trader_side"] for t in trades} == {"TAKER"} and len(trades) == 2
    [mint] = client.get_trades(TradeParams(id=resp["tradeIDs"][0]))
    assert mint["maker_orders"][0]["asset_id"] == NO and mint["maker_orders"][0]["price"] == "0.56"


def test_market_orders_fok_fak(sim: ClobSim, client: ClobClient) -> None:
    sim.add_external_order(YES, "SELL", 0.60, 10)
    with pytest.raises(PolyApiException) as err:  # $20 at 0.60 is ~33 shares, more than the book
        client.create_and_post_market_order(MarketOrderArgs(token_id=YES, amount=20, side="BUY", price=0.6))
    assert "FOK" in str(err.value.error_msg)
    resp = client.create_and_post_market_order(MarketOrderArgs(token_id=YES, amount=3, side="BUY", price=0.6))
    assert resp["status"] == "matched" and resp["takingAmount"] == "5"
    resp = client.create_and_post_market_order(
        MarketOrderArgs(token_id=YES, amount=6, side="BUY", price=0.6), order_type=OrderType.FAK
    )
    assert resp["takingAmount"] == "5"  # what was left; the rest killed
    assert sim.book(YES)[1] == [] and client.get_open_orders() == []


def test_get_orders_pagination(sim: ClobSim, client: ClobClient) -> None:
    sim.page_size = 3
    posted = client.post_orders(
        [
            PostOrdersV2Args(
                order=client.create_order(OrderArgs(token_id=YES, price=0.1 + i / 100, size=5, side="BUY"))
            )
            for i in range(7)
        ]
    )
    ids = [r["orderID"] for r in posted]
    assert [o["id"] for o in client.get_open_orders()] == ids
    first = client.get_open_orders(only_first_page=True)
    assert [o["id"] for o in first] == ids[:3]
    assert [o["id"] for o in client.get_open_orders(next_cursor="Ng==")] == ids[6:]  # base64("6")
    assert client.get_open_orders(OpenOrderParams(asset_id=NO)) == []
    assert len(client.get_open_orders(OpenOrderParams(market=COND))) == 7


def test_cancel_family(sim: ClobSim, client: ClobClient, account: LocalAccount) -> None:
    def post(token: str, price: float) -> str:
        return client.post_order(
            client.create_order(OrderArgs(token_id=token, price=price, size=5, side="BUY"))
        )["orderID"]

    a, b, c, d = post(YES, 0.30), post(YES, 0.31), post(YES, 0.32), post(NO, 0.33)
    e, f = post(NR_YES, 0.2), post(NR_YES, 0.21)
    assert client.cancel_order(OrderPayload(orderID=a)) == {"canceled": [a], "not_canceled": {}}
    again = client.cancel_order(OrderPayload(orderID=a))
    assert again["canceled"] == [] and a in again["not_canceled"]
    res = client.cancel_orders([b, c, "0xdead"])
    assert sorted(res["canceled"]) == sorted([b, c]) and "0xdead" in res["not_canceled"]
    # someone else can't cancel our order
    stranger = make_client(sim, Account.create())
    assert stranger.cancel_orders([d])["canceled"] == []
    res = client.cancel_market_orders(OrderMarketCancelParams(asset_id=NO))
    assert res["canceled"] == [d]
    res = client.cancel_market_orders(OrderMarketCancelParams(market=COND))
    assert res["canceled"] == []
    assert sorted(client.cancel_all()["canceled"]) == sorted([e, f])
    assert client.get_open_orders() == [] and sim.book(YES) == ([], [])
    assert client.get_order(a)["status"] == "CANCELED"


@pytest.mark.parametrize("sig_type", [1, 2, 3])
def test_proxy_safe_and_deposit_wallet_orders(sim: ClobSim, account: LocalAccount, sig_type: int) -> None:
    funder = Account.create().address  # the wallet holding funds; the EOA signs for it
    client = ClobClient(sim.url, chain_id=137, key=account.key.hex(), signature_type=sig_type, funder=funder)
    client.set_api_creds(client.create_or_derive_api_key())
    order = client.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
    assert order.maker == funder
    resp = client.post_order(order)
    assert resp["orderID"] == digest_of(client, order, neg_risk=False)
    [live] = client.get_open_orders()
    assert live["maker_address"] == funder
    # another EOA can't sign for that funder with our API key
    intruder = ClobClient(
        sim.url, chain_id=137, key=Account.create().key.hex(), signature_type=sig_type, funder=funder
    )
    with pytest.raises(PolyApiException):
        client.post_order(intruder.create_order(OrderArgs(token_id=YES, price=0.44, size=10, side="BUY")))
