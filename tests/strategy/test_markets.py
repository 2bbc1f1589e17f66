"""Markets file: the example loads; every bad field is a ConfigError naming the market and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from polymm.service.config import ConfigError
from polymm.strategy.markets import load_markets

EXAMPLE = Path(__file__).with_name("markets_example.toml")
T0 = 1_795_600_800.0  # 2026-11-25T10:00:00Z
NAME = "btc-updown-15m-1795600800"
YES = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
NO = "52114319501245915516055106046884209969926127482827954674443846427813813222426"


def test_example_loads_with_times_normalised():
    up, above = load_markets(EXAMPLE)
    assert up.name == NAME and up.kind == "up_down" and up.strike is None
    assert (up.start_s, up.expiry_s) == (T0, T0 + 900)
    assert up.net_limit == 60 and above.net_limit == 200  # defaults to max_position
    assert above.kind == "above" and above.strike == 100_000 and above.tick_size == 0.001
    assert above.basis_usd(100_000) == pytest.approx(-20.0)  # -2 bps
    assert above.basis_uncertainty_usd(100_000) == pytest.approx(15.0)
    assert up.vol_prior_per_sqrt_s == pytest.approx(0.6 / (365 * 24 * 3600) ** 0.5)


def first_market_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text, old
    path = tmp_path / "markets.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_time_formats(tmp_path: Path):
    toml_dt = first_market_with(
        tmp_path, 'start_time = "2026-11-25T10:00:00Z"', "start_time = 2026-11-25T10:00:00Z"
    )
    assert load_markets(toml_dt)[0].start_s == T0
    offset = first_market_with(
        tmp_path, 'start_time = "2026-11-25T10:00:00Z"', 'start_time = "2026-11-25T11:00:00+01:00"'
    )
    assert load_markets(offset)[0].start_s == T0
    unix = first_market_with(tmp_path, 'start_time = "2026-11-25T10:00:00Z"', f"start_time = {int(T0)}")
    assert load_markets(unix)[0].start_s == T0


BAD = [
    ('condition_id = "0x5f65', 'condition_id = "0x5f6', "condition_id"),
    ('yes_token = "7132', 'yes_token = "x7132', "yes_token"),
    (f'no_token = "{NO}"', f'no_token = "{YES}"', "no_token"),  # the same token twice
    ('binance_symbol = "BTCUSDT"', 'binance_symbol = "btc/usdt"', "binance_symbol"),
    ('kind = "up_down"', 'kind = "updown"', "kind"),
    ('start_time = "2026-11-25T10:00:00Z"', 'start_time = "2026-11-25T10:00:00"', "start_time"),  # no tz
    ('start_time = "2026-11-25T10:00:00Z"', 'start_time = "yesterday"', "start_time"),
    ('start_time = "2026-11-25T10:00:00Z"', "start_time = 1795600800000", "start_time"),  # ms
    ('start_time = "2026-11-25T10:00:00Z"', 'start_time = "2026-11-25T10:15:00Z"', "start_time"),
    ('start_time = "2026-11-25T10:00:00Z"\n', "", "start_time"),  # up_down needs it
    ('expiry = "2026-11-25T10:15:00Z"', "expiry = true", "expiry"),
    ('expiry = "2026-11-25T10:15:00Z"\n', "", "expiry"),
    ("tick_size = 0.01", "tick_size = 0.02", "tick_size"),
    ("neg_risk = false", 'neg_risk = "no"', "neg_risk"),
    ("min_order_size = 5", "min_order_size = 0", "min_order_size"),
    ("quote_size = 10", "quote_size = 10.005", "quote_size"),
    ("quote_size = 10", "quote_size = 4", "quote_size"),  # below min size
    ("quote_size = 10", "quote_size = -1", "quote_size"),
    ('quote_mode = "both"', 'quote_mode = "no_only"', "quote_mode"),
    ("min_edge = 0.02", "min_edge = 0.5", "min_edge"),
    ("min_edge = 0.02", "min_edge = 0", "min_edge"),
    ("requote_threshold = 0.01", "requote_threshold = 0", "requote_threshold"),
    ("skew = 0.02", "skew = -0.01", "skew"),
    ("max_position = 100", "max_position = 0", "max_position"),
    ("max_position = 100", "max_position = 4", "max_position"),
    ("max_market_position = 60", "max_market_position = 2", "max_market_position"),
    ("max_notional = 80", "max_notional = 0", "max_notional"),
    ("basis = 0.0", "basis = nan", "basis"),
    ('basis_unit = "usd"', 'basis_unit = "pct"', "basis_unit"),
    ("basis_uncertainty = 5.0", "basis_uncertainty = -1", "basis_uncertainty"),
    ("stop_before_expiry_s = 30", "stop_before_expiry_s = 900", "stop_before_expiry_s"),
    ("vol_prior_annual = 0.6", "vol_prior_annual = 0", "vol_prior_annual"),
    ("vol_prior_annual = 0.6", "vol_prior_annual = 0.6\nsurprise = 1", "surprise"),
    (f'name = "{NAME}"\n', "", "name"),
]


@pytest.mark.parametrize("old, new, field", BAD, ids=[f"{b[2]}:{b[1][:24]}" for b in BAD])
def test_each_invalid_field_is_named(tmp_path: Path, old: str, new: str, field: str):
    with pytest.raises(ConfigError) as err:
        load_markets(first_market_with(tmp_path, old, new))
    text = str(err.value)
    assert field in text
    assert NAME in text or (field == "name" and "#0" in text)


def test_above_needs_a_strike_and_files_need_markets(tmp_path: Path):
    path = tmp_path / "markets.toml"
    path.write_text(EXAMPLE.read_text().replace("strike = 100000\n", ""))
    with pytest.raises(ConfigError, match="'btc-above-100k-2026-11-26': strike"):
        load_markets(path)
    path.write_text(EXAMPLE.read_text().replace('name = "btc-above-100k-2026-11-26"', f'name = "{NAME}"'))
    with pytest.raises(ConfigError, match="name: appears twice"):
        load_markets(path)
    path.write_text("markets = []\n")
    with pytest.raises(ConfigError, match="no markets"):
        load_markets(path)
    path.write_text("[[markets]\n")
    with pytest.raises(ConfigError, match="MARKETS_CONFIG"):
        load_markets(path)
    with pytest.raises(ConfigError, match="MARKETS_CONFIG"):
        load_markets(tmp_path / "missing.toml")
