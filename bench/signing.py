"""Order-signing benchmark: microseconds to build + sign one V2 order, three ways in the same run.

  fast       polymm.executor.signing.FastOrderBuilder as shipped (C keccak, coincurve)
  fast_eth   the same builder with its keccak swapped for eth_utils' (the previous version)
  library    py-clob-client-v2's own OrderBuilder.build_order (EIP-712 via eth-account)
Also the two primitives apart: one keccak-256 of the 416-byte struct, eth_utils vs C.

Rounds alternate between the variants so machine noise hits them alike; figures are medians of
the per-order times.

usage: bench/signing.py [--quick] [--orders N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from eth_account import Account
from eth_utils import keccak as eth_keccak
from py_clob_client_v2 import OrderArgs
from py_clob_client_v2.clob_types import CreateOrderOptions
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.order_utils import SignatureTypeV2
from py_clob_client_v2.signer import Signer

from polymm.executor import signing
from polymm.executor.signing import FastOrderBuilder


def per_call_us(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return round(data[min(len(data) - 1, int(q / 100 * len(data)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="order signing benchmark")
    parser.add_argument("--quick", action="store_true", help="a couple of seconds")
    parser.add_argument("--orders", type=int, help="orders per variant (default 20000, quick 2000)")
    args = parser.parse_args()
    n = args.orders or (2000 if args.quick else 20_000)

    signer = Signer(Account.create().key.hex(), 137)
    stock = OrderBuilder(signer, SignatureTypeV2.EOA, None)
    fast = FastOrderBuilder(stock)
    order_args = OrderArgs(token_id="7" * 76, price=0.45, size=10, side="BUY")
    opts = CreateOrderOptions("0.01", False)
    c_keccak = signing.keccak256

    def fast_eth() -> object:
        signing.keccak256 = eth_keccak
        try:
            return fast.build_order(order_args, opts)
        finally:
            signing.keccak256 = c_keccak

    variants: dict[str, Callable[[], object]] = {
        "fast": lambda: fast.build_order(order_args, opts),
        "fast_eth": fast_eth,
        "library": lambda: stock.build_order(order_args, opts),
    }
    blob = bytes(range(256)) + bytes(160)  # 416 bytes: typehash + 12 words, as an order struct
    prims: dict[str, Callable[[], object]] = {
        "keccak_eth": lambda: eth_keccak(blob),
        "keccak_c": lambda: c_keccak(blob),
    }
    samples: dict[str, list[float]] = {k: [] for k in (*variants, *prims)}
    rounds = 10
    for _ in range(rounds):  # interleaved, so noise is shared
        for name, fn in variants.items():
            samples[name] += per_call_us(fn, max(1, n // rounds // (4 if name == "library" else 1)))
        for name, fn in prims.items():
            samples[name] += per_call_us(fn, max(1, n // rounds))
    med = {k: round(statistics.median(v), 1) for k, v in samples.items()}
    print({k: {"p50": med[k], "p99": pct(v, 99), "n": len(v)} for k, v in samples.items()})
    print(json.dumps({
        "sign_p50_us": med["fast"], "sign_p99_us": pct(samples["fast"], 99),
        "baseline_eth_keccak_sign_p50_us": med["fast_eth"], "library_sign_p50_us": med["library"],
        "keccak_eth_p50_us": med["keccak_eth"], "keccak_c_p50_us": med["keccak_c"],
        "speedup_vs_eth_keccak": round(med["fast_eth"] / med["fast"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
