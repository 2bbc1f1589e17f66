"""The polymm-backtest command as a user runs it: reference strategy, determinism, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from polymm.lake.partition import PartKey, hour_of
from tests.backtest.lakes import MS, NO, SYMBOL, T0, YES, LakeRows, S, markets_toml, write_lake


def busy_rows(seconds: int = 120) -> LakeRows:
    """Binance drifting up and down, books following it, sellers and buyers trading at the touch."""
    r = LakeRows()
    for i in range(seconds * 10):
        ts = T0 + i * 100 * MS
        mid = 97_000 + 40 * ((i // 50) % 2 * 2 - 1) * ((i % 50) / 50)
        r.bbo(ts, mid - 0.5, mid + 0.5)
    for i in range(seconds * 2):
        ts = T0 + i * 500 * MS + 7 * MS
        b = 0.46 + 0.01 * (i % 3)
        r.book(ts, YES, [(b, 60.0), (b - 0.01, 200.0)], [(b + 0.06, 60.0), (b + 0.07, 100.0)])
        r.book(ts + 1 * MS, NO, [(0.94 - b - 0.06, 60.0)], [(1 - b, 60.0)])
        side = "SELL" if i % 2 else "BUY"
        r.trade(ts + 200 * MS, YES, b if side == "SELL" else b + 0.06, 40.0, side)
        r.trade(ts + 210 * MS, NO, 0.94 - b - 0.06, 40.0, "SELL")
    r.event(T0 + 60 * S, "binance", "binance_reconnect", SYMBOL, down_ms=120)
    return r


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polymm.backtest", *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("bt")
    return write_lake(tmp / "data", busy_rows()), markets_toml(tmp / "m.toml", min_edge=0.01)


def test_reference_strategy_run_and_byte_identical_outputs(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    outs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        (tmp_path / "rtt.txt").write_text("38\n45\n52\n61\n")
        res = cli(
            "--lake",
            str(root),
            "--markets",
            str(markets),
            "--date",
            "2026-11-25",
            "--out",
            str(out),
            "--latency",
            f"file:{tmp_path / 'rtt.txt'}",
            "--seed",
            "7",
        )
        assert res.returncode == 0, res.stderr
        outs.append(out)
    for name in ("fills.parquet", "orders.parquet", "summary.json", "report.html"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    summary = json.loads((outs[0] / "summary.json").read_text())
    market = summary["markets"]["test-above"]
    assert summary["total"]["fills"] > 0 and market["orders_posted"] > 0
    assert summary["events"]["binance_bbo"] == 1200 and summary["events"]["polymarket_l2"] == 480
    assert [g["kind"] for g in summary["gaps"]] == ["binance_reconnect"]
    assert market["settlement_source"].startswith("final Polymarket mid")
    assert "TOTAL" in res.stdout and "gaps crossed: 1" in res.stdout
    html = (outs[0] / "report.html").read_text()
    assert html.count("<svg") == 3 and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    fills = pq.read_table(outs[0] / "fills.parquet")
    assert set(fills.column_names) >= {"ts_ns", "price", "size", "markout_1s", "markout_5s", "markout_30s"}


def test_resolution_event_settles(tmp_path: Path) -> None:
    rows = busy_rows(30)
    rows.event(
        T0 + 29 * S, "polymarket", "market_resolved", "", market="0x" + "5f" * 32, winning_asset_id=YES
    )
    root = write_lake(tmp_path / "data", rows)
    out = tmp_path / "out"
    res = cli(
        "--lake",
        str(root),
        "--markets",
        str(markets_toml(tmp_path / "m.toml", min_edge=0.01)),
        "--start",
        "2026-11-25T10",
        "--end",
        "2026-11-25T10",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    market = json.loads((out / "summary.json").read_text())["markets"]["test-above"]
    assert market["settlement_source"].startswith("market_resolved event")
    assert market["settlement_prices"] == {YES: 1.0, NO: 0.0}
    pos = market["position_end"]
    assert market["fills"] > 0 and (pos[YES] or pos[NO])
    # the last books: YES 0.48/0.54 (mid 0.51), NO 0.40/0.52 (mid 0.46); resolution pays YES 1, NO 0
    settled_minus_marked = pos[YES] * (1.0 - 0.51) + pos[NO] * (0.0 - 0.46)
    assert market["pnl_settled"] - market["pnl_marked_mid"] == pytest.approx(settled_minus_marked, abs=1e-6)


def _one_line_exit_2(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("backtest:")]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_empty_range(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    res = cli("--lake", str(root), "--markets", str(markets), "--date", "2026-11-26", "--out", str(tmp_path))
    _one_line_exit_2(res, "empty range", str(root))
    res = cli(
        "--lake",
        str(root),
        "--markets",
        str(markets),
        "--start",
        "2026-11-25T10:00:05Z",
        "--end",
        "2026-11-25T10:00:05Z",
        "--out",
        str(tmp_path),
    )
    _one_line_exit_2(res, "empty range", "is not after start")


def test_missing_partition(tmp_path: Path) -> None:
    rows = LakeRows()
    for hour in (0, 2):  # hour 1 of BTCUSDT BBO never made it into the lake
        rows.bbo_stream(T0 + hour * 3600 * S, T0 + hour * 3600 * S + 2 * S, 100 * MS)
    for hour in (0, 1, 2):
        for token in (YES, NO):
            rows.book(T0 + hour * 3600 * S + 50 * MS, token, [(0.48, 10.0)], [(0.52, 10.0)])
    root = write_lake(tmp_path / "data", rows)
    markets = markets_toml(tmp_path / "m.toml")
    res = cli(
        "--lake", str(root), "--markets", str(markets), "--date", "2026-11-25", "--out", str(tmp_path / "o")
    )
    missing = PartKey("binance_bbo", SYMBOL, hour_of(T0) + 1).dir
    _one_line_exit_2(res, "missing partition", missing)
    res = cli(
        "--lake",
        str(root),
        "--markets",
        str(markets),
        "--date",
        "2026-11-25",
        "--out",
        str(tmp_path / "o"),
        "--allow-missing",
    )
    assert res.returncode == 0, res.stderr
    read = json.loads((tmp_path / "o" / "summary.json").read_text())["run"]["read"]
    assert read["missing_partitions"] == [f"{root}/{missing}"]


def _bbo_file(root: Path) -> Path:
    return next((root / "binance" / "bbo").rglob("data_000.parquet"))


def test_older_schema_without_a_needed_column(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    copy = tmp_path / "lake"
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    path = _bbo_file(copy)
    old = pq.read_table(path).drop_columns(["bid_qty", "sender_recv_ts"])  # as an older collector wrote it
    pq.write_table(old, path)
    res = cli(
        "--lake", str(copy), "--markets", str(markets), "--date", "2026-11-25", "--out", str(tmp_path / "o")
    )
    _one_line_exit_2(res, str(path), "older lake version", "bid_qty")


def test_older_schema_without_an_optional_column_is_read(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    copy = tmp_path / "lake"
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    path = _bbo_file(copy)
    pq.write_table(pq.read_table(path).drop_columns(["relay_seq"]), path)
    res = cli(
        "--lake", str(copy), "--markets", str(markets), "--date", "2026-11-25", "--out", str(tmp_path / "o")
    )
    assert res.returncode == 0, res.stderr
    read = json.loads((tmp_path / "o" / "summary.json").read_text())["run"]["read"]
    assert read["columns_filled"] == [f"{path}: relay_seq"]


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_parquet_file(lake: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    root, markets = lake
    copy = tmp_path / "lake"
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    path = _bbo_file(copy)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # footer intact, column data overwritten
        path.write_bytes(data[:4] + b"\xff" * (len(data) // 2) + data[4 + len(data) // 2 :])
    res = cli(
        "--lake", str(copy), "--markets", str(markets), "--date", "2026-11-25", "--out", str(tmp_path / "o")
    )
    _one_line_exit_2(res, str(path))


def test_bad_options(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    res = cli("--lake", str(root), "--markets", str(markets), "--date", "2026-13-45")
    _one_line_exit_2(res, "--date")
    res = cli("--lake", str(root), "--markets", str(markets), "--date", "2026-11-25", "--latency", "warp:3")
    _one_line_exit_2(res, "--latency")
    res = cli("--lake", str(tmp_path / "nope"), "--markets", str(markets), "--date", "2026-11-25")
    _one_line_exit_2(res, "not a directory")
    res = cli("--lake", str(root), "--markets", str(markets), "--date", "2026-11-25", "--set", "min_edge=0.9")
    _one_line_exit_2(res, "strategy parameter")


def test_sweep_runs_cells_in_parallel_processes(lake: tuple[Path, Path], tmp_path: Path) -> None:
    root, markets = lake
    out = tmp_path / "sweep"
    res = cli(
        "--lake",
        str(root),
        "--markets",
        str(markets),
        "--days",
        "2026-11-25",
        "--out",
        str(out),
        "--sweep",
        "min_edge=0.01,0.03",
        "--sweep",
        "quote_size=10,20",
        "--jobs",
        "2",
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads((out / "sweep.json").read_text())
    assert len(rows) == 4 and all("error" not in r for r in rows)
    assert sorted((r["min_edge"], r["quote_size"]) for r in rows) == [
        (0.01, 10),
        (0.01, 20),
        (0.03, 10),
        (0.03, 20),
    ]
    assert (out / "cell-000" / "report.html").exists()
    by = {(r["min_edge"], r["quote_size"]): r for r in rows}
    assert (
        by[(0.01, 10)]["fills"] != by[(0.03, 10)]["fills"]
        or by[(0.01, 10)]["orders"] != by[(0.03, 10)]["orders"]
    )


def test_s3_lake_reads_the_same_as_local(lake: tuple[Path, Path], tmp_path: Path, s3_server) -> None:  # type: ignore[no-untyped-def]
    import os

    root, markets = lake
    bucket = s3_server.create_bucket("bt-lake")
    client = s3_server.client()
    for f in root.rglob("*.parquet"):
        client.put_object(Bucket=bucket, Key=f"prefix/{f.relative_to(root)}", Body=f.read_bytes())
    env = {**os.environ, **s3_server.env()}
    local = cli(
        "--lake", str(root), "--markets", str(markets), "--date", "2026-11-25", "--out", str(tmp_path / "l")
    )
    remote = cli(
        "--lake",
        f"s3://{bucket}/prefix",
        "--markets",
        str(markets),
        "--date",
        "2026-11-25",
        "--out",
        str(tmp_path / "r"),
        env=env,
    )
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    assert (tmp_path / "l" / "fills.parquet").read_bytes() == (tmp_path / "r" / "fills.parquet").read_bytes()
    a = json.loads((tmp_path / "l" / "summary.json").read_text())
    b = json.loads((tmp_path / "r" / "summary.json").read_text())
    a["run"].pop("lake"), b["run"].pop("lake")
    a["run"]["read"].pop("missing_partitions"), b["run"]["read"].pop("missing_partitions")
    assert a == b
    missing = cli(
        "--lake", f"s3://{bucket}/other", "--markets", str(markets), "--date", "2026-11-25", env=env
    )
    _one_line_exit_2(missing, "empty range", f"s3://{bucket}/other")
