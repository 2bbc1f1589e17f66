"""S3 at start-up: a bucket or key S3 refuses stops the collector at once (one line, exit 2);
an S3 that does not answer does not (the collector buffers on disk and retries)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from polymm.sim.polymarket_ws import PolymarketSim
from polymm.sim.ports import free_port
from polymm.sim.s3 import SeaweedS3
from tests.collector.conftest import YES, new_bucket
from tests.collector.test_collector_service import process_env, start
from tests.conftest import OUTSIDER, eventually
from tests.relay.test_sender_service import NotifySocket


async def run_to_exit(env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polymm.collector.service", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"S3_BUCKET": "no-such-bucket"},
            "S3_BUCKET='no-such-bucket': the bucket does not exist (NoSuchBucket)",
        ),
        ({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN"}, "S3 does not know this access key id (InvalidAccessKeyId)"),
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "does not match the access key id (SignatureDoesNotMatch)"),
        (OUTSIDER.env(), "these credentials may not list the bucket (AccessDenied)"),
    ],
    ids=["NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"],
)
async def test_bucket_or_credentials_refused_at_start_is_one_line_and_exit_2(
    certs: Path, s3_server: SeaweedS3, tmp_path: Path, change: dict[str, str], expected: str
):
    bucket = new_bucket(s3_server, f"startup-{free_port()}")
    env = process_env(certs, tmp_path / "data", s3_server, bucket, "ws://127.0.0.1:9", free_port(),
                      tmp_path / "no-notify.sock")  # fmt: skip
    env.update(change)
    code, out, err = await run_to_exit(env)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: ") and expected in lines[0], (out, err)
    assert "Traceback" not in out + err and env["AWS_SECRET_ACCESS_KEY"] not in out + err
    assert not (tmp_path / "data" / "state").exists()  # refused before touching the data dir


async def test_unreachable_s3_at_start_only_warns_and_the_collector_runs(
    certs: Path, s3_server: SeaweedS3, tmp_path: Path
):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    notify = NotifySocket(tmp_path / "notify.sock")
    async with PolymarketSim(rate_hz=0, tokens=[YES]) as poly:
        env = process_env(certs, tmp_path / "data", s3_server, "marketdata-later", poly.url, free_port(),
                          notify.path)  # fmt: skip
        env["S3_ENDPOINT_URL"] = dead
        proc = await start(env)
        await eventually(lambda: notify.count("READY=1") == 1, timeout_s=30, what="READY=1 with S3 down")
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    log = output.decode()
    assert proc.returncode == 0, log[-2000:]
    assert "unreachable at start-up" in log and "buffering on disk and retrying" in log, log[-2000:]
    assert "Traceback" not in log
