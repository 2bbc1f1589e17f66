"""Fast checks of the VM test bed's bookkeeping (no VM is started)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "vm"))

import testbed


def test_down_forgets_the_old_bed(tmp_path: Path) -> None:
    """A restarts snapshot left by an earlier bed made the next run's first converge compare
    against units of VMs that no longer exist (every InvocationID 'changed')."""
    state = tmp_path / "run"
    (state / "secrets").mkdir(parents=True)
    for name in ("testbed.json", "restarts.json", "secrets/values.json"):
        (state / name).write_text("{}")
    inventory = tmp_path / "inventory"
    vault = inventory / "prod" / "group_vars" / "prod" / "vault.yml"
    vault.parent.mkdir(parents=True)
    vault.write_text("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    # provision.yml's addresses of the old bed's droplets: the next bed's must come from its own run
    provisioned = inventory / "collect" / "host_vars" / "ams" / "provisioned.yml"
    provisioned.parent.mkdir(parents=True)
    provisioned.write_text("polymm_private_address: 10.77.0.2\n")
    testbed.down(state, quiet=True, inventory=inventory)
    assert not (state / "restarts.json").exists()
    assert not (state / "testbed.json").exists()
    assert not (state / "secrets").exists()
    assert not vault.exists()
    assert not provisioned.exists()
