"""Dead-man switch, rate limits, injected failures, in-loop mode, and signing timings."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from eth_account import Account
from py_clob_client_v2 import ClobClient, OrderArgs, PostOrdersV2Args
from py_clob_client_v2.exceptions import PolyApiException

from polymm.sim.clob import ClobSim
from tests.clob.conftest import COND, NO, YES, make_client


def _post(client: ClobClient, price: float, token: str = YES) -> str:
    return client.post_order(client.create_order(OrderArgs(token_id=token, price=price, size=5, side="BUY")))[
        "orderID"
    ]


def test_heartbeat_keeps_orders_and_silence_cancels_them(sim: ClobSim, client: ClobClient) -> None:
    # sim fixture: 1 s dead-man timeout
    bystander = make_client(sim, Account.create())
    other_id = _post(bystander, 0.2)  # never heartbeats -> never armed
    oid = _post(client, 0.3)
    assert client.post_heartbeat()["status"] == "ok"
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        client.post_heartbeat()
        time.sleep(0.3)
    assert client.get_order(oid)["status"] == "LIVE"
    # go silent
    deadline = time.monotonic() + 3
    while client.get_open_orders() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get_open_orders() == []
    assert client.get_order(oid)["status"] == "CANCELED"
    assert sim.counters["deadman_fired"] == 1 and sim.counters["canceled_by_heartbeat"] == 1
    assert bystander.get_order(other_id)["status"] == "LIVE"


def test_order_rate_limit_429(sim: ClobSim, client: ClobClient) -> None:
    sim.order_rate, sim.order_burst = 1.0, 4.0
    orders = [
        client.create_order(OrderArgs(token_id=YES, price=0.1 + i / 100, size=5, side="BUY"))
        for i in range(6)
    ]
    client.post_orders([PostOrdersV2Args(order=o) for o in orders[:3]])
    client.post_order(orders[3])
    with pytest.raises(PolyApiException) as err:
        client.post_order(orders[4])
    assert err.value.status_code == 429
    assert sim.rejects["rate_limited"] == 1
    sim.cancel_rate, sim.cancel_burst = 1.0, 2.0
    with pytest.raises(PolyApiException) as err:
        client.cancel_all()  # costs 1 + 4 cancelled > burst 2
    assert err.value.status_code == 429
    assert len(client.get_open_orders()) == 4


def test_rate_limit_retry_after_header(sim: ClobSim, client: ClobClient) -> None:
    import httpx

    sim.fail_next(1, 429, path="/version", retry_after=3)
    r = httpx.get(f"{sim.url}/version")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"


def test_fail_next_injects_errors(sim: ClobSim, client: ClobClient) -> None:
    sim.fail_next(1, 500)
    with pytest.raises(PolyApiException) as err:
        client.get_open_orders()
    assert err.value.status_code == 500
    assert client.get_open_orders() == []
    # 503 on the order endpoint only, and with apply=True: the order rests even though the call failed
    sim.fail_next(1, 503, path="/order", method="POST", apply=True)
    order = client.create_order(OrderArgs(token_id=YES, price=0.3, size=5, side="BUY"))
    with pytest.raises(PolyApiException) as err:
        client.post_order(order)
    assert err.value.status_code == 503
    [live] = client.get_open_orders()
    assert live["price"] == "0.3"  # reconcile finds it


async def test_sim_on_the_callers_loop() -> None:
    async with ClobSim(heartbeat_timeout_s=5) as sim:
        sim.add_market(COND, YES, NO)
        client = await asyncio.to_thread(make_client, sim, Account.create())
        oid = await asyncio.to_thread(_post, client, 0.42)
        assert sim.orders_of(client.creds.api_key)[0]["id"] == oid
        assert sim.book(YES)[0] == [(0.42, 5.0)]


def test_signing_timing(sim: ClobSim, client: ClobClient) -> None:
    """Not asserted: prints create_order cost (coincurve backs eth_keys) and the sim's verify cost."""
    from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

    from polymm.sim.clob_auth import parse_v2_order

    client.get_tick_size(YES), client.get_neg_risk(YES)  # warm the caches
    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        order = client.create_order(OrderArgs(token_id=YES, price=0.45, size=10, side="BUY"))
        samples.append(time.perf_counter() - t0)
    raw = order_to_json_v2(order, "k", "GTC")["order"]
    verify = []
    for _ in range(200):
        t0 = time.perf_counter()
        parse_v2_order(raw, 137, False)
        verify.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(50):
        _post(client, 0.2)
    post_ms = (time.perf_counter() - t0) / 50 * 1000
    print(
        f"\ncreate_order median {statistics.median(samples) * 1000:.3f} ms, p90 "
        f"{statistics.quantiles(samples, n=10)[-1] * 1000:.3f} ms; sim verify median "
        f"{statistics.median(verify) * 1000:.3f} ms; create+post round trip {post_ms:.2f} ms"
    )


def test_cli_prints_urls() -> None:
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "polymm.sim.clob", "--market", f"{COND}:{YES}:{NO}", "--depth", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("CLOB_URL=")
        ws_url = proc.stdout.readline().strip().removeprefix("CLOB_WS_URL=")
        assert url.startswith("http://127.0.0.1:") and ws_url.startswith("ws://127.0.0.1:")
        book = httpx.get(f"{url}/book", params={"token_id": YES}).json()
        assert [b["price"] for b in book["bids"]] == ["0.48", "0.49"]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_heartbeat_id_chaining_when_strict(sim: ClobSim, client: ClobClient) -> None:
    sim.heartbeat_chain = True
    first = client.post_heartbeat("")["heartbeat_id"]
    second = client.post_heartbeat(first)["heartbeat_id"]
    with pytest.raises(PolyApiException) as err:
        client.post_heartbeat(first)  # stale id
    assert err.value.status_code == 400 and err.value.error_msg["heartbeat_id"] == second
    assert client.post_heartbeat(second)["status"] == "ok"
