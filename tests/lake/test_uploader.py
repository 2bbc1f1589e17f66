"""S3 upload against a real moto server: verified, idempotent, resilient, retention-safe."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from polymm.lake import Lake, S3Uploader
from polymm.lake.state import StateStore
from polymm.sim.s3 import SeaweedS3

from .conftest import HOUR_NS, REGION, T0, Clock, S3Server, bbo, book
from .corrupting_proxy import CorruptingProxy

TOKEN = "8033940942096212345"
H0 = "date=2026-01-19/hour=00"


async def make_files(data_dir: Path, hours: int = 1, start_hour: int = 0) -> list[str]:
    """Write a couple of tables for `hours` hours through a Lake; returns the new lake keys."""
    before = set(local_keys(data_dir))
    clock = Clock(T0 + (start_hour + hours) * HOUR_NS - 10**9)
    lake = Lake(data_dir, clock=clock)
    for h in range(start_hour, start_hour + hours):
        for i in range(200):
            ts = T0 + h * HOUR_NS + i * 10**6
            lake.append("binance_bbo", "BTCUSDT", bbo(ts, i=i))
            lake.append("polymarket_l2", TOKEN, book(ts, TOKEN, i))
    await lake.close()
    return sorted(set(local_keys(data_dir)) - before)


def local_keys(data_dir: Path) -> list[str]:
    root = data_dir / "lake"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def s3_objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    s3 = server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def uploader(data_dir: Path, server: S3Server, bucket: str, **kw: object) -> S3Uploader:
    opts: dict[str, object] = {"endpoint_url": server.url, "interval_s": 3600.0}
    opts.update(kw)
    return S3Uploader(data_dir, bucket, REGION, **opts)  # type: ignore[arg-type]


async def test_upload_and_read_back(data_dir: Path, s3_server: S3Server, bucket: str) -> None:
    keys = await make_files(data_dir)
    assert keys == [
        f"binance/bbo/symbol=BTCUSDT/{H0}/data_000.parquet",
        f"polymarket/l2/token={TOKEN}/{H0}/data_000.parquet",
    ]
    up = uploader(data_dir, s3_server, bucket)
    assert await up.cycle()
    assert up.stats.uploads_ok == 2 and up.stats.files_pending == 0 and up.stats.last_upload_ns > 0
    objects = s3_objects(s3_server, bucket)
    assert sorted(objects) == keys
    for key in keys:
        assert objects[key] == (data_dir / "lake" / key).read_bytes()
    assert await up.cycle() and up.stats.uploads_ok == 2  # nothing uploaded twice

    # Read back through pyarrow's S3 filesystem as a hive dataset, equal to the local copy.
    fs = pafs.S3FileSystem(
        access_key="testing", secret_key="testing", region=REGION,
        endpoint_override=s3_server.url.removeprefix("http://"), scheme="http",
    )  # fmt: skip
    remote = ds.dataset(f"{bucket}/binance/bbo", filesystem=fs, format="parquet", partitioning="hive")
    local = pq.read_table(data_dir / "lake" / keys[0])
    got = remote.to_table(columns=local.column_names)
    assert got.equals(local.replace_schema_metadata(None))
    l2 = ds.dataset(f"{bucket}/polymarket/l2", filesystem=fs, format="parquet", partitioning="hive")
    assert l2.to_table(filter=ds.field("token") == TOKEN).num_rows == 200
    await up.close()


async def test_prefix_and_retry_after_crash_is_idempotent(
    data_dir: Path, s3_server: S3Server, bucket: str
) -> None:
    keys = await make_files(data_dir)
    s3 = s3_server.client()
    # An earlier run's PUT landed but the process died before recording it.
    s3.put_object(Bucket=bucket, Key="v1/" + keys[0], Body=(data_dir / "lake" / keys[0]).read_bytes())
    up = uploader(data_dir, s3_server, bucket, prefix="v1/")
    assert await up.cycle()
    assert (up.stats.already_present, up.stats.uploads_ok, up.stats.conflicts) == (1, 1, 0)
    assert sorted(s3_objects(s3_server, bucket)) == ["v1/" + k for k in keys]
    await up.close()


async def test_existing_different_object_is_never_overwritten(
    data_dir: Path, s3_server: S3Server, bucket: str
) -> None:
    keys = await make_files(data_dir)
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key=keys[0], Body=b"someone else's bytes")  # e.g. state db was lost
    s3.put_object(Bucket=bucket, Key=keys[0].replace("000", "001"), Body=b"and another")
    up = uploader(data_dir, s3_server, bucket)
    assert await up.cycle()
    assert up.stats.conflicts == 1
    objects = s3_objects(s3_server, bucket)
    assert objects[keys[0]] == b"someone else's bytes"
    renamed = keys[0].replace("000", "002")
    assert objects[renamed] == (data_dir / "lake" / renamed).read_bytes()
    assert not (data_dir / "lake" / keys[0]).exists()
    await up.close()


async def _wait_for(cond: object, within_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_s3_unreachable_then_back(
    data_dir: Path, s3_server: S3Server, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Black-holed S3 (server frozen): uploads time out, back off, then complete exactly once;
    the recovery is logged with how long S3 was down and how many files waited."""
    caplog.set_level(logging.INFO, "polymm.lake.uploader")
    first = await make_files(data_dir, start_hour=0)
    up = uploader(
        data_dir, s3_server, bucket, connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=1,
        backoff_initial_s=0.1, backoff_cap_s=0.5, interval_s=0.2,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(up.run(stop))
    assert await _wait_for(lambda: up.stats.uploads_ok == 2, 10)
    s3_server.pause()
    try:
        second = await make_files(data_dir, start_hour=1)
        up.kick()
        assert await _wait_for(lambda: up.stats.consecutive_failures >= 3, 15)
        assert up.stats.files_pending == 2 and up.stats.bytes_pending > 0
    finally:
        s3_server.resume()
    assert await _wait_for(lambda: up.stats.files_pending == 0 and up.stats.consecutive_failures == 0, 15)
    stop.set()
    await task
    assert up.stats.outages == 1 and up.stats.last_outage_s > 0
    (line,) = [r.getMessage() for r in caplog.records if "S3 reachable again" in r.getMessage()]
    assert re.search(r"after \d+\.\ds down \(\d+ failed attempts\): uploaded 2 waiting files, 0 still", line)
    objects = s3_objects(s3_server, bucket)
    assert sorted(objects) == sorted(first + second)  # nothing lost, nothing extra
    for key in first + second:
        assert (
            hashlib.sha256(objects[key]).digest()
            == hashlib.sha256((data_dir / "lake" / key).read_bytes()).digest()
        )


async def test_stop_and_final_upload_never_wait_on_a_frozen_s3(
    data_dir: Path, s3_server: S3Server, bucket: str
) -> None:
    """With boto3's read timeout at 60 s, a stop still returns at once and the final upload at
    its deadline; the files stay pending for the next start."""
    keys = await make_files(data_dir)
    up = uploader(data_dir, s3_server, bucket, read_timeout_s=60.0, max_attempts=3)
    s3_server.pause()
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(up.run(stop))
        assert await _wait_for(lambda: up.stats.cycles == 1, 10)  # an upload is in flight, stuck
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 10)  # not the 180 s boto3 would take
        assert not await asyncio.wait_for(up.final_upload(0.5), 10)
        assert up.stats.abandoned == 2 and up.stats.uploads_ok == 0
    finally:
        s3_server.resume()
    again = uploader(data_dir, s3_server, bucket)
    assert await again.cycle() and again.stats.files_pending == 0
    assert sorted(s3_objects(s3_server, bucket)) == keys
    await again.close()


