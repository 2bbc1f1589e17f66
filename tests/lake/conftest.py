"""Fixtures for the lake tests: S3 servers in a subprocess (SeaweedFS for uploads, moto where
IAM or lifecycle rules are needed), row generators."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
import pytest

from polymm.lake.schemas import polymarket_trade_row
from polymm.sim.ports import free_port

REGION = "eu-central-1"


class S3Server(Protocol):
    """What the tests need of a local S3 server (SeaweedS3 and MotoServer both have it)."""

    @property
    def url(self) -> str: ...

    def client(self) -> Any: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass
class MotoServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pause(self) -> None:
        """S3 unreachable: connections hang (like a network black hole); state is kept."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION)


def _start(port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="session")
def moto_server(aws_test_credentials: None) -> Iterator[MotoServer]:
    port = free_port()
    server = MotoServer(port, _start(port))
    try:
        yield server
    finally:
        server.resume()
        server.proc.terminate()
        server.proc.wait(10)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = f"marketdata-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


HOUR_NS = 3_600_000_000_000
T0 = 1_768_780_800 * 1_000_000_000  # 2026-01-19T00:00:00Z


def bbo(ts: int, symbol: str = "BTCUSDT", i: int = 0) -> tuple[Any, ...]:
    return (ts, ts // 1_000_000 - 130, symbol, 100_000.0 + i, 100_000.5 + i, 1.5, 2.5, ts // 1_000_000 - 131,
            i, ts - 3_500_000, i)  # fmt: skip


def trade(ts: int, symbol: str = "BTCUSDT", i: int = 0) -> tuple[Any, ...]:
    side = "buy" if i % 2 else "sell"
    return (ts, ts // 1_000_000, symbol, 100_000.0, 0.01, side, i, ts // 1_000_000, True, ts - 3_500_000, i)


def book(ts: int, token: str = "8033940942096212345", i: int = 0) -> tuple[Any, ...]:
    bids = [(0.5 - k * 0.01, 100.0 + k) for k in range(5)]
    asks = [(0.51 + k * 0.01, 50.0 + k) for k in range(5)]
    return (ts, token, bids, asks, ts // 1_000_000, f"h{i}")


def poly_trade(ts: int, token: str = "8033940942096212345", i: int = 0) -> tuple[Any, ...]:
    return polymarket_trade_row(ts, token, 0.51, 10.0 + i, "BUY", ts // 1_000_000, "0", f"0x{i:064x}")


class Clock:
    """Settable wall clock (ns) for hour-rollover tests."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
