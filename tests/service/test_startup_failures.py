"""Start-up conditions no restart can fix end every service with one line naming the cause and
exit code 2 (systemd's RestartPreventExitStatus), never a traceback. Real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from polymm.sim.markets_file import write_above_market
from polymm.sim.ports import free_port
from polymm.sim.s3 import SeaweedS3
from tests.collector.conftest import YES, new_bucket
from tests.collector.test_collector_service import process_env
from tests.conftest import eventually

UNRESOLVABLE = "no-such-host.invalid"  # .invalid never resolves (RFC 6761)


async def run_to_exit(module: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_refused(result: tuple[int, str, str], expected: str) -> None:
    """Exit 2, exactly one line on stderr (the cause), no traceback, no error line in the log."""
    code, out, err = result
    assert code == 2, (out, err)
    assert err.strip().splitlines() == [expected], (out, err)
    assert "Traceback" not in out + err, (out, err)
    assert not [line for line in out.splitlines() if " ERROR " in line or " CRITICAL " in line], out


def assert_unresolvable(result: tuple[int, str, str], service: str, port: int | str) -> None:
    """The resolver's wording varies by libc: check our part of the line, then the rest as above."""
    err = result[2]
    expected = (
        f"{service}: cannot listen on {UNRESOLVABLE}:{port}: LISTEN_HOST='{UNRESOLVABLE}' does not resolve ("
    )
    assert err.startswith(expected), result
    assert_refused(result, err.strip())


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A port something else already listens on (all addresses, like a second service would)."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


# -- data-collector ----------------------------------------------------------------------------


@pytest.fixture
def collector_env(certs: Path, s3_server: SeaweedS3, tmp_path: Path) -> dict[str, str]:
    bucket = new_bucket(s3_server, f"startup-{free_port()}")
    return process_env(certs, tmp_path / "data", s3_server, bucket, "ws://127.0.0.1:9", free_port(),
                       tmp_path / "no-notify.sock")  # fmt: skip


async def test_collector_data_dir_that_cannot_be_created(collector_env: dict[str, str], tmp_path: Path):
    (tmp_path / "a-file").write_text("not a directory")
    data = tmp_path / "a-file" / "data"  # under a regular file: ENOTDIR, whoever we run as
    collector_env["DATA_DIR"] = str(data)
    assert_refused(
        await run_to_exit("polymm.collector.service", collector_env),
        f"data-collector: DATA_DIR={str(data)!r}: cannot create (not a directory)",
    )


async def test_collector_port_in_use(collector_env: dict[str, str], port_in_use: int):
    collector_env["LISTEN_PORT"] = str(port_in_use)
    assert_refused(
        await run_to_exit("polymm.collector.service", collector_env),
        f"data-collector: cannot listen on 127.0.0.1:{port_in_use}: address already in use",
    )


async def test_collector_unresolvable_listen_host(collector_env: dict[str, str]):
    collector_env["LISTEN_HOST"] = UNRESOLVABLE
    port = collector_env["LISTEN_PORT"]
    assert_unresolvable(await run_to_exit("polymm.collector.service", collector_env), "data-collector", port)


@asynccontextmanager
async def running_collector(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polymm.collector.service", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[bytes] = []

    async def pump() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line)

    reader = asyncio.create_task(pump())
    try:
        await eventually(lambda: any(b"relay receiver listening" in x for x in lines), timeout_s=30,
                         what="first collector listening")  # fmt: skip
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await reader


async def test_second_collector_on_the_same_data_dir(collector_env: dict[str, str]):
    async with running_collector(collector_env) as first:
        second_env = dict(collector_env, LISTEN_PORT=str(free_port()))
        data = collector_env["DATA_DIR"]
        assert_refused(
            await run_to_exit("polymm.collector.service", second_env),
            f"data-collector: DATA_DIR={data!r} is in use: another data-collector holds "
            f"{data}/state/lake.lock",
        )
        assert first.returncode is None  # the owner carries on


# -- relay-monitor -----------------------------------------------------------------------------


def monitor_env(certs: Path, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "TLS_", "NOTIFY_"))}
    env.update(LISTEN_HOST=host, LISTEN_PORT=str(port), CERT_DIR=str(certs))
    return env


async def test_monitor_port_in_use(certs: Path, port_in_use: int):
    assert_refused(
        await run_to_exit("polymm.relay.monitor", monitor_env(certs, port_in_use)),
        f"relay-monitor: cannot listen on 127.0.0.1:{port_in_use}: address already in use",
    )


async def test_monitor_unresolvable_listen_host(certs: Path):
    port = free_port()
    result = await run_to_exit("polymm.relay.monitor", monitor_env(certs, port, UNRESOLVABLE))
    assert_unresolvable(result, "relay-monitor", port)


# -- trading-executor --------------------------------------------------------------------------


def executor_env(certs: Path, tmp: Path, port: int, **extra: str) -> dict[str, str]:
    markets = write_above_market(
        tmp / "markets.toml", name="btc-above-100k", condition_id="0x" + "11" * 32, yes_token=YES,
        no_token="2" * 77, strike=100_000, expires_in_s=3600, quote_size=10, min_edge=0.03,
    )  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}"  # never reached: start-up fails before the gateway
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLY_", "CLOB_", "LISTEN_", "TLS_"))}
    env.pop("NOTIFY_SOCKET", None)
    env.update(
        LISTEN_HOST="127.0.0.1", LISTEN_PORT=str(port), CERT_DIR=str(certs), MARKETS_CONFIG=str(markets),
        CLOB_URL=dead, CLOB_WS_URL=dead.replace("http", "ws"), DRY_RUN="true",
        JOURNAL_DIR=str(tmp / "journal"),
    )  # fmt: skip
    env.update(extra)
    return env


async def test_executor_port_in_use(certs: Path, tmp_path: Path, port_in_use: int):
    assert_refused(
        await run_to_exit("polymm.executor.service", executor_env(certs, tmp_path, port_in_use)),
        f"trading-executor: cannot listen on 127.0.0.1:{port_in_use}: address already in use",
    )


async def test_executor_unresolvable_listen_host(certs: Path, tmp_path: Path):
    port = free_port()
    env = executor_env(certs, tmp_path, port, LISTEN_HOST=UNRESOLVABLE)
    assert_unresolvable(await run_to_exit("polymm.executor.service", env), "trading-executor", port)


async def test_executor_journal_dir_that_cannot_be_created(certs: Path, tmp_path: Path):
    (tmp_path / "a-file").write_text("not a directory")
    journal = tmp_path / "a-file" / "journal"
    env = executor_env(certs, tmp_path, free_port(), JOURNAL_DIR=str(journal))
    assert_refused(
        await run_to_exit("polymm.executor.service", env),
        f"trading-executor: JOURNAL_DIR={str(journal)!r}: cannot create (not a directory)",
    )


async def test_monitor_listen_host_not_on_this_machine(certs: Path):
    port = free_port()
    assert_refused(
        await run_to_exit("polymm.relay.monitor", monitor_env(certs, port, "203.0.113.9")),  # TEST-NET-3
        f"relay-monitor: cannot listen on 203.0.113.9:{port}: address not available on this host",
    )
