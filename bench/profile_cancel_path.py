"""Where the time goes between the executor's decision and its cancel reaching the CLOB.

The set-up of bench/executor_reaction.py (real executor, real py-clob-client-v2, the local CLOB in
its own process), with wall-clock stamps (time.time_ns, comparable across the two processes)
taken at each hand-over of the cancel's path, by wrapping the functions involved from outside
(the executor's code is not changed):

  decided        the BBO handler returned (strategy + diff + submit)
  converge       the order manager's task woke up and started its pass
  gw_cancel      ClobGateway.cancel called (risk checks, bucket, journal done)
  thread_start   the cancel's function began running on the gateway's thread pool
  http_send      httpx.Client.send called (L2 HMAC headers, JSON, request built)
  sock_write     the first socket write of that request (HTTP/2 framing by h2 done)
  arrived        the CLOB process read the request (its arrival log)

Also whether the pre-signing of the replacement quotes (started just before the cancel, on the
same pool) was running while the cancel waited, and how long it held a thread.

Two passes in one run, alternating set-ups: the executor as it is (the journal hands its lines to
the writer thread once per loop iteration) and the baseline `journal_immediate_*` (the journal's
`defer=False`: every line wakes the writer thread on the spot, as before issue 11), to see what
waking the journal's writer thread on the path costs.

usage: bench/profile_cancel_path.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpcore._backends.sync as httpcore_sync
import httpx

from polymm.executor import clob_gateway, orders

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("executor_reaction", HERE / "executor_reaction.py")
reaction = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["executor_reaction"] = reaction
_spec.loader.exec_module(reaction)  # type: ignore[union-attr]

STAMPS: dict[str, list[int]] = {}
_lock = threading.Lock()


def stamp(name: str) -> None:
    with _lock:
        STAMPS.setdefault(name, []).append(time.time_ns())


def first_after(name: str, t0: int) -> int | None:
    return next((t for t in STAMPS.get(name, []) if t >= t0), None)


def instrument() -> None:
    """Wrap each hand-over point; every wrapper only appends a time stamp."""
    converge = orders.OrderManager.converge

    async def converge_stamped(self: Any) -> bool:
        stamp("converge")
        return await converge(self)

    orders.OrderManager.converge = converge_stamped  # type: ignore[method-assign]

    cancel = clob_gateway.ClobGateway.cancel

    async def cancel_stamped(self: Any, ids: Any) -> Any:
        stamp("gw_cancel")
        return await cancel(self, ids)

    clob_gateway.ClobGateway.cancel = cancel_stamped  # type: ignore[method-assign]

    run = clob_gateway.ClobGateway._run

    async def run_stamped(self: Any, fn: Any, *args: Any) -> Any:
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        kind = "cancel" if "cancel" in name else "sign" if "sign" in name else "other"

        def wrapped(*a: Any) -> Any:
            stamp(f"{kind}_thread_start")
            try:
                return fn(*a)
            finally:
                stamp(f"{kind}_thread_end")

        stamp(f"{kind}_submitted")
        return await run(self, wrapped, *args)

    clob_gateway.ClobGateway._run = run_stamped  # type: ignore[method-assign]

    send = httpx.Client.send

    def send_stamped(self: Any, request: httpx.Request, **kw: Any) -> Any:
        stamp(f"http_send_{request.method}")
        return send(self, request, **kw)

    httpx.Client.send = send_stamped  # type: ignore[method-assign]

    write = httpcore_sync.SyncStream.write

    def write_stamped(self: Any, buffer: bytes, timeout: float | None = None) -> None:
        stamp("sock_write")
        write(self, buffer, timeout)

    httpcore_sync.SyncStream.write = write_stamped  # type: ignore[method-assign]


async def measure(rounds: int, defer_journal: bool) -> dict[str, Any]:
    from polymm.executor.types import OrderState
    from polymm.relay.events import Bbo

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        sim, certs, markets = reaction.setup(tmp)
        try:
            executor, stop, task = await reaction.start_executor(sim, certs, markets, tmp)
            executor.engine.journal.defer = defer_journal
            live = executor.engine.orders.orders
            seg: dict[str, list[float]] = {}
            presign_overlap = 0
            for i in range(rounds):
                mid = 100_000.0 + (40.0 if i % 2 else 0.0)
                t0 = time.time_ns()
                executor._on_relay(Bbo("BTCUSDT", t0, 0, 0, i, mid - 0.5, 1.0, mid + 0.5, 1.0, arrival_ts=t0))
                decided = time.time_ns()
                end = time.monotonic() + 2
                while time.monotonic() < end:
                    log = sim.since(t0)
                    posts = [ts for ts, m, p in log if m == "POST" and p.startswith("/order")]
                    if posts and sum(o.state is OrderState.LIVE for o in live.values()) == 2:
                        break
                    await asyncio.sleep(0.001)
                else:
                    continue
                cancels = [ts for ts, m, p in log if m == "DELETE"]
                points = {
                    "decided": decided, "converge": first_after("converge", t0),
                    "gw_cancel": first_after("gw_cancel", t0),
                    "thread_start": first_after("cancel_thread_start", t0),
                    "http_send": first_after("http_send_DELETE", t0),
                    "sock_write": first_after("sock_write", first_after("http_send_DELETE", t0) or t0),
                    "arrived": cancels[0] if cancels else None,
                }  # fmt: skip
                if any(v is None for v in points.values()):
                    continue
                prev = t0
                for name, t in points.items():
                    seg.setdefault(name, []).append((t - prev) / 1000)  # type: ignore[operator]
                    prev = t  # type: ignore[assignment]
                seg.setdefault("total", []).append((points["arrived"] - t0) / 1000)  # type: ignore[operator]
                s0, s1 = first_after("sign_thread_start", t0), first_after("sign_thread_end", t0)
                if s0 and s1:
                    seg.setdefault("presign_held_thread", []).append((s1 - s0) / 1000)
                    presign_overlap += s0 <= points["thread_start"] <= s1 or s0 <= points["http_send"] <= s1  # type: ignore[operator]
                await asyncio.sleep(0.12)  # below the 40 orders/s bucket, as in executor_reaction.py
            stop.set()
            await asyncio.wait_for(task, 30)
        finally:
            sim.stop()
    n = len(seg.get("total", []))
    return {
        "rounds": n,
        "presign_overlapping_cancel": presign_overlap,
        **{f"{k}_p50_us": round(statistics.median(v), 1) for k, v in seg.items()},
    }


def main() -> None:
    import logging

    import uvloop

    parser = argparse.ArgumentParser(description="decision -> cancel-on-the-wire breakdown")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, help="default 200, quick 40")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    instrument()
    rounds = args.rounds or (40 if args.quick else 200)
    result: dict[str, Any] = {}
    for defer_journal in (True, False):  # ours first: any cold-start cost falls on us, not the baseline
        STAMPS.clear()
        figures = uvloop.run(measure(rounds, defer_journal))
        prefix = "" if defer_journal else "journal_immediate_"
        result.update({prefix + k: v for k, v in figures.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
