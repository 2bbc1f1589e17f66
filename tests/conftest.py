"""Fixtures shared by every test folder: TLS material made by the project's own script, a real
S3 server (SeaweedFS) and the throwaway credentials that go with it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from polymm.sim.s3 import ADMIN, REGION, S3Identity, SeaweedS3

ROOT = Path(__file__).resolve().parents[1]
# A key the S3 server knows, with rights on no bucket the tests use (AccessDenied everywhere).
OUTSIDER = S3Identity("outsider", "outsider-key", "outsider-secret", ("Read:not-ours",))
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


@pytest.fixture(scope="session")
def aws_test_credentials() -> Iterator[None]:
    """Dummy credentials for this test process only (boto3 reads them from the environment);
    the local S3 servers accept them, nothing else does."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(ADMIN.env(), AWS_DEFAULT_REGION=REGION)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory, aws_test_credentials: None) -> Iterator[SeaweedS3]:
    """SeaweedFS on loopback, shared by the session (each test makes its own bucket). A real S3
    gateway: it refuses a body whose SHA-256 does not match, unlike moto."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweed"), identities=(ADMIN, OUTSIDER)) as server:
        yield server


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
