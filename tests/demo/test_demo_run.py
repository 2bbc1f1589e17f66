"""`make demo` as a newcomer runs it: real processes, SeaweedFS for S3, and what the trader reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

QUOTE = re.compile(
    r"quote (\d\d:\d\d:\d\d\.\d{3})Z BTCUSDT mid (\d+\.\d\d) \| fair (0\.\d{4}) \| "
    r"YES bid (0\.\d\d) x10 / ask (0\.\d\d) x10 \| "
    r"tick->quote (\d+\.\d\d)ms \(sender (\d+\.\d\d) \+ relay (\d+\.\d\d) \+ decide (\d+\.\d\d)\)"
)
MONITOR = re.compile(
    r"\[relay-monitor +\] \d\d:\d\d:\d\d\.\d{3}Z (BBO|TRADE) .* sender +[\d.]+us relay +[\d.]+us$"
)


def test_demo_runs_cleanly_and_shows_the_trader_view(tmp_path: Path):
    env = {**os.environ, "DEMO_SECONDS": "6", "DEMO_DATA_DIR": str(tmp_path / "demo-data")}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "NOTIFY_SOCKET"):
        env.pop(name, None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "polymm.demo"], env=env, capture_output=True, text=True, timeout=100
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "all processes exited cleanly" in out
    assert took < 60, f"the demo took {took:.0f}s"
    assert "Traceback" not in out
    assert "unreachable" not in out and "Connection refused" not in out, out  # receivers start first
    assert " ERROR " not in out

    quotes = [m.groups() for m in QUOTE.finditer(out)]
    assert len(quotes) >= 2, out[-4000:]
    for _at, mid, fair, bid, ask, total, sender, relay, decide in quotes:
        assert 96_000 < float(mid) < 98_000
        assert float(bid) < float(fair) < float(ask)  # YES terms: the NO bid is shown as the YES ask
        hops = float(sender) + float(relay) + float(decide)
        assert abs(hops - float(total)) <= 0.02 and float(total) < 1000

    monitor = [m.group(1) for line in out.splitlines() if (m := MONITOR.search(line))]
    assert "BBO" in monitor and "TRADE" in monitor  # per-hop latency of trades as well as quotes
    assert re.search(r"relay hop: bbo p50 [\d.]+us p99 [\d.]+us, trades p50 [\d.]+us", out)

    listing = re.search(r"=== s3://marketdata-backtest: (\d+) objects ===", out)
    assert listing and int(listing.group(1)) >= 5, out[-3000:]
    for prefix in ("binance/bbo/symbol=BTCUSDT/", "binance/trades/symbol=", "polymarket/l2/token=",
                   "polymarket/trades/token=", "collector/events/"):  # fmt: skip
        assert prefix in out, prefix
    assert (tmp_path / "demo-data" / "s3" / "weed.log").exists()  # SeaweedFS served the S3 side