async def test_s3_process_down_then_back(data_dir: Path, tmp_path: Path, aws_test_credentials: None) -> None:
    """Connection refused while the S3 server is stopped; pending files go up once it returns."""
    bucket = "marketdata-restart"
    server = SeaweedS3(tmp_path / "seaweed", buckets=[bucket]).start()
    try:
        server.stop(graceful=True)
        keys = await make_files(data_dir)
        up = uploader(data_dir, server, bucket, connect_timeout_s=0.5, max_attempts=1,
                      backoff_initial_s=0.1, backoff_cap_s=0.3)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(up.run(stop))
        try:
            assert await _wait_for(lambda: up.stats.consecutive_failures >= 3, 10)
            assert up.stats.uploads_ok == 0 and up.stats.files_pending == 2
            await asyncio.to_thread(server.start)  # same port, same data directory
            assert await _wait_for(lambda: up.stats.files_pending == 0, 20)
        finally:
            stop.set()
            await task
        assert sorted(s3_objects(server, bucket)) == keys
        assert up.stats.uploads_ok == 2
    finally:
        server.stop()


async def test_retention_deletes_only_uploaded_files(
    data_dir: Path, s3_server: S3Server, bucket: str
) -> None:
    clock = Clock(T0 + 2 * HOUR_NS)
    uploaded = await make_files(data_dir, start_hour=0)
    up = uploader(data_dir, s3_server, bucket, retention_s=3600.0, clock=clock)
    assert await up.cycle()
    not_uploaded = await make_files(data_dir, start_hour=1)
    assert await up.apply_retention() == 0  # uploaded, but not yet old enough
    clock.now += 3601 * 10**9
    assert await up.apply_retention() == 2
    assert local_keys(data_dir) == not_uploaded
    assert up.stats.files_deleted == 2
    assert sorted(s3_objects(s3_server, bucket)) == uploaded
    # the numbers of deleted files stay reserved: a new file for hour 00 becomes data_001
    again = await make_files(data_dir, start_hour=0)
    assert again == [k.replace("data_000", "data_001") for k in uploaded]
    await up.close()


