"""Relay benchmark: local Binance server -> binance-sender -> mutual TLS -> receiver, on loopback.

Measures the latency the relay adds (sender's Binance receipt -> receiver hands the event on; it
includes the kernel's loopback hop and waking the receiving process, which the baseline pays too)
in a paced run, with the sender-internal share (receipt -> frame written) reported apart, and
events/s in a run at maximum rate; the sender is the real `binance-sender`
process and its peak RSS is read from /proc. In the same run:
  baseline  the same work done the textbook way: the same JSON re-published over a websockets
            server with the relay's own mutual-TLS 1.3 contexts (wss://, republisher receipt ->
            client receipt);
  floor     a raw TLS 1.3 socket write -> read between two processes (blocking sockets, same certs,
            same message size and pace): what no relay written in Python can beat.
The paced runs space messages evenly (each slot waited for in a thread, so nothing spins a core and
no two messages go back to back); `floor_p50_us`/`floor_p99_us` are the floor's percentiles.

Every process runs on uvloop; they share the machine's cores, as the figures say.
usage: bench/relay_latency.py [--quick] [--events N] [--paced N] [--rate HZ]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

from polymm.sim.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def percentiles_us(values: list[int]) -> dict[str, float]:
    data = sorted(values)
    n = len(data)

    def pick(q: float) -> float:
        return round(data[min(n - 1, int(q / 100 * n))] / 1000, 1)

    return {
        "p50_us": pick(50),
        "p99_us": pick(99),
        "p999_us": pick(99.9),
        "max_us": round(data[-1] / 1000, 1),
    }


def sim_cmd(port: int, count: int, rate: float) -> list[str]:
    return [PY, "-m", "polymm.sim.binance_ws", "--port", str(port), "--rate", "0", "--blast", str(count),
            "--blast-rate", str(rate), "--wait-subscribers", "1", "--settle", "1.5"]  # fmt: skip


# -- roles run as child processes ------------------------------------------------------------------


async def role_sink(port: int, certs: Path, expect: int) -> str:
    """Our receiver: record (arrival - sender's recv_ts) for every event."""
    from polymm.relay import tls
    from polymm.relay.events import Notice
    from polymm.relay.receiver import RelayReceiver

    lat = array("q")
    inside = array("q")
    arrivals = array("q")
    done = asyncio.Event()

    def on_event(event: object) -> None:
        if isinstance(event, Notice):
            return
        lat.append(event.arrival_ts - event.recv_ts)  # type: ignore[attr-defined]
        inside.append(event.send_ts - event.recv_ts)  # type: ignore[attr-defined]
        arrivals.append(event.arrival_ts)  # type: ignore[attr-defined]
        if len(lat) >= expect:
            done.set()

    ctx = tls.server_context(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    rx = RelayReceiver("127.0.0.1", port, ctx, on_event)
    await rx.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 120)
    await rx.close()
    return json.dumps({"lat": list(lat), "inside": list(inside), "first": arrivals[0] if arrivals else 0,
                       "last": arrivals[-1] if arrivals else 0})  # fmt: skip


async def role_republish(binance_url: str, port: int, certs: Path, expect: int) -> bytes:
    """Baseline middle hop: re-publish each Binance JSON message as is to one wss:// client (mTLS)."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from polymm.relay import tls

    recv = array("q")
    client_ready = asyncio.Event()
    clients: list[object] = []

    async def handler(ws: object) -> None:
        clients.append(ws)
        client_ready.set()
        await ws.wait_closed()  # type: ignore[attr-defined]

    ctx = tls.server_context(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    async with serve(handler, "127.0.0.1", port, compression=None, ssl=ctx):
        await client_ready.wait()
        out = clients[0]
        async with connect(binance_url, compression=None, max_size=1 << 20) as upstream:
            async for message in upstream:
                recv.append(time.time_ns())
                await out.send(message)  # type: ignore[attr-defined]
                if len(recv) >= expect:
                    break
        await asyncio.sleep(0.5)
    return recv.tobytes()


async def role_client(port: int, certs: Path, expect: int) -> bytes:
    from websockets.asyncio.client import connect

    from polymm.relay import tls

    arrivals = array("q")
    ctx = tls.client_context(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    async with connect(f"wss://127.0.0.1:{port}", compression=None, max_size=1 << 20, ssl=ctx) as ws:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(120):
                async for _ in ws:
                    arrivals.append(time.time_ns())
                    if len(arrivals) >= expect:
                        break
    return arrivals.tobytes()


# -- orchestration -----------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_ours(tmp: Path, certs: Path, count: int, rate: float) -> dict[str, float]:
    binance_port, relay_port = free_port(), free_port()
    out = tmp / f"ours-{rate}.json"
    env = {**os.environ, "AMS_HOST": "127.0.0.1", "AMS_PORT": str(relay_port), "CERT_DIR": str(certs),
           "SYMBOLS": "btcusdt", "BINANCE_WS_URL": f"ws://127.0.0.1:{binance_port}", "LOG_LEVEL": "WARNING",
           "TRADE_BUFFER": "1000000"}  # fmt: skip
    sink = subprocess.Popen([PY, __file__, "--role", "sink", "--port", str(relay_port), "--certs", str(certs),
                             "--expect", str(count), "--out", str(out)])  # fmt: skip
    sim = subprocess.Popen(sim_cmd(binance_port, count, rate), stdout=subprocess.DEVNULL)
    time.sleep(0.8)
    sender = subprocess.Popen([PY, "-m", "polymm.relay.sender"], env=env)
    try:
        sink.wait(timeout=180)
        rss = peak_rss_mb(sender.pid)
    finally:
        for proc in (sender, sim):
            proc.terminate()
            proc.wait(timeout=10)
    result = json.loads(out.read_text())
    lat = result["lat"]
    span_s = max((result["last"] - result["first"]) / 1e9, 1e-9)
    inside = {f"sender_{k}": v for k, v in percentiles_us(result["inside"]).items()}
    return {"received": len(lat), "events_per_s": round(len(lat) / span_s), "sender_rss_mb": round(rss, 1),
            **percentiles_us(lat), **inside}  # fmt: skip


FLOOR_MSG = 160  # bytes: about one bookTicker JSON message


def role_floor_rx(port: int, certs: Path, expect: int) -> bytes:
    """Floor receiver: a blocking TLS 1.3 server socket; records (arrival - send stamp) per message."""
    import socket

    from polymm.relay import tls

    ctx = tls.server_context(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    lat = array("q")
    with socket.create_server(("127.0.0.1", port)) as srv:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(conn, server_side=True) as tconn:
            buf = b""
            while len(lat) < expect:
                chunk = tconn.recv(65536)
                if not chunk:
                    break
                now = time.time_ns()
                buf += chunk
                while len(buf) >= FLOOR_MSG:
                    lat.append(now - int.from_bytes(buf[:8], "big"))
                    buf = buf[FLOOR_MSG:]
    return lat.tobytes()


def paced_slots(count: int, rate: float) -> Iterator[int]:
    """Yield `count` times, `1/rate` apart, sleeping (not spinning); after a late wake-up, go on
    half a period later rather than catching up back to back (as the Binance simulator paces)."""
    slot = time.perf_counter()
    for i in range(count):
        delay = slot - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i
        slot = max(slot + 1 / rate, time.perf_counter() + 0.5 / rate)


def run_floor(tmp: Path, certs: Path, count: int, rate: float) -> dict[str, float]:
    import socket

    from polymm.relay import tls

    port, out = free_port(), tmp / f"floor-{rate}"
    rx = subprocess.Popen([PY, __file__, "--role", "floor", "--port", str(port), "--certs", str(certs),
                           "--expect", str(count), "--out", str(out)])  # fmt: skip
    ctx = tls.client_context(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    deadline = time.monotonic() + 30
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pad = bytes(FLOOR_MSG - 8)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(bytes(FLOOR_MSG))  # warm-up, not counted below... nor above: its stamp is 0
        for _ in paced_slots(count - 1, rate):
            conn.sendall(time.time_ns().to_bytes(8, "big") + pad)
        rx.wait(timeout=120)
    lat = array("q", out.read_bytes())[1:]
    return {"received": len(lat), **percentiles_us(list(lat))}


def run_baseline(tmp: Path, certs: Path, count: int, rate: float) -> dict[str, float]:
    binance_port, pub_port = free_port(), free_port()
    recv_file, arr_file = tmp / f"base-recv-{rate}", tmp / f"base-arr-{rate}"
    upstream = f"ws://127.0.0.1:{binance_port}/stream?streams=btcusdt@bookTicker"
    sim = subprocess.Popen(sim_cmd(binance_port, count, rate), stdout=subprocess.DEVNULL)
    time.sleep(0.8)
    repub = subprocess.Popen([PY, __file__, "--role", "republish", "--binance", upstream,
                              "--port", str(pub_port), "--out", str(recv_file), "--certs", str(certs),
                              "--expect", str(count)])  # fmt: skip
    time.sleep(0.8)
    client = subprocess.Popen([PY, __file__, "--role", "client", "--port", str(pub_port),
                               "--out", str(arr_file), "--certs", str(certs),
                               "--expect", str(count)])  # fmt: skip
    try:
        client.wait(timeout=180)
        repub.wait(timeout=30)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    recv = array("q", recv_file.read_bytes())
    arrivals = array("q", arr_file.read_bytes())
    n = min(len(recv), len(arrivals))
    lat = [arrivals[i] - recv[i] for i in range(n)]
    span_s = max((arrivals[n - 1] - arrivals[0]) / 1e9, 1e-9)
    return {"received": n, "events_per_s": round(n / span_s), **percentiles_us(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description="relay latency and throughput benchmark")
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of a full run")
    parser.add_argument("--events", type=int, help="events in the max-rate run (default 200k, quick 20k)")
    parser.add_argument("--paced", type=int, help="events in the paced latency run (default 50k, quick 5k)")
    parser.add_argument("--rate", type=float, default=2000.0, help="paced run rate, events/s")
    parser.add_argument("--role", choices=("sink", "republish", "client", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--binance", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role:
        import uvloop

        if args.role == "sink":
            args.out.write_text(uvloop.run(role_sink(args.port, args.certs, args.expect)))
        elif args.role == "republish":
            args.out.write_bytes(uvloop.run(role_republish(args.binance, args.port, args.certs, args.expect)))
        elif args.role == "floor":
            args.out.write_bytes(role_floor_rx(args.port, args.certs, args.expect))
        else:
            args.out.write_bytes(uvloop.run(role_client(args.port, args.certs, args.expect)))
        return

    events = args.events or (20_000 if args.quick else 200_000)
    paced = args.paced or (5_000 if args.quick else 50_000)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        certs = tmp / "certs"
        subprocess.run([str(ROOT / "scripts" / "generate-certs.sh"), "127.0.0.1", str(certs)], check=True,
                       capture_output=True)  # fmt: skip
        print(
            f"paced run: {paced} BBO events at {args.rate:.0f}/s; max-rate run: {events} events", flush=True
        )
        floor = run_floor(tmp, certs, paced, args.rate)
        ours_paced = run_ours(tmp, certs, paced, args.rate)
        base_paced = run_baseline(tmp, certs, paced, args.rate)
        ours_max = run_ours(tmp, certs, events, 0)
        base_max = run_baseline(tmp, certs, events, 0)
    print(f"floor  (paced)   : {floor}")
    print(f"relay  (paced)   : {ours_paced}")
    print(f"baseline (paced) : {base_paced}")
    print(f"relay  (max rate): {ours_max}")
    print(f"baseline (max)   : {base_max}")
    print(json.dumps({
        "events_per_s": ours_max["events_per_s"],
        "baseline_events_per_s": base_max["events_per_s"],
        "p50_us": ours_paced["p50_us"], "p99_us": ours_paced["p99_us"], "p999_us": ours_paced["p999_us"],
        "baseline_p50_us": base_paced["p50_us"], "baseline_p99_us": base_paced["p99_us"],
        "baseline_p999_us": base_paced["p999_us"],
        "sender_internal_p50_us": ours_paced["sender_p50_us"],
        "sender_internal_p99_us": ours_paced["sender_p99_us"],
        "sender_rss_mb": max(ours_paced["sender_rss_mb"], ours_max["sender_rss_mb"]),
        "floor_p50_us": floor["p50_us"], "floor_p99_us": floor["p99_us"],
        "over_floor_p50": round(ours_paced["p50_us"] / floor["p50_us"], 2),
        "over_floor_p99": round(ours_paced["p99_us"] / floor["p99_us"], 2),
        "baseline_over_floor_p50": round(base_paced["p50_us"] / floor["p50_us"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
