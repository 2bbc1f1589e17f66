"""What site.yml would install, rendered locally from the real inventories, roles and templates
(tests/deploy/render.yml): every env file says what the service needs, every unit passes
`systemd-analyze verify` and scores 5.0 or lower on `systemd-analyze security`, ufw opens the relay
port only to the peer's address, and no secret reaches Ansible's output (run with --diff -v)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRETS = {
    "vault_collect_aws_access_key_id": "AKIATESTMARKER0000001",
    "vault_collect_aws_secret_access_key": "TESTSECRETawsSecret/Key+Marker0123456789",
    "vault_prod_poly_private_key": "0x" + "c0ffee" * 10 + "c0ff",
    "vault_prod_poly_api_key": "11111111-2222-3333-4444-555555555555",
    "vault_prod_poly_api_secret": 'TESTSECRETapi"Secret\\Marker=',
    "vault_prod_poly_api_passphrase": "TESTSECRETpassphraseMarker",
}
SEPARATE = {  # the seed's four VPSs
    "binance-sender": "203.0.113.10",
    "binance-collector": "203.0.113.11",
    "trading-executor": "203.0.113.20",
    "data-collector": "203.0.113.21",
}


def write_inventory(tmp: Path, consolidated: bool) -> list[Path]:
    """A copy of inventory/{prod,collect} (group_vars and all) plus host addresses."""
    dirs = []
    for env in ("prod", "collect"):
        dest = tmp / "inventory" / env
        shutil.copytree(ROOT / "inventory" / env, dest)
        dirs.append(dest)
    if consolidated:  # the VM test bed's shape: fra and ams each in both environments
        for env, (fra, ams) in {"prod": ("fra", "ams"), "collect": ("fra", "ams")}.items():
            (tmp / "inventory" / env / "hosts.yml").write_text(
                f"{env}:\n  hosts:\n    {fra}:\n    {ams}:\nfrankfurt:\n  hosts:\n    {fra}:\n"
                f"amsterdam:\n  hosts:\n    {ams}:\n"
            )
        hosts = {"fra": ("127.0.0.1", "10.77.0.1"), "ams": ("127.0.0.1", "10.77.0.2")}
        extra = {"ams": "data_collector_listen_port: 9002\n"}
    else:
        hosts = {name: (addr, addr) for name, addr in SEPARATE.items()}
        extra = {}
    for name, (ssh, private) in hosts.items():
        hv = tmp / "inventory" / "prod" / "host_vars" / name
        hv.mkdir(parents=True, exist_ok=True)
        (hv / "address.yml").write_text(
            f"ansible_host: {ssh}\npolymm_private_address: {private}\n{extra.get(name, '')}"
        )
    return dirs


def render(tmp: Path, consolidated: bool, *extra: str) -> tuple[Path, str]:
    inventories = write_inventory(tmp, consolidated)
    secrets = tmp / "secrets.yml"
    secrets.write_text("".join(f"{k}: {yaml_quote(v)}\n" for k, v in SECRETS.items()))
    out = tmp / "render"
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        POLYMM_VAULT_PASSWORD_DIR=str(tmp / "no-vault"),
    )
    cmd = [str(BIN / "ansible-playbook"), "tests/deploy/render.yml", "--diff", "-v", "-e", f"@{secrets}"]
    cmd += ["-e", f"polymm_render_dir={out}", "-e", "ansible_connection=local", *extra]
    for inv in inventories:
        cmd += ["-i", str(inv)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    return out, log


def yaml_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_env(path: Path) -> dict[str, str]:
    """EnvironmentFile lines as systemd reads them: NAME="value" with \\" and \\\\ escapes."""
    env = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, raw = line.partition("=")
        assert raw.startswith('"') and raw.endswith('"'), line
        env[name] = re.sub(r"\\(.)", r"\1", raw[1:-1])
    return env


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return render(tmp_path_factory.mktemp("separate"), consolidated=False)


@pytest.fixture(scope="module")
def consolidated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return render(tmp_path_factory.mktemp("consolidated"), consolidated=True)


def test_each_host_gets_exactly_its_service(separate):
    out, _ = separate
    for host in SEPARATE:
        assert sorted(p.name for p in (out / host).glob("*.service")) == [f"{host}.service"]


