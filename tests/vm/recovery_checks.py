"""The recovery rehearsal's checks (molecule/default/side_effect.yml), with real commands:

  before    just before the amsterdam VM is killed: S3's objects (key, size, ETag), the moment, and
            the ams droplet the DigitalOcean sim lists
  after     recover.yml rebuilt the droplet, the new VM is converged and the dead disk salvaged:
            DigitalOcean's side (a new ams droplet on the same address, the old one off, untagged
            and renamed, firewalls, alerts and provisioned.yml following the new one), data-collector and the
            executor running on the new VM, the relay links back, every object S3 held before
            untouched (none overwritten), no two objects with the same bytes, no row stored twice,
            the old host's last seconds in S3 (the salvage), and the new host's own rows there
            after a `systemctl stop` (the collector resumed)

Same report format and exit status as guest_checks.py.
"""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import guest_checks as g
import hostservers

from polymm.sim.s3 import ADMIN

BEFORE = g.STATE / "recovery-before.json"
BED_INVENTORY = g.ROOT / "molecule" / "default" / "inventory"  # provision.yml writes provisioned.yml here
TRADE_KEY = ("symbol", "trade_id", "is_agg")
SALVAGED_WITHIN_NS = 5 * 10**9  # journaled every second: the dead host's last rows are this recent


def _client() -> object:
    return hostservers.s3_client(g.TB["endpoints"]["host_s3_url"], ADMIN)


def _listing(client: object) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=g.TB["bucket"]):
        out.update({o["Key"]: [o["Size"], o["ETag"]] for o in page.get("Contents", [])})
    return out


def _digitalocean(path: str) -> dict[str, object]:
    """GET from the DigitalOcean sim, as the playbooks do (bearer token)."""
    endpoints = g.TB["endpoints"]
    token = Path(endpoints["do_token_file"]).read_text().strip()
    req = urllib.request.Request(f"{endpoints['do_api_url']}/{path}")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _droplets() -> dict[str, dict[str, object]]:
    return {d["name"]: d for d in _digitalocean("droplets?per_page=200")["droplets"]}


def _public(droplet: dict[str, object]) -> str:
    return next(n["ip_address"] for n in droplet["networks"]["v4"] if n["type"] == "public")


def record_before() -> list[str]:
    active = g.show("ams", "data-collector", "ActiveState")["ActiveState"]
    if active != "active":
        raise g.CheckError(f"data-collector on the old ams is {active}: nothing to salvage")
    droplet = _droplets().get("ams")
    if droplet is None or _public(droplet) != g.TB["hosts"]["ams"]["link_address"]:
        raise g.CheckError(f"the DigitalOcean sim has no ams droplet on the VM's address: {droplet}")
    journals = g.ssh("ams", "sudo find /data/journal -type f -size +0 -printf x", check=False)
    doc = {"objects": _listing(_client()), "killed_ns": time.time_ns(), "journals": len(journals),
           "droplet_id": droplet["id"]}  # fmt: skip
    BEFORE.write_text(json.dumps(doc))
    return [f"S3 holds {len(doc['objects'])} objects; the old ams has {doc['journals']} journal files; "
            f"its droplet is {droplet['id']}"]  # fmt: skip


def check_droplet_rebuilt() -> list[str]:
    """recover.yml's DigitalOcean side: everything that followed the old droplet follows the new one."""
    import yaml

    old_id = json.loads(BEFORE.read_text())["droplet_id"]
    droplets = _droplets()
    new, retired = droplets.get("ams"), droplets.get(f"ams-retired-{old_id}")
    address = g.TB["hosts"]["ams"]["link_address"]
    if new is None or new["id"] == old_id or new["status"] != "active" or _public(new) != address:
        raise g.CheckError(f"no new active ams droplet on {address}: {new and (new['id'], new['status'])}")
    if retired is None or retired["status"] != "off" or retired["tags"]:
        raise g.CheckError(f"the old droplet is not off, untagged, renamed: {retired and retired['status']}")
    if not g.TB["hosts"]["ams"].get("replaced"):
        raise g.CheckError("the new droplet is not on a new VM (testbed.py droplet-up did not replace ams)")
    lines = [f"droplet ams {old_id} -> {new['id']} on {address} (a new VM); {retired['name']} off, untagged"]
    for fw in _digitalocean("firewalls")["firewalls"]:
        if fw["name"].endswith("-relay"):
            sources = fw["inbound_rules"][0]["sources"]["addresses"]
            if not set(fw["tags"]) & set(new["tags"]) or sources != [_public(droplets["fra"])]:
                raise g.CheckError(f"firewall {fw['name']}: tags {fw['tags']}, sources {sources}")
    lines.append("relay firewalls: by tag on the new droplet, open only to fra")
    entities = [p["entities"] for p in _digitalocean("monitoring/alerts")["policies"]]
    if any(str(old_id) in e for e in entities) or sum(str(new["id"]) in e for e in entities) < 3:
        raise g.CheckError(f"alert policies do not follow the new droplet: {entities}")
    lines.append(
        f"alerts: {sum(str(new['id']) in e for e in entities)} policies on the new droplet, none on the old"
    )
    for env_name in ("prod", "collect"):
        path = (
            g.ROOT / "molecule" / "default" / "inventory" / env_name / "host_vars" / "ams" / "provisioned.yml"
        )
        got = yaml.safe_load(path.read_text())
        if (got["polymm_droplet_id"], got["polymm_private_address"]) != (new["id"], address):
            raise g.CheckError(f"{path}: {got}")
    lines.append("provisioned.yml (prod, collect) name the new droplet and its address")
    return lines


