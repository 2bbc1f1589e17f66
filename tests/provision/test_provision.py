"""playbooks/provision.yml, recover.yml and destroy.yml, run for real (ansible-playbook) against the
local DigitalOcean API and moto's S3/IAM. One provisioned state is shared by the module; the tests
that change it (recover, destroy) come last, in file order."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
import yaml

from polymm.sim.digitalocean import DigitalOceanSim

from .conftest import ALERT_EMAIL, BIN, GOOD_TOKEN, OPERATOR, ROOT, Ansible, Run

pytestmark = pytest.mark.timeout(600)

SEED_DROPLETS = {  # the seed's step 1, with Debian 12 in place of its Docker image
    "binance-sender": ("fra1", "s-1vcpu-1gb", "prod", "frankfurt"),
    "trading-executor": ("ams3", "s-1vcpu-2gb", "prod", "amsterdam"),
    "binance-collector": ("fra1", "s-1vcpu-1gb", "collect", "frankfurt"),
    "data-collector": ("ams3", "s-2vcpu-4gb", "collect", "amsterdam"),
}
SEED_LIFECYCLE = json.loads("""{
  "Rules": [
    {
      "ID": "ArchiveOldData",
      "Status": "Enabled",
      "Filter": {},
      "Transitions": [
        {"Days": 30, "StorageClass": "STANDARD_IA"},
        {"Days": 90, "StorageClass": "GLACIER"}
      ]
    }
  ]
}""")
SEED_IAM_ACTIONS = {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject"}
BUCKET = "marketdata-backtest"
SEAWEED_ACCOUNT = "000000000000"
OUTBOUND = [
    {"protocol": p, "ports": ports, "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}
    for p, ports in (("tcp", "1-65535"), ("udp", "1-65535"), ("icmp", "0"))
]


LAKE_KEY = "binance/bbo/symbol=BTCUSDT/date=2026-01-19/hour=00/data_000.parquet"


@pytest.fixture(scope="module")
def first_run(ansible: Ansible) -> Run:
    # The lake already holds data (a bucket made by hand before): provisioning adopts it untouched.
    s3 = ansible.moto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket=BUCKET, Key=LAKE_KEY, Body=b"PAR1 lake data")
    run = ansible.run("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    return run


def droplets(sim: DigitalOceanSim) -> dict[str, Any]:
    with sim.lock:
        return {d.name: d for d in sim.droplets.values()}


def test_first_run_creates_exactly_the_seeds_four_droplets(first_run: Run, do_sim: DigitalOceanSim) -> None:
    got = droplets(do_sim)
    assert set(got) == set(SEED_DROPLETS)
    for name, (region, size, env, site) in SEED_DROPLETS.items():
        d = got[name]
        assert (d.region, d.size, d.image) == (region, size, "debian-12-x64"), name
        assert sorted(d.tags) == sorted(["polymm", f"polymm-{env}", f"polymm-{env}-{site}", f"polymm-{name}"])
        assert d.monitoring and d.status == "active"
        assert [k["name"] for k in do_sim.ssh_keys.values() if k["id"] in d.ssh_key_ids] == [
            "polymm-operator"
        ]


def test_second_run_changes_nothing(first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim) -> None:
    before = {n: d.id for n, d in droplets(do_sim).items()}
    writes = sum(1 for m, _, _ in do_sim.requests if m != "GET")
    run = ansible.run("provision.yml")
    assert run.rc == 0, run.output[-4000:]
    assert run.changed == 0, run.output[-4000:]
    assert {n: d.id for n, d in droplets(do_sim).items()} == before
    assert sum(1 for m, _, _ in do_sim.requests if m != "GET") == writes  # not one write to DigitalOcean


def test_addresses_reach_the_inventory(first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim) -> None:
    got = droplets(do_sim)
    for name, (_, _, env, _) in SEED_DROPLETS.items():
        vars_ = ansible.provisioned(env, name)
        assert vars_["ansible_host"] == vars_["polymm_public_ipv4"] == got[name].public_ip
        assert vars_["polymm_droplet_id"] == got[name].id
    executor = ansible.provisioned("prod", "trading-executor")
    (rip,) = [ip for ip, r in do_sim.reserved_ips.items() if r["droplet_id"] == got["trading-executor"].id]
    assert executor["polymm_private_address"] == executor["polymm_reserved_ip"] == rip
    # What Ansible itself makes of it, with hosts.yml shaped like the repo's.
    inv = ansible.workdir / "inventory" / "prod"
    (inv / "hosts.yml").write_text(
        yaml.safe_dump({"prod": {"hosts": {"binance-sender": None, "trading-executor": None}}})
    )
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inv), "--host", "trading-executor"],
                         check=True, capture_output=True, text=True, cwd=ansible.workdir).stdout  # fmt: skip
    assert json.loads(out)["polymm_private_address"] == rip


def firewall(sim: DigitalOceanSim, name: str) -> dict[str, Any]:
    return next(f for f in sim.firewalls.values() if f["name"] == name)


@pytest.mark.parametrize("env", ["prod", "collect"])
def test_cloud_firewalls_mirror_ufw(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim, env: str
) -> None:
    hosts = {n: site for n, (_, _, e, site) in SEED_DROPLETS.items() if e == env}
    frankfurt = next(n for n, s in hosts.items() if s == "frankfurt")
    amsterdam = next(n for n, s in hosts.items() if s == "amsterdam")
    base = firewall(do_sim, f"polymm-{env}-base")
    assert base["inbound_rules"] == [
        {"protocol": "tcp", "ports": "22", "sources": {"addresses": [OPERATOR]}},
        {"protocol": "icmp", "ports": "0", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
    ]
    assert base["outbound_rules"] == OUTBOUND
    assert do_sim.droplets_behind(f"polymm-{env}-base") == sorted(hosts)
    # ufw (roles/hardening) opens the relay port on the Amsterdam host to each Frankfurt peer's
    # polymm_private_address; the cloud firewall must say the same, and only there.
    peer = ansible.provisioned(env, frankfurt)["polymm_private_address"]
    relay = firewall(do_sim, f"polymm-{env}-relay")
    assert relay["inbound_rules"] == [{"protocol": "tcp", "ports": "9001", "sources": {"addresses": [peer]}}]
    assert do_sim.droplets_behind(f"polymm-{env}-relay") == [amsterdam]
    assert relay["droplet_ids"] == base["droplet_ids"] == []  # attached by tag, not at creation


HARDENING = ROOT / "roles" / "hardening"
UFW_RULES_PLAY = """
- name: What ufw on each Amsterdam host opens (roles/hardening's own rule list)
  hosts: amsterdam
  connection: local
  gather_facts: false
  become: false
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_vars: {file: "{{ item }}"}
      loop: ["%(role)s/defaults/main.yml", "%(role)s/vars/main.yml"]
    - name: Write them out
      ansible.builtin.copy:
        content: "{{ hardening_relay_rules | to_json }}"
        dest: "%(out)s/{{ inventory_hostname }}.json"
        mode: "0600"
"""


@pytest.mark.skipif(not HARDENING.exists(), reason="roles/hardening (the deployment roles) not in this tree")
def test_relay_firewalls_equal_the_ufw_rules_of_the_hardening_role(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim
) -> None:
    """Evaluated by the role's own expression over the repo's hosts.yml and these provisioned.yml."""
    out = ansible.workdir / "ufw"
    out.mkdir(exist_ok=True)
    play = ansible.workdir / "ufw-rules.yml"
    play.write_text(UFW_RULES_PLAY % {"role": HARDENING, "out": out})
    args = [
        str(BIN / "ansible-playbook"),
        str(play),
        "--vault-id",
        f"collect@{ansible.vault_pass}",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    for env in ("prod", "collect"):
        (ansible.inventory / env / "hosts.yml").write_text(
            (ROOT / "inventory" / env / "hosts.yml").read_text()
        )
        args += ["-i", str(ansible.inventory / env)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ansible.workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for env, amsterdam in (("prod", "trading-executor"), ("collect", "data-collector")):
        ufw = json.loads((out / f"{amsterdam}.json").read_text())
        opened = sorted((r["src"], r["port"]) for r in ufw if r["env"] == env)
        relay = firewall(do_sim, f"polymm-{env}-relay")
        cloud = sorted((a, r["ports"]) for r in relay["inbound_rules"] for a in r["sources"]["addresses"])
        assert opened == cloud, env


def test_alerts_for_every_droplet(first_run: Run, do_sim: DigitalOceanSim) -> None:
    want = {("v1/insights/droplet/cpu", 80.0), ("v1/insights/droplet/memory_utilization_percent", 90.0),
            ("v1/insights/droplet/disk_utilization_percent", 80.0)}  # fmt: skip
    by_droplet: dict[str, set[tuple[str, float]]] = {}
    for policy in do_sim.alerts.values():
        (entity,) = policy["entities"]
        assert policy["compare"] == "GreaterThan" and policy["window"] == "5m" and policy["enabled"]
        assert policy["alerts"]["email"] == [ALERT_EMAIL]
        by_droplet.setdefault(entity, set()).add((policy["type"], policy["value"]))
    assert by_droplet == {str(d.id): want for d in droplets(do_sim).values()}


def test_a_bad_token_fails_with_a_clear_message(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim
) -> None:
    count = len(do_sim.requests)
    run = ansible.run("provision.yml", token="dop_v1_revoked-or-mistyped")
    assert run.rc != 0
    assert "DigitalOcean refused the API token" in run.output
    assert "HTTP 401 unauthorized (Unable to authenticate you)" in run.output
    assert "dop_v1_revoked-or-mistyped" not in run.output
    assert do_sim.requests[count:] == [("GET", "/v2/account", 401)]  # stopped before anything else


def normalized_lifecycle(doc: dict[str, Any]) -> dict[str, Any]:
    """An empty Prefix filter and an empty filter both mean every object (s3_lifecycle sends the former)."""
    rules = []
    for rule in doc["Rules"]:
        rule = dict(rule)
        if rule.get("Filter") in ({}, {"Prefix": ""}):
            rule["Filter"] = {}
        rules.append(rule)
    return {"Rules": rules}


def test_bucket_is_private_encrypted_with_the_seeds_lifecycle(first_run: Run, ansible: Ansible) -> None:
    s3 = ansible.moto.client("s3")
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-central-1"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    stored = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)
    assert normalized_lifecycle({"Rules": stored["Rules"]}) == SEED_LIFECYCLE


def test_collector_may_put_get_and_list_but_not_delete(first_run: Run, ansible: Ansible) -> None:
    iam = ansible.moto.client("iam")
    doc = iam.get_user_policy(UserName="marketdata-collector", PolicyName="S3Access")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    granted = {
        (a, r) for s in doc["Statement"] if s["Effect"] == "Allow" for a in s["Action"] for r in s["Resource"]
    }
    assert {a for a, _ in granted} == SEED_IAM_ACTIONS - {"s3:DeleteObject"}
    lake, objects = f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"
    assert granted == {("s3:ListBucket", lake), ("s3:PutObject", objects), ("s3:GetObject", objects)}
    research = iam.get_user_policy(UserName="marketdata-research", PolicyName="S3ReadOnly")["PolicyDocument"]
    research = json.loads(research) if isinstance(research, str) else research
    assert {a for s in research["Statement"] for a in s["Action"]} == {"s3:ListBucket", "s3:GetObject"}


def expected_bucket_policy(ansible: Ansible) -> dict[str, Any]:
    arn = ansible.moto.client("iam").get_user(UserName="marketdata-collector")["User"]["Arn"]
    source = ansible.provisioned("collect", "data-collector")["polymm_public_ipv4"]
    resources = [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "CollectorKeyOnlyFromCollectorHosts", "Effect": "Deny", "Principal": {"AWS": arn},
         "Action": "s3:*", "Resource": resources,
         "Condition": {"NotIpAddress": {"aws:SourceIp": [f"{source}/32"]}}},
        {"Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": resources,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}  # fmt: skip


def test_bucket_policy_ties_the_collector_key_to_the_collector_host(first_run: Run, ansible: Ansible) -> None:
    stored = json.loads(ansible.moto.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert stored == expected_bucket_policy(ansible)
    # The Deny names the collector alone: the operator's and the research user's access stay.
    principals = [s["Principal"] for s in stored["Statement"] if "NotIpAddress" in s.get("Condition", {})]
    assert principals == [{"AWS": expected_bucket_policy(ansible)["Statement"][0]["Principal"]["AWS"]}]


def _outcome(client: Any, bucket: str) -> str:
    from botocore.exceptions import ClientError

    try:
        client.put_object(Bucket=bucket, Key="probe", Body=b"probe")
        client.get_object(Bucket=bucket, Key="probe")["Body"].read()
        client.list_objects_v2(Bucket=bucket)
        return "allowed"
    except ClientError as exc:
        return exc.response["Error"]["Code"]


def test_bucket_policy_has_its_effect_on_an_s3_that_enforces_it(
    first_run: Run, ansible: Ansible, tmp_path: Any
) -> None:
    """moto stores the policy but applies its Deny whatever the condition; SeaweedFS evaluates
    aws:SourceIp and aws:SecureTransport. The provisioned document, applied there: the collector's
    key works only from its host's address, the operator and research keys are untouched, and
    plain HTTP is refused to everyone. (The local server is HTTP and 127.0.0.1 is every caller's
    address, so each statement is shown on its own bucket.)"""
    from polymm.sim.s3 import ADMIN, S3Identity, SeaweedS3

    stored = json.loads(ansible.moto.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    user = stored["Statement"][0]["Principal"]["AWS"].rsplit("/", 1)[1]
    collector = S3Identity(user, "AKIACOLLECTORTEST001", "c" * 40, ("Read", "Write", "List"))
    research = S3Identity("marketdata-research", "AKIARESEARCHTEST0001", "r" * 40, ("Read", "Write", "List"))
    source = ansible.provisioned("collect", "data-collector")["polymm_public_ipv4"]

    arn = stored["Statement"][0]["Principal"]["AWS"]
    assert arn.startswith("arn:aws:iam::") and arn.endswith(":user/marketdata-collector")

    def policy_for(bucket: str, *, sids: set[str], address: str) -> str:
        """The stored document with only the names that differ between servers swapped: the bucket,
        the account in the principal's ARN (SeaweedFS's users all live in 000000000000; measured:
        any other account id matches no one) and, for one case, the collector's address."""
        text = json.dumps({**stored, "Statement": [s for s in stored["Statement"] if s["Sid"] in sids]})
        text = text.replace(f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{bucket}")
        text = text.replace(arn, f"arn:aws:iam::{SEAWEED_ACCOUNT}:user/{user}")
        return text.replace(f"{source}/32", address)

    cases = {  # bucket: (statements, address the policy allows the collector from)
        "from-another-address": ({"CollectorKeyOnlyFromCollectorHosts"}, f"{source}/32"),
        "from-the-collector-host": ({"CollectorKeyOnlyFromCollectorHosts"}, "127.0.0.1/32"),
        "over-plain-http": ({"DenyPlainHttp"}, f"{source}/32"),
    }
    with SeaweedS3(tmp_path / "s3", identities=(ADMIN, collector, research), buckets=list(cases)) as s3:
        for bucket, (sids, address) in cases.items():
            policy = policy_for(bucket, sids=sids, address=address)
            s3.client().put_bucket_policy(Bucket=bucket, Policy=policy)
        outcome = {
            (bucket, who.name): _outcome(s3.client(who), bucket)
            for bucket in cases
            for who in (collector, research, ADMIN)
        }
    assert outcome == {
        ("from-another-address", user): "AccessDenied",  # a leaked key, used anywhere else
        ("from-another-address", "marketdata-research"): "allowed",
        ("from-another-address", ADMIN.name): "allowed",
        ("from-the-collector-host", user): "allowed",
        ("from-the-collector-host", "marketdata-research"): "allowed",
        ("from-the-collector-host", ADMIN.name): "allowed",
        ("over-plain-http", user): "AccessDenied",
        ("over-plain-http", "marketdata-research"): "AccessDenied",
        ("over-plain-http", ADMIN.name): "AccessDenied",
    }


def test_the_access_key_goes_into_the_vault_and_nowhere_else(first_run: Run, ansible: Ansible) -> None:
    vault_file = ansible.workdir / "inventory" / "collect" / "group_vars" / "collect" / "vault.yml"
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;collect\n")
    secrets = ansible.vault()
    key_id, secret = (
        secrets["vault_collect_aws_access_key_id"],
        secrets["vault_collect_aws_secret_access_key"],
    )
    keys = ansible.moto.client("iam").list_access_keys(UserName="marketdata-collector")["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key_id, "Active")]  # one key, the Vault's
    assert len(secret) == 40
    assert ansible.outputs
    for output in ansible.outputs:
        assert key_id not in output and secret not in output
        assert GOOD_TOKEN not in output


def test_recover_rebuilds_the_data_collector(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim
) -> None:
    old = droplets(do_sim)["data-collector"]
    do_sim.kill("data-collector")
    run = ansible.run("recover.yml", recover_host="data-collector")
    assert run.rc == 0, run.output[-4000:]
    now = droplets(do_sim)
    new = now["data-collector"]
    assert new.id != old.id and new.status == "active" and new.public_ip != old.public_ip
    assert (new.region, new.size, new.image) == ("ams3", "s-2vcpu-4gb", "debian-12-x64")
    retired = now[f"data-collector-retired-{old.id}"]  # kept, off and untagged, for its disk
    assert retired.status == "off" and retired.tags == []
    assert set(now) == set(SEED_DROPLETS) | {retired.name}
    vars_ = ansible.provisioned("collect", "data-collector")
    assert vars_["ansible_host"] == new.public_ip and vars_["polymm_droplet_id"] == new.id
    stored = json.loads(ansible.moto.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert stored == expected_bucket_policy(ansible)  # the collector key now works from the new address
    assert f"{new.public_ip}/32" in json.dumps(stored) and old.public_ip not in json.dumps(stored)
    assert do_sim.droplets_behind("polymm-collect-relay") == ["data-collector"]
    assert {p["entities"][0] for p in do_sim.alerts.values() if "data-collector" in p["description"]} == {
        str(new.id)
    }
    assert len(do_sim.alerts) == 12


def test_recover_keeps_the_executors_reserved_ip(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim
) -> None:
    old = droplets(do_sim)["trading-executor"]
    address = ansible.provisioned("prod", "trading-executor")["polymm_private_address"]
    # --tags: the DigitalOcean side only. The retire play's API calls are included tasks, which
    # run under --tags only if they inherit the play's tag (once they silently did not: the old
    # droplet stayed on and named, so nothing was rebuilt).
    run = ansible.run("recover.yml", "--tags", "droplets,monitoring", recover_host="trading-executor")
    assert run.rc == 0, run.output[-4000:]
    new = droplets(do_sim)["trading-executor"]
    assert new.id != old.id
    retired = do_sim.droplets[old.id]
    assert (retired.name, retired.status, retired.tags) == (f"trading-executor-retired-{old.id}", "off", [])
    assert do_sim.reserved_ips[address]["droplet_id"] == new.id
    assert len(do_sim.reserved_ips) == 1
    vars_ = ansible.provisioned("prod", "trading-executor")
    assert vars_["polymm_private_address"] == address  # peers and its certificate keep working
    assert vars_["ansible_host"] == new.public_ip


def test_destroy_needs_the_confirmation(first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim) -> None:
    before = set(droplets(do_sim))
    for extra in ({}, {"destroy_env": "collect"}, {"destroy_env": "collect", "destroy_confirm": "prod"}):
        run = ansible.run("destroy.yml", **extra)
        assert run.rc != 0 and "Nothing destroyed" in run.output, extra
    assert set(droplets(do_sim)) == before


def test_destroy_removes_the_environment_but_keeps_the_bucket(
    first_run: Run, ansible: Ansible, do_sim: DigitalOceanSim
) -> None:
    run = ansible.run("destroy.yml", destroy_env="collect", destroy_confirm="collect")
    assert run.rc == 0, run.output[-4000:]
    left = droplets(do_sim)
    assert "binance-collector" not in left and "data-collector" not in left
    assert {"binance-sender", "trading-executor"} <= set(left)
    assert {f["name"] for f in do_sim.firewalls.values()} == {"polymm-prod-base", "polymm-prod-relay"}
    assert all("collector" not in p["description"] for p in do_sim.alerts.values())
    assert not (ansible.inventory / "collect" / "host_vars" / "data-collector" / "provisioned.yml").exists()
    # moto applies every Deny of a bucket policy whatever its condition (here DenyPlainHttp, as the
    # test talks plain HTTP), so the objects are read from moto's own state.
    state = json.load(urllib.request.urlopen(f"{ansible.moto.url}/moto-api/data.json", timeout=10))["s3"]
    assert [b["name"] for b in state["FakeBucket"]] == [BUCKET]
    assert [(k["bucket_name"], k["name"]) for k in state["FakeKey"]] == [(BUCKET, LAKE_KEY)]
    s3 = ansible.moto.client("s3")
    assert s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert ansible.moto.client("iam").get_user(UserName="marketdata-collector")
