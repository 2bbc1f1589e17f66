"""binance-sender as systemd runs it: a real process speaking the sd_notify protocol."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from polymm.sim.binance_ws import BinanceSim
from tests.conftest import eventually


class NotifySocket:
    """The datagram socket systemd listens on for READY=1, WATCHDOG=1, STATUS=..."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages += self.sock.recv(4096).decode().splitlines()
            except BlockingIOError:
                return self.messages

    def count(self, prefix: str) -> int:
        return sum(m.startswith(prefix) for m in self.drain())


async def test_ready_watchdog_status_and_clean_sigterm(certs: Path, receiver, tmp_path: Path):
    rx, inbox = receiver
    notify = NotifySocket(tmp_path / "notify.sock")
    async with BinanceSim(rate_hz=50) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMS_", "TLS_", "SYMBOLS"))}
        env.update(
            NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000",
            AMS_HOST="127.0.0.1", AMS_PORT=str(rx.port), CERT_DIR=str(certs),
            BINANCE_WS_URL=sim.url, SYMBOLS="btcusdt", INCLUDE_TRADES="true",
            BINANCE_STALE_SECS="1", HEARTBEAT_SECS="0.2",
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polymm.relay.sender", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await eventually(lambda: notify.count("READY=1") == 1, what="READY=1")
            await eventually(lambda: notify.count("WATCHDOG=1") >= 2, what="watchdog while data flows")
            await eventually(lambda: len(inbox.bbo()) > 10, what="data through the relay")
            status = [m for m in notify.drain() if m.startswith("STATUS=")]
            assert "msg/s" in status[-1] and "relay up" in status[-1]

            sim.frozen = True  # Binance goes quiet: the watchdog must stop being fed
            await asyncio.sleep(1.5)
            before = notify.count("WATCHDOG=1")
            await asyncio.sleep(1.5)
            assert notify.count("WATCHDOG=1") == before
            sim.frozen = False
            await eventually(lambda: notify.count("WATCHDOG=1") > before, what="watchdog resumes")
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    assert notify.count("STOPPING=1") == 1
    lines = output.decode().splitlines()
    assert any("received SIGTERM, stopping" in line for line in lines)
    assert any("binance-sender stopped" in line for line in lines)
    assert not any("Traceback" in line for line in lines)
