"""The local DigitalOcean API speaks DigitalOcean's JSON: bearer tokens, scopes, paging, status codes
and error bodies (what the collection's modules and the playbooks' uri calls rely on)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from polymm.sim.digitalocean import DigitalOceanSim, machine_command, md5_fingerprint

TOKEN = "full-access"
READ_ONLY = "read-only"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1ttD5fYp3BKcbgxvWnrVXdhgBUGiXwvMR2tn7uA1mJ operator"


@pytest.fixture
def sim() -> Iterator[DigitalOceanSim]:
    server = DigitalOceanSim({TOKEN: None, READ_ONLY: {"account:read", "droplet:read"}}).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def call(
    sim: DigitalOceanSim, method: str, path: str, body: Any = None, token: str = TOKEN
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{sim.url}/{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def droplet(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "region": "fra1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", **kw}


def test_a_wrong_token_gets_401_with_digitaloceans_body(sim: DigitalOceanSim) -> None:
    status, body = call(sim, "GET", "account", token="not-a-token")
    assert status == 401
    assert body["id"] == "unauthorized"
    assert body["message"] == "Unable to authenticate you"
    assert body["request_id"]


def test_a_scoped_token_may_read_but_not_create(sim: DigitalOceanSim) -> None:
    assert call(sim, "GET", "droplets", token=READ_ONLY)[0] == 200
    status, body = call(sim, "POST", "droplets", droplet("x"), token=READ_ONLY)
    assert (status, body["id"]) == (403, "forbidden")
    assert call(sim, "GET", "firewalls", token=READ_ONLY)[0] == 403
    assert not sim.droplets


def test_droplet_create_is_202_new_then_active_with_addresses(sim: DigitalOceanSim) -> None:
    status, body = call(sim, "POST", "droplets", droplet("binance-sender", tags=["polymm"]))
    assert status == 202
    created = body["droplet"]
    assert created["status"] == "new" and created["networks"]["v4"] == []
    assert body["links"]["actions"][0]["rel"] == "create"
    status, body = call(sim, "GET", f"droplets/{created['id']}")
    assert status == 200
    got = body["droplet"]
    assert got["status"] == "active"
    assert {n["type"] for n in got["networks"]["v4"]} == {"public", "private"}
    assert (got["region"]["slug"], got["size_slug"], got["image"]["slug"]) == (
        "fra1",
        "s-1vcpu-1gb",
        "debian-12-x64",
    )
    assert "polymm" in sim.tags  # tags named at creation exist afterwards


def test_bad_create_input_gets_422(sim: DigitalOceanSim) -> None:
    for bad in (
        droplet("x", region="mars1"),
        droplet("x", size="huge"),
        droplet("no_underscores"),
        droplet("x", ssh_keys=["00:11"]),
    ):
        status, body = call(sim, "POST", "droplets", bad)
        assert (status, body["id"]) == (422, "unprocessable_entity"), bad
    assert not sim.droplets


def test_droplet_list_pages_with_links(sim: DigitalOceanSim) -> None:
    for i in range(5):
        call(sim, "POST", "droplets", droplet(f"d{i}"))
    status, body = call(sim, "GET", "droplets?per_page=2")
    assert status == 200 and body["meta"]["total"] == 5
    assert [d["name"] for d in body["droplets"]] == ["d0", "d1"]
    assert body["links"]["pages"]["next"].endswith("page=2&per_page=2")
    assert body["links"]["pages"]["last"].endswith("page=3&per_page=2")
    status, body = call(sim, "GET", "droplets?page=3&per_page=2")
    assert [d["name"] for d in body["droplets"]] == ["d4"]
    assert "next" not in body["links"]["pages"] and "prev" in body["links"]["pages"]


def test_unknown_things_get_404_not_found(sim: DigitalOceanSim) -> None:
    for path in (
        "droplets/12345",
        "tags/nope",
        "firewalls/abc",
        "monitoring/alerts/abc",
        "reserved_ips/192.0.2.99",
    ):
        status, body = call(sim, "GET", path)
        assert (status, body["id"]) == (404, "not_found"), path


def test_actions_complete_in_the_background(sim: DigitalOceanSim) -> None:
    _, body = call(sim, "POST", "droplets", droplet("d"))
    did = body["droplet"]["id"]
    call(sim, "GET", f"droplets/{did}")
    status, body = call(sim, "POST", f"droplets/{did}/actions", {"type": "rename", "name": "d-old"})
    assert status == 201 and body["action"]["status"] == "in-progress"
    _, got = call(sim, "GET", f"droplets/{did}")  # nobody polled the action: it completed anyway
    assert got["droplet"]["name"] == "d-old"
    _, action = call(sim, "GET", f"actions/{body['action']['id']}")
    assert action["action"]["status"] == "completed"


def test_ssh_keys_by_fingerprint(sim: DigitalOceanSim) -> None:
    fingerprint = md5_fingerprint(KEY)
    assert call(sim, "GET", f"account/keys/{fingerprint}")[0] == 404
    status, body = call(sim, "POST", "account/keys", {"name": "op", "public_key": KEY})
    assert status == 201 and body["ssh_key"]["fingerprint"] == fingerprint
    assert call(sim, "GET", f"account/keys/{fingerprint}")[0] == 200
    status, body = call(sim, "POST", "account/keys", {"name": "op", "public_key": KEY})
    assert status == 422 and "already in use" in body["message"]
    assert call(sim, "POST", "account/keys", {"name": "x", "public_key": "garbage"})[0] == 422


def test_reserved_ip_follows_assign_and_frees_on_delete(sim: DigitalOceanSim) -> None:
    _, a = call(sim, "POST", "droplets", droplet("a", region="ams3"))
    _, b = call(sim, "POST", "droplets", droplet("b", region="ams3"))
    _, f = call(sim, "POST", "droplets", droplet("f", region="fra1"))
    status, body = call(sim, "POST", "reserved_ips", {"droplet_id": a["droplet"]["id"]})
    assert status == 202
    ip = body["reserved_ip"]["ip"]
    status, _ = call(
        sim, "POST", f"reserved_ips/{ip}/actions", {"type": "assign", "droplet_id": f["droplet"]["id"]}
    )
    assert status == 422  # another region
    status, _ = call(
        sim, "POST", f"reserved_ips/{ip}/actions", {"type": "assign", "droplet_id": b["droplet"]["id"]}
    )
    assert status == 201
    assert call(sim, "GET", f"floating_ips/{ip}")[1]["floating_ip"]["droplet"]["name"] == "b"
    assert call(sim, "DELETE", f"droplets/{b['droplet']['id']}")[0] == 204
    assert call(sim, "GET", f"reserved_ips/{ip}")[1]["reserved_ip"]["droplet"] is None


def test_firewall_rules_are_validated_and_stored_as_digitalocean_answers(sim: DigitalOceanSim) -> None:
    outbound = [{"protocol": "tcp", "ports": "all", "destinations": {"addresses": ["0.0.0.0/0"]}}]
    bad = {
        "name": "fw",
        "inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["x"]}}],
        "outbound_rules": outbound,
    }
    assert call(sim, "POST", "firewalls", bad)[0] == 422
    no_tag = {"name": "fw", "inbound_rules": [], "outbound_rules": outbound, "tags": ["missing"]}
    assert call(sim, "POST", "firewalls", no_tag)[0] == 422
    status, body = call(sim, "POST", "firewalls", {"name": "fw", "outbound_rules": outbound})
    assert status == 202
    assert body["firewall"]["outbound_rules"][0]["ports"] == "0"
    assert call(sim, "POST", "firewalls", {"name": "fw", "outbound_rules": outbound})[0] == 409


def test_alert_policies_need_a_receiver_and_a_real_droplet(sim: DigitalOceanSim) -> None:
    policy = {
        "alerts": {"email": ["ops@example.com"], "slack": []},
        "compare": "GreaterThan",
        "description": "cpu",
        "enabled": True,
        "entities": ["1"],
        "tags": [],
        "type": "v1/insights/droplet/cpu",
        "value": 80,
        "window": "5m",
    }
    assert call(sim, "POST", "monitoring/alerts", policy)[0] == 422  # no droplet 1
    _, d = call(sim, "POST", "droplets", droplet("d"))
    policy["entities"] = [str(d["droplet"]["id"])]
    assert call(sim, "POST", "monitoring/alerts", {**policy, "alerts": {"email": [], "slack": []}})[0] == 422
    status, body = call(sim, "POST", "monitoring/alerts", policy)
    assert status == 200 and body["policy"]["uuid"]
    assert call(sim, "GET", "monitoring/alerts")[1]["policies"][0]["value"] == 80.0


def test_a_droplet_with_a_machine_behind_it_is_new_until_the_machine_is_up(sim: DigitalOceanSim) -> None:
    booted: list[tuple[str, str]] = []
    release = threading.Event()

    def machine(name: str, region: str) -> str:
        booted.append((name, region))
        release.wait(10)
        return "10.77.0.2\n"

    sim.machines = machine
    status, body = call(sim, "POST", "droplets", droplet("data-collector", region="ams3"))
    assert status == 202
    ref = body["droplet"]["id"]
    for _ in range(3):  # reads do not settle it while the machine boots
        got = call(sim, "GET", f"droplets/{ref}")[1]["droplet"]
        assert (got["status"], got["networks"]["v4"]) == ("new", [])
    assert booted == [("data-collector", "ams3")]
    release.set()
    deadline = time.monotonic() + 5
    while (got := call(sim, "GET", f"droplets/{ref}")[1]["droplet"])["status"] == "new":
        assert time.monotonic() < deadline, "droplet never became active"
        time.sleep(0.05)
    assert got["status"] == "active"
    public = [n["ip_address"] for n in got["networks"]["v4"] if n["type"] == "public"]
    assert public == ["10.77.0.2"]  # the machine's own address, not one the sim made up


def test_a_machine_that_fails_leaves_the_droplet_booting_and_says_why(
    sim: DigitalOceanSim, caplog: pytest.LogCaptureFixture
) -> None:
    sim.machines = machine_command("sh -c 'echo no address here'", timeout_s=10)
    ref = call(sim, "POST", "droplets", droplet("binance-sender"))[1]["droplet"]["id"]
    deadline = time.monotonic() + 5
    while not any("did not come up" in r.message for r in caplog.records):
        assert time.monotonic() < deadline, "no log line for the failed machine"
        time.sleep(0.05)
    assert call(sim, "GET", f"droplets/{ref}")[1]["droplet"]["status"] == "new"
    line = next(r.getMessage() for r in caplog.records if "did not come up" in r.message)
    assert "binance-sender" in line and "no address here" in line


def test_machine_command_fills_in_the_droplet_and_reads_the_last_line() -> None:
    boot = machine_command("sh -c 'echo booting {name} in {region}; echo 10.77.0.1'", timeout_s=10)
    assert boot("fra", "fra1") == "10.77.0.1"
    failing = machine_command("sh -c 'echo vm {name} would not start >&2; exit 3'", timeout_s=10)
    with pytest.raises(RuntimeError, match="exited 3: vm fra would not start"):
        failing("fra", "fra1")
