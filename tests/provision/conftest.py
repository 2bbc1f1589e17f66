"""Fixtures for the provisioning tests: the local DigitalOcean API (polymm.sim.digitalocean), moto's
server for S3 and IAM, and a runner for the real `ansible-playbook` against both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from polymm.sim.digitalocean import DigitalOceanSim
from polymm.sim.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent
REGION = "eu-central-1"
GOOD_TOKEN = "dop_v1_" + "a1" * 32  # throwaway: only the local sim accepts it
OPERATOR = "198.51.100.250/32"
ALERT_EMAIL = "ops@example.com"
_RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Run:
    rc: int
    output: str  # stdout and stderr together

    @property
    def changed(self) -> int:
        match = _RECAP.search(self.output)
        assert match, f"no play recap in:\n{self.output[-3000:]}"
        return int(match.group(2))

    @property
    def failed(self) -> int:
        match = _RECAP.search(self.output)
        return int(match.group(4)) if match else -1


@dataclass
class Moto:
    url: str
    proc: subprocess.Popen[bytes]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


class Ansible:
    """Runs playbooks the way an operator does, pointed at the local servers."""

    def __init__(self, workdir: Path, sim: DigitalOceanSim, moto: Moto) -> None:
        self.workdir = workdir
        self.inventory = workdir / "inventory"
        self.vault_pass = workdir / "collect.pass"
        self.vault_pass.write_text("local-test-vault-password\n")
        key = workdir / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", str(key)],
            check=True,
            capture_output=True,
        )
        self.public_key = key.with_suffix(".pub")
        self.sim = sim
        self.moto = moto
        self.outputs: list[str] = []  # everything every run printed

    def extra(self) -> dict[str, Any]:
        return {
            "do_api_base_url": self.sim.url,
            "provision_inventory_dir": str(self.inventory),
            "provision_ssh_public_key_file": str(self.public_key),
            "provision_operator_addresses": [OPERATOR],
            "provision_wait_sleep": 1,
            "provision_alert_emails": [ALERT_EMAIL],
            "provision_s3_endpoint_url": self.moto.url,
            "provision_iam_endpoint_url": self.moto.url,
            "provision_collect_vault_id": f"collect@{self.vault_pass}",
        }

    def run(self, playbook: str, *args: str, token: str = GOOD_TOKEN, **extra: Any) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_", "DO_"))}
        env.update(
            PATH=f"{BIN}:{env.get('PATH', '')}",
            DO_API_TOKEN=token,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        cmd = [
            str(BIN / "ansible-playbook"),
            str(PLAYBOOKS / playbook),
            "--vault-id",
            f"collect@{self.vault_pass}",
            "-e",
            json.dumps({**self.extra(), **extra}),
            *args,
        ]
        proc = subprocess.run(cmd, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=540)
        output = proc.stdout + proc.stderr
        self.outputs.append(output)
        return Run(proc.returncode, output)

    def provisioned(self, env: str, host: str) -> dict[str, Any]:
        path = self.inventory / env / "host_vars" / host / "provisioned.yml"
        return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]

    def vault(self) -> dict[str, Any]:
        path = self.inventory / "collect" / "group_vars" / "collect" / "vault.yml"
        proc = subprocess.run(
            [str(BIN / "ansible-vault"), "view", "--vault-id", f"collect@{self.vault_pass}", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        return yaml.safe_load(proc.stdout)  # type: ignore[no-any-return]


def start_moto() -> Moto:
    port = free_port()
    exe = BIN / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5).close()
            return Moto(f"http://127.0.0.1:{port}", proc)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="module")
def do_sim() -> Iterator[DigitalOceanSim]:
    sim = DigitalOceanSim({GOOD_TOKEN: None}).start_in_thread()
    try:
        yield sim
    finally:
        sim.stop_thread()


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = start_moto()
    try:
        yield server
    finally:
        server.proc.terminate()
        server.proc.wait(10)


@pytest.fixture(scope="module")
def ansible(tmp_path_factory: pytest.TempPathFactory, do_sim: DigitalOceanSim, moto: Moto) -> Ansible:
    return Ansible(tmp_path_factory.mktemp("provision"), do_sim, moto)
