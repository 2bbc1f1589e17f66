"""Fixtures shared by every test folder: TLS material made by the project's own script."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CERT_SCRIPT = ROOT / "scripts" / "generate-certs.sh"


def make_certs(out: Path, names: str = "127.0.0.1,localhost") -> Path:
    subprocess.run([str(CERT_SCRIPT), names, str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, server and client certificates for 127.0.0.1, from scripts/generate-certs.sh."""
    return make_certs(tmp_path_factory.mktemp("certs") / "relay")


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA and its certificates: what an impostor would present."""
    return make_certs(tmp_path_factory.mktemp("certs") / "foreign")


async def eventually(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll until predicate() is truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(
    run: Callable[[asyncio.Event], Awaitable[object]], stop_timeout_s: float = 30.0
) -> AsyncIterator[None]:
    """Run a service's `run(stop)` in the background for the block; then stop it and wait for it."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout_s)
