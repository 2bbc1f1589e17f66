"""The unit template, rendered for each service, passes systemd's own `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "binance-sender": ("binance-sender", "Binance BBO to Amsterdam over mutual TLS", []),
    "binance-collector": ("binance-sender", "Binance BBO and trades to the data collector", []),
    "data-collector": ("data-collector", "market data into the Parquet lake on S3", ["/data"]),
    "trading-executor": ("trading-executor", "quotes on Polymarket from Binance signals", []),
}


def render(name: str, tmp: Path) -> Path:
    command, description, writable = SERVICES[name]
    venv = Path(sys.executable).parent.parent
    env_file = tmp / f"{name}.env"
    env_file.write_text("AMS_HOST=127.0.0.1\n")
    env_file.chmod(0o600)
    template = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(
        (ROOT / "templates" / "polymm.service.j2").read_text()
    )
    unit = tmp / f"{name}.service"
    unit.write_text(template.render(
        service_name=name, service_description=description, service_command=command, install_dir=str(ROOT),
        venv_dir=str(venv), env_file=str(env_file), service_user="root", state_dir=str(tmp),
        extra_writable=[str(tmp / p.strip("/")) for p in writable],
    ))  # fmt: skip
    return unit


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    (tmp_path / "data").mkdir()
    unit = render(name, tmp_path)
    text = unit.read_text()
    assert "Type=notify" in text and "WatchdogSec=30" in text and "NoNewPrivileges=yes" in text
    assert "RestartPreventExitStatus=2" in text  # a start-up error (exit 2) is not restarted in a loop
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert unit.name not in proc.stdout + proc.stderr  # no warning about our unit either


def test_verify_catches_a_broken_unit(tmp_path: Path):
    """Guards the check above: a unit with a bad directive value must fail verification."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    (tmp_path / "data").mkdir()
    unit = render("binance-sender", tmp_path)
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert "Failed to parse service type" in proc.stdout + proc.stderr  # verify exits 0 on such warnings
