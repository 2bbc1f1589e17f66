"""The fast V2 signing path produces exactly what py-clob-client-v2 itself would."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from eth_utils import keccak as eth_keccak
from py_clob_client_v2 import OrderArgs
from py_clob_client_v2.clob_types import CreateOrderOptions
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.order_utils import SignatureTypeV2
from py_clob_client_v2.signer import Signer

from polymm.executor import signing
from polymm.executor.signing import FastOrderBuilder, order_digest

CASES = [
    # (signature type, tick size, neg risk, side, price, size)
    (SignatureTypeV2.EOA, "0.01", False, "BUY", 0.45, 10),
    (SignatureTypeV2.EOA, "0.01", True, "SELL", 0.57, 12.5),
    (SignatureTypeV2.POLY_PROXY, "0.001", False, "BUY", 0.123, 7.77),
    (SignatureTypeV2.POLY_GNOSIS_SAFE, "0.0001", True, "SELL", 0.9876, 1234.56),
    (SignatureTypeV2.EOA, "0.1", False, "SELL", 0.3, 5),
]


@pytest.mark.parametrize(("sig_type", "tick", "neg", "side", "price", "size"), CASES)
def test_fast_signature_is_byte_for_byte_the_librarys(
    monkeypatch: pytest.MonkeyPatch,
    sig_type: SignatureTypeV2,
    tick: str,
    neg: bool,
    side: str,
    price: float,
    size: float,
) -> None:
    signer = Signer(Account.create().key.hex(), 137)
    funder = None if sig_type is SignatureTypeV2.EOA else Account.create().address
    stock = OrderBuilder(signer, sig_type, funder)
    fast = FastOrderBuilder(stock)
    args = OrderArgs(token_id="7" * 76, price=price, size=size, side=side)
    opts = CreateOrderOptions(tick, neg)
    monkeypatch.setattr(time, "time_ns", lambda: 1_790_000_000_123_456_789)

    ours = fast.build_order(args, opts)
    theirs = stock.build_order(args, opts)

    # Same order (amounts, rounding, addresses, timestamp) apart from the random salt...
    mine, ref = dataclasses.asdict(ours), dataclasses.asdict(theirs)
    for field in ("salt", "signature", "order_id"):
        mine.pop(field), ref.pop(field, None)  # the library's order has no order_id
    assert mine == ref
    # ...and for our salt, the library's own EIP-712 encoding gives the same digest and signature.
    exchange = fast.exchange(neg)
    typed = exchange.build_order_typed_data(ours)
    assert order_digest(ours, exchange.app_domain_separator) == exchange.build_order_hash(typed)
    assert ours.order_id == exchange.build_order_hash(typed)  # the id comes with the order
    assert ours.signature == exchange.build_order_signature(typed)


def test_poly_1271_falls_back_to_the_library() -> None:
    signer = Signer(Account.create().key.hex(), 137)
    stock = OrderBuilder(signer, SignatureTypeV2.POLY_1271, Account.create().address)
    order = FastOrderBuilder(stock).build_order(
        OrderArgs(token_id="7" * 76, price=0.5, size=10, side="BUY"), CreateOrderOptions("0.01", False)
    )
    exchange = FastOrderBuilder(stock).exchange(False)
    assert order.signature == exchange.build_order_signature(exchange.build_order_typed_data(order))


# Lengths around Keccak-256's 136-byte rate (padding in the same block or the next) and the two
# messages the signer hashes (416-byte struct, 66-byte envelope).
LENGTHS = [0, 1, 31, 32, 66, 135, 136, 137, 271, 272, 416, 5000]


@pytest.mark.parametrize("hash_fn", [signing.keccak256, signing._keccak256_public])
def test_c_keccak_is_eth_utils_keccak(hash_fn: Callable[[bytes], bytes]) -> None:
    for n in LENGTHS:
        data = bytes((i * 31 + n) % 256 for i in range(n))
        assert hash_fn(data) == eth_keccak(data), n
    # One state is reused per thread: hashing twice, and in between something else, changes nothing.
    assert hash_fn(b"abc") == hash_fn(b"abc") == eth_keccak(b"abc")


def test_c_keccak_runs_on_the_direct_path_when_cffi_is_there() -> None:
    from Crypto.Util._raw_api import backend

    assert (signing.keccak256 is signing._keccak256_public) == (backend != "cffi")


def test_c_keccak_is_safe_across_threads() -> None:
    inputs = [bytes([k]) * (100 + k) for k in range(64)]
    expected = [eth_keccak(d) for d in inputs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            assert list(pool.map(signing.keccak256, inputs)) == expected
