"""`make demo`: the relay on one machine, for ~20 s.

Starts a local Binance-format WebSocket server, a receiver that prints what arrives with its
per-hop latency (relay-monitor), and the real binance-sender between them over mutual TLS with
certificates made by scripts/generate-certs.sh; then stops everything with SIGTERM, as systemd
would, and checks that each process exited cleanly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "demo-data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs() -> Path:
    certs = DATA / "certs"
    if certs.exists():
        shutil.rmtree(certs)
    subprocess.run(
        [str(ROOT / "scripts" / "generate-certs.sh"), "127.0.0.1,localhost", str(certs)], check=True
    )
    return certs


async def pipe(name: str, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        print(f"[{name:<14}] {line.decode(errors='replace').rstrip()}", flush=True)


async def start(
    name: str, args: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Task]:
    proc = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    return proc, asyncio.create_task(pipe(name, proc.stdout))


async def main(seconds: float) -> int:
    certs = make_certs()
    binance_port, relay_port = free_port(), free_port()
    py = sys.executable
    common = {"CERT_DIR": str(certs), "PYTHONUNBUFFERED": "1", "STATUS_LOG_SECS": "5"}
    procs: list[tuple[str, asyncio.subprocess.Process, asyncio.Task]] = []
    for name, args, env in [
        ("binance-sim", [py, "-m", "polymm.sim.binance_ws", "--port", str(binance_port), "--rate", "4"], {}),
        ("relay-monitor", [py, "-m", "polymm.relay.monitor"],
         {"LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(relay_port), "MONITOR_LINES_PER_S": "8"}),
        ("binance-sender", [py, "-m", "polymm.relay.sender"],
         {"AMS_HOST": "127.0.0.1", "AMS_PORT": str(relay_port), "SYMBOLS": "btcusdt,ethusdt",
          "INCLUDE_TRADES": "true", "BINANCE_WS_URL": f"ws://127.0.0.1:{binance_port}",
          "SENDER_NAME": "demo-fra"}),
    ]:  # fmt: skip
        proc, task = await start(name, args, {**common, **env})
        procs.append((name, proc, task))
        await asyncio.sleep(0.7)
    print(f"--- demo stack up; running for {seconds:.0f}s (Ctrl-C stops early) ---", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        if any(p.returncode is not None for _, p, _ in procs):
            break
        await asyncio.sleep(0.2)
    print("--- stopping (SIGTERM, sender first) ---", flush=True)
    failed = []
    for name, proc, task in reversed(procs):
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        await task
        if code not in (0, -signal.SIGTERM):
            failed.append(f"{name} exited {code}")
    print(
        "--- demo finished:",
        "all processes exited cleanly ---" if not failed else "; ".join(failed),
        flush=True,
    )
    return 1 if failed else 0


def run() -> None:
    import uvloop

    seconds = float(os.environ.get("DEMO_SECONDS", "20"))
    raise SystemExit(uvloop.run(main(seconds)))


if __name__ == "__main__":
    run()
