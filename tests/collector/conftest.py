from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from polymm.collector.config import CollectorConfig
from polymm.collector.service import DataCollector
from polymm.service.config import Env
from tests.conftest import eventually, running
from tests.lake.conftest import REGION, S3Server

YES, NO = "71321045679252212594626385532706912750332728571942532289631379312455583992563", "5210"


def collector_env(certs: Path, data_dir: Path, s3: S3Server, bucket: str, poly_url: str, **extra: str) -> Env:
    return Env({
        "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": "0", "CERT_DIR": str(certs), "DATA_DIR": str(data_dir),
        "S3_BUCKET": bucket, "S3_REGION": REGION, "S3_ENDPOINT_URL": s3.url,
        "POLYMARKET_TOKENS": f"{YES},{NO}", "POLYMARKET_WS_URL": poly_url, "FLUSH_INTERVAL_SECS": "0.2",
        "UPLOAD_INTERVAL_SECS": "3600", "LINK_DEAD_SECS": "2", **extra,
    })  # fmt: skip


def new_bucket(s3: S3Server, name: str) -> str:
    s3.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@asynccontextmanager
async def running_collector(env: Env) -> AsyncIterator[DataCollector]:
    collector = DataCollector(CollectorConfig.from_env(env))
    async with running(collector.run, 60):
        await eventually(lambda: collector.receiver.port != 0, what="collector listening")
        yield collector


def read_s3_table(s3: S3Server, bucket: str, prefix: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Keys under prefix, and every row of those Parquet objects (downloaded, read with pyarrow)."""
    import io

    client = s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
    rows: list[dict[str, Any]] = []
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        rows += pq.read_table(io.BytesIO(body)).to_pylist()
    return keys, rows
