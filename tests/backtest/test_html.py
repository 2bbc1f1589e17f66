"""report.html stays small for a long run: plots are thinned to html.MAX_POINTS per series."""

from __future__ import annotations

import re
from types import SimpleNamespace

from polymm.backtest import html


def test_a_day_of_samples_is_thinned_and_keeps_its_ends() -> None:
    samples = [{"ts": i * 1_000_000_000, "equity": float(i), "inventory": {}, "quotes": {}, "books": {},
                "fair": {}} for i in range(86_400)]  # fmt: skip
    summary = {"markets": {}, "gaps": [], "run": {}, "rate_use": {}}
    page = html.render(summary, samples, [SimpleNamespace(name="m", yes_token="y", no_token="n")])
    equity = re.search(r'<polyline[^>]*points="([^"]*)"', page)
    assert equity is not None
    points = equity.group(1).split()
    assert 0.9 * html.MAX_POINTS <= len(points) <= html.MAX_POINTS + 1
    assert points[0].startswith("40.0,") and points[-1].startswith(f"{html.W - html.PAD:.1f},")
    assert len(page) < 500_000
