"""Markets config files for local runs (demo, tests, benchmarks): one "above K at T" market."""

from __future__ import annotations

import time
from pathlib import Path


def write_above_market(
    path: Path,
    *,
    name: str,
    condition_id: str,
    yes_token: str,
    no_token: str,
    strike: float,
    expires_in_s: float,
    symbol: str = "BTCUSDT",
    **params: float,
) -> Path:
    """Write a markets TOML with one market on `symbol` > `strike`, expiring `expires_in_s` from now.

    `params` are further per-market settings (quote_size, min_edge, requote_threshold, ...)."""
    lines = [
        "[[markets]]",
        f'name = "{name}"',
        f'condition_id = "{condition_id}"',
        f'yes_token = "{yes_token}"',
        f'no_token = "{no_token}"',
        f'binance_symbol = "{symbol}"',
        'kind = "above"',
        f"strike = {strike}",
        f"expiry = {time.time() + expires_in_s:.0f}",
        *(f"{key} = {value}" for key, value in params.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