async def test_corrupted_body_is_refused_retried_and_never_recorded(
    data_dir: Path, s3_server: S3Server, bucket: str
) -> None:
    """The promise "put with a SHA-256 checksum, confirmed" against a server that checks it: a
    body damaged in transit is refused (moto would store it, and the test would then find the
    damaged object in the bucket), the file stays pending, and the retry stores the right bytes."""
    keys = await make_files(data_dir)
    port = int(s3_server.url.rsplit(":", 1)[1])
    async with CorruptingProxy(port, corrupt=1) as proxy:
        up = S3Uploader(data_dir, bucket, REGION, endpoint_url=proxy.url, max_attempts=1, interval_s=3600.0)
        assert not await up.cycle()
        assert proxy.corrupted == 1
        assert re.search(r"BadDigest|XAmzContentSHA256Mismatch", up.stats.last_error), up.stats.last_error
        assert up.stats.uploads_ok == 0 and up.stats.files_pending == 2
        assert s3_objects(s3_server, bucket) == {}  # the damaged body was never stored
        await up.close()
        state = StateStore(data_dir / "state" / "lake.db")
        assert [r.key for r in state.pending()] == keys  # ... nor recorded as uploaded
        state.close()

        stop = asyncio.Event()
        up = S3Uploader(data_dir, bucket, REGION, endpoint_url=proxy.url, max_attempts=1,
                        backoff_initial_s=0.1, interval_s=3600.0)  # fmt: skip
        task = asyncio.create_task(up.run(stop))
        assert await _wait_for(lambda: up.stats.files_pending == 0 and up.stats.uploads_ok == 2, 20)
        stop.set()
        await task
        assert proxy.corrupted == 1 and proxy.puts == 3
    objects = s3_objects(s3_server, bucket)
    assert sorted(objects) == keys
    for key in keys:
        assert objects[key] == (data_dir / "lake" / key).read_bytes()
