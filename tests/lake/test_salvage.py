"""polymm-lake-salvage against SeaweedFS (it enforces If-None-Match and checks SHA-256): a dead
host's disk, killed mid-stream, reaches S3 exactly once next to its replacement's files, and no
object in S3 is ever overwritten."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from polymm.collector.config import S3Target
from polymm.lake import Lake
from polymm.lake.salvage import salvage

from .conftest import REGION, Clock, S3Server, trade
from .crash_writer import T0, row
from .test_crash import BBO_DIR, _run_and_kill
from .test_uploader import uploader

PREFIX = "lake/"


def run_cli(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script, as an operator (or salvage-lake.yml) runs it."""
    exe = Path(sys.executable).with_name("polymm-lake-salvage")
    return subprocess.run([str(exe), str(directory)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})  # fmt: skip


def objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    s3 = server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def seqs(body: bytes) -> list[int]:
    return pq.read_table(io.BytesIO(body)).column("relay_seq").to_pylist()


async def write_rows(data_dir: Path, seq: range) -> None:
    lake = Lake(data_dir, clock=Clock(T0 + 30 * 60 * 10**9))  # mid-hour 00
    for i in seq:
        lake.append("binance_bbo", "BTCUSDT", row(i))
    await lake.close()


async def test_dead_disk_reaches_s3_once_beside_the_new_host(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    # The old host: an uploaded file for hour 00, then kill -9 in the middle of the stream.
    await write_rows(old, range(100))
    assert await uploader(old, s3_server, bucket, prefix=PREFIX).final_upload(30)
    durable = _run_and_kill(old, 100, 7)
    first = objects(s3_server, bucket)
    assert list(first) == [f"{PREFIX}{BBO_DIR}/data_000.parquet"]

    # The replacement starts from an empty disk, writes the same hour and uploads first: its
    # data_000 is taken in S3, so its file moves to data_001 (never over the old host's object).
    await write_rows(new, range(10**6, 10**6 + 50))
    assert await uploader(new, s3_server, bucket, prefix=PREFIX).final_upload(30)

    target = S3Target(bucket, REGION, s3_server.url, PREFIX)
    report = await salvage(old, target, upload_timeout_s=60)
    assert report.complete and report.files_compacted == 1 and report.rows_compacted >= durable - 100
    # The old state says data_001 is the next free name; the new host holds it: renamed, not replaced.
    assert (report.uploaded, report.renamed, report.left_on_disk) == (1, 1, 0)

    after = objects(s3_server, bucket)
    assert sorted(after) == [f"{PREFIX}{BBO_DIR}/data_{n:03d}.parquet" for n in range(3)]
    assert after[f"{PREFIX}{BBO_DIR}/data_000.parquet"] == first[f"{PREFIX}{BBO_DIR}/data_000.parquet"]
    new_seqs = seqs(after[f"{PREFIX}{BBO_DIR}/data_001.parquet"])
    assert new_seqs == list(range(10**6, 10**6 + 50))  # the new host's object is untouched
    old_seqs = seqs(after[f"{PREFIX}{BBO_DIR}/data_000.parquet"]) + seqs(
        after[f"{PREFIX}{BBO_DIR}/data_002.parquet"]
    )
    # Exactly once: no gap, no duplicate, everything the dead writer reported durable.
    assert old_seqs == list(range(len(old_seqs))) and len(old_seqs) >= durable

    # Run again (an operator's retry): nothing is sent, nothing changes.
    again = await salvage(old, target, upload_timeout_s=60)
    assert (again.uploaded, again.renamed, again.files_compacted, again.left_on_disk) == (0, 0, 0, 0)
    assert objects(s3_server, bucket) == after


async def test_trades_replayed_to_the_new_host_are_not_stored_twice(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    """The relay replays what the old host journaled but had not acknowledged: the new host stores
    trades 91-150 while the dead disk holds 1-100. S3 ends with each of 1-150 exactly once."""
    old, new = tmp_path / "old", tmp_path / "new"
    clock = Clock(T0 + 30 * 60 * 10**9)
    for data_dir, ids, base_ts in ((old, range(1, 101), T0), (new, range(91, 151), T0 + 10**9)):
        lake = Lake(data_dir, clock=clock)
        for i in ids:
            lake.append("binance_trades", "BTCUSDT", trade(base_ts + i * 10**6, i=i))  # new recv_ts on replay
        await lake.close()
    assert await uploader(new, s3_server, bucket, prefix=PREFIX).final_upload(30)

    report = await salvage(old, S3Target(bucket, REGION, s3_server.url, PREFIX), upload_timeout_s=60)
    assert report.complete and report.trades_dropped == 10 and report.uploaded == 1
    ids = sorted(i for body in objects(s3_server, bucket).values()
                 for i in pq.read_table(io.BytesIO(body)).column("trade_id").to_pylist())  # fmt: skip
    assert ids == list(range(1, 151))
    again = await salvage(old, S3Target(bucket, REGION, s3_server.url, PREFIX), upload_timeout_s=60)
    assert (again.uploaded, again.trades_dropped) == (0, 0)


def test_cli_summary_line(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    old = tmp_path / "old"
    _run_and_kill(old, 0, 3)

    out = run_cli(old, {"S3_BUCKET": bucket, "S3_ENDPOINT_URL": s3_server.url, "S3_REGION": REGION})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    summary = json.loads(line.removeprefix("salvage "))
    assert summary["complete"] and summary["uploaded"] == 1 and summary["left_on_disk"] == 0
    body = next(iter(objects(s3_server, bucket).values()))
    assert (
        hashlib.sha256(body).hexdigest()
        == hashlib.sha256(next((old / "lake").rglob("data_*.parquet")).read_bytes()).hexdigest()
    )


@pytest.mark.parametrize("case", ["missing", "not_a_lake", "no_bucket", "wrong_bucket", "in_use"])
async def test_bad_setting_or_directory_is_one_line_exit_2(
    case: str, tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    env = {"S3_BUCKET": "no-such-bucket-here" if case == "wrong_bucket" else bucket,
           "S3_ENDPOINT_URL": s3_server.url}  # fmt: skip
    if case == "no_bucket":
        env["S3_BUCKET"] = ""
    directory = tmp_path / "old"
    live = None
    if case != "missing":
        directory.mkdir()
    if case not in ("missing", "not_a_lake"):
        await write_rows(directory, range(10))
    if case == "in_use":
        live = Lake(directory)  # a running collector's DATA_DIR: its lock is held
    try:
        out = run_cli(directory, env)
    finally:
        if live is not None:
            await live.close()
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and err[0].startswith("polymm-lake-salvage: ")
    expected = {
        "missing": "does not exist", "not_a_lake": "holds no lake", "no_bucket": "S3_BUCKET",
        "wrong_bucket": "no-such-bucket-here", "in_use": str(directory),
    }[case]  # fmt: skip
    assert expected in err[0]
    assert "Traceback" not in err[0]
