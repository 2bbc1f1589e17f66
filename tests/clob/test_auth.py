"""L1 key creation/derivation and L2 HMAC checks, driven by the real client."""

from __future__ import annotations

import time

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from py_clob_client_v2 import ApiCreds, ClobClient
from py_clob_client_v2.clob_types import RequestArgs
from py_clob_client_v2.exceptions import PolyApiException
from py_clob_client_v2.headers.headers import create_level_1_headers, create_level_2_headers
from py_clob_client_v2.signer import Signer

from polymm.sim.clob import ClobSim


def test_create_then_derive_returns_same_creds(sim: ClobSim, account: LocalAccount) -> None:
    client = ClobClient(sim.url, chain_id=137, key=account.key.hex())
    created = client.create_api_key()
    assert created.api_key and created.api_secret and created.api_passphrase
    assert client.derive_api_key() == created  # deterministic per address + nonce
    with pytest.raises(PolyApiException) as err:
        client.create_api_key()  # exists for nonce 0
    assert err.value.status_code == 400
    assert client.create_or_derive_api_key() == created
    other = client.derive_api_key(nonce=7)
    assert other.api_key != created.api_key
    assert sim.keys[created.api_key].address == account.address


def test_bad_l1_signature_rejected(sim: ClobSim, account: LocalAccount) -> None:
    impostor = Signer(Account.create().key.hex(), 137)
    headers = create_level_1_headers(impostor)
    headers["POLY_ADDRESS"] = account.address  # claim someone else's wallet
    r = httpx.get(f"{sim.url}/auth/derive-api-key", headers=headers)
    assert r.status_code == 401 and "error" in r.json()
    # a valid signature with a stale timestamp is refused too
    stale = create_level_1_headers(Signer(account.key.hex(), 137), timestamp=int(time.time()) - 3600)
    assert httpx.post(f"{sim.url}/auth/api-key", headers=stale).status_code == 401
    assert sim.rejects["l1_auth"] == 1 and sim.rejects["stale_timestamp"] == 1


def test_wrong_hmac_and_stale_timestamp_are_401(
    sim: ClobSim, client: ClobClient, account: LocalAccount
) -> None:
    assert client.get_open_orders() == []
    creds = client.creds
    bad = ClobClient(
        sim.url,
        chain_id=137,
        key=account.key.hex(),
        creds=ApiCreds(creds.api_key, "c2VjcmV0LXRoYXQtaXMtd3Jvbmctd3Jvbmctd3Jvbmc=", creds.api_passphrase),
    )
    with pytest.raises(PolyApiException) as err:
        bad.get_open_orders()
    assert err.value.status_code == 401
    assert err.value.error_msg == {"error": "Unauthorized/Invalid api key"}

    signer = Signer(account.key.hex(), 137)
    args = RequestArgs(method="GET", request_path="/data/orders")
    stale = create_level_2_headers(signer, creds, args, timestamp=int(time.time()) - 120)
    r = httpx.get(f"{sim.url}/data/orders", headers=stale, params={"next_cursor": "MA=="})
    assert r.status_code == 401
    fresh = create_level_2_headers(signer, creds, args)
    r = httpx.get(f"{sim.url}/data/orders", headers=fresh, params={"next_cursor": "MA=="})
    assert r.status_code == 200 and r.json()["next_cursor"] == "LTE="
    # the passphrase and address must belong to the key as well
    wrong_addr = dict(fresh, POLY_ADDRESS=Account.create().address)
    assert httpx.get(f"{sim.url}/data/orders", headers=wrong_addr).status_code == 401


def test_public_endpoints(sim: ClobSim, client: ClobClient) -> None:
    from tests.clob.conftest import NR_YES, YES

    assert client.get_ok() == "OK"
    assert abs(client.get_server_time() - time.time()) < 5
    assert client.get_version() == 2
    assert client.get_tick_size(YES) == "0.01"
    assert client.get_tick_size(NR_YES) == "0.001"
    assert client.get_neg_risk(YES) is False and client.get_neg_risk(NR_YES) is True
    book = client.get_order_book(YES)
    assert book["bids"] == [] and book["tick_size"] == "0.01"
    assert client.get_order_book_hash(dict(book)) == book["hash"]  # the real hash formula
    assert client.get_balance_allowance()["balance"]
    assert client.get_closed_only_mode() == {"closed_only": False}