def check_units_on_new_ams() -> list[str]:
    lines = []
    for unit in g.SERVICES["ams"]:
        props = g.show("ams", unit, "ActiveState", "SubState", "NRestarts")
        if (props["ActiveState"], props["SubState"]) != ("active", "running"):
            raise g.CheckError(f"ams {unit}: {props}")
        lines.append(f"ams {unit}: active/running on the replacement VM")
    return lines


def _tables(client: object) -> dict[str, list[object]]:
    import pyarrow.parquet as pq

    tables: dict[str, list[object]] = {}
    for key in _listing(client):
        if key.endswith(".parquet"):
            body = client.get_object(Bucket=g.TB["bucket"], Key=key)["Body"].read()
            tables.setdefault("/".join(key.split("/")[:2]), []).append(pq.read_table(io.BytesIO(body)))
    return tables


def check_nothing_overwritten_or_twice() -> list[str]:
    before = json.loads(BEFORE.read_text())
    client = _client()
    now = _listing(client)
    changed = [k for k, v in before["objects"].items() if now.get(k) != v]
    if changed:
        raise g.CheckError(f"objects overwritten or gone since before the crash: {changed[:5]}")
    same_bytes = [v for v, n in Counter(tuple(v) for v in now.values()).items() if n > 1]
    if same_bytes:
        raise g.CheckError(f"objects with identical bytes under two keys: {same_bytes[:3]}")
    lines = [f"{len(before['objects'])} objects from before the crash unchanged; {len(now)} all distinct"]
    stored_twice: dict[str, int] = {}
    for name, parts in _tables(client).items():
        rows = Counter(  # L2 rows hold lists: compare their text
            json.dumps(row) for t in parts for row in zip(*(c.to_pylist() for c in t.columns), strict=True)
        )
        stored_twice[name] = sum(n - 1 for n in rows.values() if n > 1)
        if name == "binance/trades":  # replayed by the relay with a new recv_ts: the trade id decides
            ids = Counter(
                key for t in parts for key in zip(*(t.column(c).to_pylist() for c in TRADE_KEY), strict=True)
            )
            stored_twice["binance/trades by trade id"] = sum(n - 1 for n in ids.values() if n > 1)
    lines.append(f"rows stored twice per table: {stored_twice}")
    if any(stored_twice.values()):
        raise g.CheckError(f"rows stored twice: {stored_twice}")
    return lines


def check_salvaged_tail() -> list[str]:
    """The dead host's last journaled rows are in S3: only the salvage can have put them there."""
    before = json.loads(BEFORE.read_text())
    killed = before["killed_ns"]
    newest = 0
    for table in _tables(_client()).get("binance/bbo", []):
        stamps = [ts for ts in table.column("recv_ts").to_pylist() if ts <= killed]
        newest = max([newest, *stamps])
    lag_s = (killed - newest) / 1e9
    if lag_s * 1e9 > SALVAGED_WITHIN_NS:
        raise g.CheckError(f"the old host's newest BBO row in S3 is {lag_s:.1f}s before the kill: lost")
    return [f"the old host's newest BBO row in S3 is {lag_s:.2f}s before the kill (salvaged from its disk)"]


def check_collector_resumed() -> list[str]:
    before = json.loads(BEFORE.read_text())
    lines = g.check_collector_flush_and_s3()
    fresh = {
        name: sum(sum(1 for ts in t.column("recv_ts").to_pylist() if ts > before["killed_ns"]) for t in parts)
        for name, parts in _tables(_client()).items()
        if name in ("binance/bbo", "polymarket/l2")
    }
    lines.append(f"rows the new host collected after the kill, in S3: {fresh}")
    if not all(fresh.get(name) for name in ("binance/bbo", "polymarket/l2")):
        raise g.CheckError(f"the replacement's own rows are not in S3: {fresh}")
    return lines


AFTER = [check_droplet_rebuilt, check_units_on_new_ams, g.check_relay_links, check_salvaged_tail,
         check_collector_resumed, check_nothing_overwritten_or_twice]  # fmt: skip


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    g.TB.update(g.testbed())
    checks = {"before": [record_before], "after": AFTER}.get(what)
    if checks is None:
        raise SystemExit(f"usage: {sys.argv[0]} before|after")
    raise SystemExit(g.run(checks))


if __name__ == "__main__":
    main()
