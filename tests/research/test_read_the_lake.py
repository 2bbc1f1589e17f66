"""The README's lake readers (pyarrow, polars, DuckDB), extracted from README.md and run exactly as
written against a lake the collector's own Lake and S3Uploader put on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from polymm.lake import Lake, S3Uploader, bbo_row, polymarket_trade_row
from polymm.relay.events import Bbo
from polymm.sim.s3 import REGION, SeaweedS3
from tests.lake.conftest import HOUR_NS, T0, Clock

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "marketdata-backtest"  # the README's bucket
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
NO = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
TRADES = 12


def readme_snippets() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    found = dict(re.findall(r"<!-- read-the-lake: (\w+) -->\n```python\n(.*?)```", text, flags=re.S))
    assert set(found) == {"pyarrow", "polars", "duckdb"}, found.keys()
    return found


async def build_lake(data_dir: Path, s3: SeaweedS3) -> None:
    clock = Clock(T0 + 60 * 10**9)  # 2026-01-19T00:01Z, the README's day
    lake = Lake(data_dir, clock=clock, grace_s=1)
    for i in range(20):  # spot bookTicker: no exchange time on the wire (0)
        ts = T0 + i * 10**9
        event = Bbo(
            "BTCUSDT", ts - 3_000_000, 0, 0, 1000 + i, 97000.0 + i, 1.0, 97000.5 + i, 2.0, i + 1, ts, ts
        )
        lake.append("binance_bbo", "BTCUSDT", bbo_row(event))
    for i in range(TRADES):
        token = YES if i % 3 else NO
        ts = T0 + i * 10**9
        side = "BUY" if i % 2 else "SELL"
        row = polymarket_trade_row(
            ts, token, 0.5 + i / 100, 10.0 + i, side, ts // 10**6, "1.1", f"0x{i:064x}"
        )
        lake.append("polymarket_trades", token, row)
    await lake.flush()
    clock.now = T0 + HOUR_NS + 2 * 10**9  # hour 00 closed: compact it
    await lake.tick()
    await lake.wait_idle()
    await lake.close()
    s3.create_bucket(BUCKET)
    uploader = S3Uploader(data_dir, BUCKET, REGION, endpoint_url=s3.url, interval_s=3600.0)
    try:
        assert await uploader.cycle()
        assert uploader.stats.uploads_ok == 3 and uploader.stats.files_pending == 0
    finally:
        await uploader.close()


@pytest.fixture(scope="module")
def lake_on_s3(s3_server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    asyncio.run(build_lake(tmp_path_factory.mktemp("lake"), s3_server))
    yield s3_server


@pytest.fixture
def s3_env(lake_on_s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a researcher sets to read from an S3-compatible server instead of AWS."""
    for name, value in lake_on_s3.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake_on_s3.url)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def run_snippet(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(readme_snippets()[name], f"README.md[{name}]", "exec"), namespace)  # the README, verbatim
    return namespace


def check_trades(table: pa.Table) -> None:
    rows = sorted(table.to_pylist(), key=lambda r: r["recv_ts"])
    assert len(rows) == TRADES
    for i, row in enumerate(rows):
        assert row["token"] == row["token_id"] == (YES if i % 3 else NO)  # 77 digits, as text
        assert row["side"] == ("buy" if i % 2 else "sell")
        assert row["fee_rate_bps"] == "1.1" and row["transaction_hash"] == f"0x{i:064x}"
        assert str(row["date"]) == "2026-01-19" and row["hour"] == 0


@pytest.mark.usefixtures("s3_env")
def test_pyarrow_one_liners():
    ns = run_snippet("pyarrow")
    check_trades(ns["trades"])
    bbo = ns["bbo"].to_pylist()
    assert [r["bid"] for r in bbo] == [97000.0 + i for i in range(20)]
    assert all(r["exch_ts"] is None and r["txn_ts"] is None for r in bbo)  # spot: no venue time, null


@pytest.mark.usefixtures("s3_env")
def test_polars_one_liner():
    check_trades(run_snippet("polars")["trades"].to_arrow())


@pytest.mark.usefixtures("s3_env")
def test_duckdb_one_liner():
    check_trades(run_snippet("duckdb")["trades"])


def test_polars_without_the_token_schema_is_what_the_readme_warns_about(s3_env: None):
    """Guards the snippet above: without hive_schema polars takes the token for an integer."""
    import polars as pl

    with pytest.raises(Exception, match=r"(?i)invalid primitive value|overflow|pars|cast"):
        pl.scan_parquet(f"s3://{BUCKET}/polymarket/trades/", hive_partitioning=True).collect()
