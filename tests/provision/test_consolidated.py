"""provision_consolidate_frankfurt: one Frankfurt droplet serves both environments (the seed's first
cost option), so the collect relay opens to it and its addresses land in both inventories."""

from __future__ import annotations

import pytest

from polymm.sim.digitalocean import DigitalOceanSim

from .conftest import Ansible

pytestmark = pytest.mark.timeout(600)


def test_one_frankfurt_droplet_for_both_environments(ansible: Ansible, do_sim: DigitalOceanSim) -> None:
    run = ansible.run("provision.yml", "--tags", "droplets", provision_consolidate_frankfurt=True)
    assert run.rc == 0, run.output[-4000:]
    with do_sim.lock:
        got = {d.name: d for d in do_sim.droplets.values()}
    assert set(got) == {"binance-sender", "trading-executor", "data-collector"}
    sender = got["binance-sender"]
    assert sorted(sender.tags) == sorted(["polymm", "polymm-prod", "polymm-collect", "polymm-prod-frankfurt",
                                          "polymm-collect-frankfurt", "polymm-binance-sender",
                                          "polymm-binance-collector"])  # fmt: skip
    for env in ("prod", "collect"):
        assert ansible.provisioned(env, "binance-sender")["ansible_host"] == sender.public_ip
        relay = next(f for f in do_sim.firewalls.values() if f["name"] == f"polymm-{env}-relay")
        assert relay["inbound_rules"][0]["sources"] == {"addresses": [sender.public_ip]}
    assert do_sim.droplets_behind("polymm-collect-base") == ["binance-sender", "data-collector"]
    assert not do_sim.alerts  # --tags droplets: nothing else was touched