def test_env_files(separate):
    out, _ = separate
    sender = read_env(out / "binance-sender" / "binance-sender.env")
    assert sender["AMS_HOST"] == SEPARATE["trading-executor"] and sender["AMS_PORT"] == "9001"
    assert sender["SYMBOLS"] == "btcusdt" and sender["INCLUDE_TRADES"] == "false"
    collector = read_env(out / "binance-collector" / "binance-collector.env")
    assert collector["AMS_HOST"] == SEPARATE["data-collector"]
    assert collector["SYMBOLS"] == "btcusdt,ethusdt" and collector["INCLUDE_TRADES"] == "true"
    executor = read_env(out / "trading-executor" / "trading-executor.env")
    assert executor["DRY_RUN"] == "true"
    assert executor["MARKETS_CONFIG"] == "/etc/trading-executor/markets.toml"
    assert executor["POLY_PRIVATE_KEY"] == SECRETS["vault_prod_poly_private_key"]
    assert executor["POLY_API_SECRET"] == SECRETS["vault_prod_poly_api_secret"]  # quotes survive
    dc = read_env(out / "data-collector" / "data-collector.env")
    assert dc["S3_BUCKET"] == "marketdata-backtest" and dc["S3_REGION"] == "eu-central-1"
    assert dc["DATA_DIR"] == "/data" and dc["LISTEN_PORT"] == "9001"
    assert dc["AWS_SECRET_ACCESS_KEY"] == SECRETS["vault_collect_aws_secret_access_key"]
    assert "S3_ENDPOINT_URL" not in dc  # empty settings are left out: AWS
    for env in (sender, collector, executor, dc):
        assert "CERT_DIR" not in env  # the unit sets it to the credentials directory


def test_dry_run_only_off_when_the_inventory_says_false(tmp_path: Path):
    out, _ = render(tmp_path, False, "-e", "trading_executor_dry_run=false", "-l", "trading-executor")
    assert read_env(out / "trading-executor" / "trading-executor.env")["DRY_RUN"] == "false"


def test_no_secret_in_ansible_output(separate, consolidated):
    for out, log in (separate, consolidated):
        rendered = "".join(p.read_text() for p in out.glob("*/*.env"))
        assert SECRETS["vault_collect_aws_secret_access_key"] in rendered  # the test can see a leak
        for value in SECRETS.values():
            assert value not in log
        assert "c0ffeec0ffee" not in log and "TESTSECRET" not in log


def test_consolidated_hosts(consolidated):
    out, _ = consolidated
    assert sorted(p.name for p in (out / "fra").glob("*.service")) == [
        "binance-collector.service", "binance-sender.service",
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "ams").glob("*.service")) == [
        "data-collector.service", "trading-executor.service",
    ]  # fmt: skip
    assert read_env(out / "fra" / "binance-sender.env")["AMS_PORT"] == "9001"
    assert read_env(out / "fra" / "binance-collector.env")["AMS_PORT"] == "9002"
    assert read_env(out / "fra" / "binance-collector.env")["AMS_HOST"] == "10.77.0.2"
    assert read_env(out / "ams" / "data-collector.env")["LISTEN_PORT"] == "9002"


def test_ufw_opens_the_relay_only_to_the_peer(separate, consolidated):
    import json

    out, _ = separate
    assert json.loads((out / "binance-sender" / "ufw-relay-rules.json").read_text()) == []
    rules = json.loads((out / "trading-executor" / "ufw-relay-rules.json").read_text())
    assert [(r["src"], r["port"]) for r in rules] == [(SEPARATE["binance-sender"], "9001")]
    rules = json.loads((out / "data-collector" / "ufw-relay-rules.json").read_text())
    assert [(r["src"], r["port"]) for r in rules] == [(SEPARATE["binance-collector"], "9001")]
    out, _ = consolidated
    rules = json.loads((out / "ams" / "ufw-relay-rules.json").read_text())
    assert sorted((r["src"], r["port"]) for r in rules) == [("10.77.0.1", "9001"), ("10.77.0.1", "9002")]


def local_unit(unit: Path, tmp: Path) -> Path:
    """The rendered unit with its host paths pointed at this machine, so verify can check ExecStart."""
    venv = Path(sys.executable).parent.parent
    text = re.sub(r"/opt/[a-z-]+/venv", str(venv), unit.read_text())
    dest = tmp / unit.name
    dest.write_text(text)
    return dest


@pytest.mark.parametrize("host", sorted(SEPARATE))
def test_rendered_units_verify_and_score(separate, host: str, tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    out, _ = separate
    unit = local_unit(out / host / f"{host}.service", tmp_path)
    text = unit.read_text()
    assert "Environment=CERT_DIR=%d" in text and "LoadCredential=ca.crt:/etc/polymm/certs/" in text
    assert f"User={host}" in text and "Type=notify" in text
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and unit.name not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    print(f"{host}: systemd-analyze security exposure {match.group(1)}")
    assert float(match.group(1)) <= 5.0
