"""The VM test bed: `python tests/vm/testbed.py up|down|kill NAME|droplet-up NAME [--state DIR]`.

up:   builds (or reuses) the Debian image and the wheelhouse, makes this run's secrets (relay
      certificates from scripts/generate-certs.sh, an S3 key for the collector, a Polymarket key
      the local CLOB accepts) into Ansible Vault files, starts the host-side venues, S3 and the
      DigitalOcean API sim, boots the two VMs (fra 10.77.0.1, ams 10.77.0.2) in parallel and writes
      `testbed.json`, the file the molecule inventory reads its ports and endpoints from.
droplet-up NAME: the DigitalOcean sim's machine for a created droplet (its --machine-command):
      the first time, the VM `up` booted for it; once that VM was killed, a new VM with the same
      address and the dead disk as /dev/vdb. Prints the machine's address (the droplet's public IP).
kill NAME: the host dies (SIGKILL to its qemu; its disk is kept for the salvage).
down: stops the VMs and the servers (by pidfile) and removes this run's vault files, overlays and
      the provisioned.yml files provision.yml wrote into the bed's inventory.

So the recovery rehearsal (molecule/default/side_effect.yml) is the operator's: `kill ams`, then
the real playbooks/recover.yml asks the DigitalOcean sim for a new droplet, which boots the new VM.

The molecule scenario (molecule/default) calls both from its create/destroy playbooks.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import hostservers  # noqa: E402
import vms  # noqa: E402

DEFAULT_STATE = ROOT / ".vm-cache" / "run"
INVENTORY = ROOT / "molecule" / "default" / "inventory"
ADMIN_USER = "polymm"
# The test bed per docs/deploy-interface.md: each VM is in frankfurt (or amsterdam) of both inventories.
VM_SPECS = [vms.VmSpec("fra", "10.77.0.1", 0), vms.VmSpec("ams", "10.77.0.2", 1)]
NON_PEER_ADDRESS = "10.77.0.3"  # a second address on fra: ams's ufw must refuse it
RECEIVER = "10.77.0.2"


def log(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_image(cache: Path) -> Path:
    out = subprocess.run(
        [str(HERE / "build-image.sh"), str(cache)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def build_wheelhouse(out: Path) -> Path:
    """Once per run, from this tree: hosts install exactly the code under test."""
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(ROOT / "scripts" / "build-wheelhouse.sh"), str(out)], check=True, cwd=ROOT, env=env)
    return out


def markets_toml() -> str:
    """One 'BTC above K' market on the local CLOB, expiring in 3 h, so the executor quotes it."""
    import tempfile

    from polymm.sim.markets_file import write_above_market

    cond, yes, no = hostservers.CLOB_MARKET
    with tempfile.TemporaryDirectory() as d:
        path = write_above_market(
            Path(d) / "markets.toml", name="vmtest-btc-above", condition_id=cond, yes_token=yes,
            no_token=no, strike=97_000, expires_in_s=3 * 3600, quote_size=10, min_edge=0.02,
            requote_threshold=0.005,
        )  # fmt: skip
        return path.read_text()


def make_secrets(state: Path, identity: object) -> dict[str, str]:
    """Relay certificates for both links, and the other secrets, as Ansible Vault files in the
    test inventory's group_vars; returns every secret value (for the converge log grep)."""
    from eth_account import Account

    secret_dir = state / "secrets"
    shutil.rmtree(secret_dir, ignore_errors=True)
    secret_dir.mkdir(parents=True, mode=0o700)
    pass_dir = state / "vault-pass"
    pass_dir.mkdir(mode=0o700, exist_ok=True)
    poly_key = Account.create().key.hex()
    poly_key = poly_key if poly_key.startswith("0x") else "0x" + poly_key
    extra = {
        "prod": {"POLY_PRIVATE_KEY": poly_key},
        "collect": {"AWS_ACCESS_KEY_ID": identity.access_key, "AWS_SECRET_ACCESS_KEY": identity.secret_key},
    }
    values: dict[str, str] = {
        "poly_private_key": poly_key.removeprefix("0x"),
        "s3_secret_key": identity.secret_key,
    }
    for env_name in ("prod", "collect"):
        certs = secret_dir / f"certs-{env_name}"
        subprocess.run(
            [str(ROOT / "scripts" / "generate-certs.sh"), f"{RECEIVER},ams", str(certs)],
            check=True, capture_output=True,
        )  # fmt: skip
        for kind in ("server", "client"):
            body = (certs / f"{kind}.key").read_text().splitlines()
            values[f"{env_name}_{kind}_key"] = next(line for line in body[1:] if len(line) > 40)
        (pass_dir / env_name).write_text(secrets.token_urlsafe(24) + "\n")
        (pass_dir / env_name).chmod(0o600)
        plain = subprocess.run(
            [str(ROOT / "scripts" / "vault-from-certs.sh"), env_name, str(certs)],
            check=True, capture_output=True, text=True, env={**os.environ, **extra[env_name]},
        ).stdout  # fmt: skip
        vault = INVENTORY / env_name / "group_vars" / env_name / "vault.yml"
        vault.unlink(missing_ok=True)
        subprocess.run(
            [str(Path(sys.executable).with_name("ansible-vault")), "encrypt", "--encrypt-vault-id", env_name,
             "--vault-id", f"{env_name}@{ROOT / 'scripts' / 'vault-pass-client'}", "--output", str(vault)],
            input=plain, check=True, capture_output=True, text=True,
            env={**os.environ, "POLYMM_VAULT_PASSWORD_DIR": str(pass_dir)},
        )  # fmt: skip
    (secret_dir / "values.json").write_text(json.dumps(values))
    (secret_dir / "values.json").chmod(0o600)
    return values


def link_group_vars() -> None:
    """The real inventories' group_vars, file by file (their vault.yml excepted: an operator's
    real vault must never reach the test VMs), beside this run's vault files."""
    for env_name in ("prod", "collect"):
        src_root = ROOT / "inventory" / env_name / "group_vars"
        for group_dir in sorted(p for p in src_root.iterdir() if p.is_dir()):
            dest = INVENTORY / env_name / "group_vars" / group_dir.name
            dest.mkdir(parents=True, exist_ok=True)
            for old in dest.iterdir():
                if old.is_symlink():
                    old.unlink()
            for src in sorted(group_dir.glob("*.yml")):
                if src.name != "vault.yml":
                    (dest / src.name).symlink_to(os.path.relpath(src, dest))


def up(state: Path, *, skip_wheelhouse: bool = False) -> dict[str, object]:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    down(state, quiet=True)
    state.mkdir(parents=True, exist_ok=True)
    image = build_image(state.parent)
    timings["image_s"] = round(time.monotonic() - t0, 1)
    log(f"image {image.name} ready in {timings['image_s']} s")

    t = time.monotonic()
    wheelhouse = state.parent / "wheelhouse"
    if not (skip_wheelhouse and (wheelhouse / "wheelhouse.tar").exists()):
        build_wheelhouse(wheelhouse)
    timings["wheelhouse_s"] = round(time.monotonic() - t, 1)
    log(f"wheelhouse ready in {timings['wheelhouse_s']} s")

    t = time.monotonic()
    identity = hostservers.collector_identity()
    link_group_vars()
    secret_values = make_secrets(state, identity)
    endpoints = hostservers.start(state / "servers", identity)
    log(f"secrets + host servers in {time.monotonic() - t:.1f} s: {endpoints}")

    t = time.monotonic()
    machines = vms.boot(VM_SPECS, image, state / "vms")
    known_hosts = vms.write_known_hosts(machines, image, state / "known_hosts")
    ready = vms.wait_ready(machines, image, known_hosts, ADMIN_USER)
    timings["boot_s"] = round(time.monotonic() - t, 1)
    log(f"VMs ready in {timings['boot_s']} s ({ready})")

    doc: dict[str, object] = {
        "image": str(image),
        "admin_user": ADMIN_USER,
        "identity_file": str(image / "id_ed25519"),
        "public_key": (image / "id_ed25519.pub").read_text().strip(),
        "known_hosts": str(known_hosts),
        "wheelhouse": str(wheelhouse),
        "hosts": {m.name: {"ssh_port": m.ssh_port, "link_address": m.link_address} for m in machines},
        "non_peer_address": NON_PEER_ADDRESS,
        "endpoints": endpoints,
        "bucket": hostservers.BUCKET,
        "poly_tokens": list(hostservers.POLY_TOKENS),
        "clob_market": list(hostservers.CLOB_MARKET),
        "markets_toml": markets_toml(),
        "secret_names": sorted(secret_values),
        "timings": timings,
    }
    (state / "testbed.json").write_text(json.dumps(doc, indent=1))
    return doc


def kill(state: Path, name: str) -> None:
    """The host dies with whatever it had not uploaded; its disk stays for the salvage."""
    dead = vms.crash(name, state / "vms")
    doc = json.loads((state / "testbed.json").read_text())
    doc["hosts"][name]["killed_at"] = time.time()
    (state / "testbed.json").write_text(json.dumps(doc, indent=1))
    log(f"{name} killed (SIGKILL to its qemu), disk kept as {dead.name}")


def droplet_up(state: Path, name: str) -> str:
    """The machine behind a droplet the DigitalOcean sim creates: the VM `up` booted, claimed once;
    after `kill`, a replacement (vms.boot_replacement) on the same address. testbed.json and
    known_hosts follow its new SSH port, so the inventory reaches the new machine."""
    doc = json.loads((state / "testbed.json").read_text())
    host = doc["hosts"].get(name)
    machine = next((m for m in vms.load(state / "vms") if m.name == name), None)
    if host is None or machine is None:
        raise SystemExit(f"droplet-up: the bed has no VM named {name!r} (it has {sorted(doc['hosts'])})")
    if vms.alive(machine):
        if host.get("droplet_claimed"):
            raise SystemExit(f"droplet-up: {name} already backs a droplet and still runs: kill it first")
        host["droplet_claimed"] = True
        (state / "testbed.json").write_text(json.dumps(doc, indent=1))
        return machine.link_address
    image = Path(str(doc["image"]))
    t = time.monotonic()
    new = vms.boot_replacement(name, image, state / "vms")
    log(f"{name}: new VM booting on {new.link_address}, the dead disk attached as /dev/vdb")
    known_hosts = vms.write_known_hosts(vms.load(state / "vms"), image, state / "known_hosts")
    ready = vms.wait_ready([new], image, known_hosts, ADMIN_USER)
    doc = json.loads((state / "testbed.json").read_text())
    doc["hosts"][name].update(ssh_port=new.ssh_port, droplet_claimed=True, replaced=True)
    doc.setdefault("timings", {})[f"replace_{name}_s"] = round(time.monotonic() - t, 1)
    (state / "testbed.json").write_text(json.dumps(doc, indent=1))
    log(f"replacement {name} ready in {time.monotonic() - t:.1f} s ({ready})")
    return new.link_address


def down(state: Path, *, quiet: bool = False, inventory: Path = INVENTORY) -> None:
    """Stop everything of a bed and forget it, so the next `up` starts from nothing (the
    restarts snapshot of an old bed must never be compared with a new one's units)."""
    stopped = vms.stop_all(state / "vms")
    servers = hostservers.stop(state / "servers") if (state / "servers").exists() else []
    for env_name in ("prod", "collect"):
        (inventory / env_name / "group_vars" / env_name / "vault.yml").unlink(missing_ok=True)
    shutil.rmtree(state / "secrets", ignore_errors=True)
    shutil.rmtree(state / "vault-pass", ignore_errors=True)
    for name in ("testbed.json", "restarts.json"):
        (state / name).unlink(missing_ok=True)
    for provisioned in inventory.glob("*/host_vars/*/provisioned.yml"):
        provisioned.unlink()
    if not quiet or stopped or servers:
        log(f"down: stopped VMs {stopped or 'none'}, servers {servers or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "kill", "droplet-up"))
    parser.add_argument("host", nargs="?", default="ams", help="kill, droplet-up: the VM")
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("POLYMM_VM_STATE", DEFAULT_STATE)))
    parser.add_argument("--reuse-wheelhouse", action="store_true", help="keep an existing wheelhouse")
    args = parser.parse_args()
    # Run from a Mitogen play, this process inherits Mitogen's CPU pinning (on 2 cores: core 1 only),
    # and both VMs would share one core (found on the bed: half the machine idle, converge 2x slower).
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    state = args.state.resolve()
    if args.action == "down":
        down(state)
        return
    if args.action == "kill":
        kill(state, args.host)
        return
    if args.action == "droplet-up":
        print(droplet_up(state, args.host), flush=True)  # the sim reads the last line
        return
    try:
        up(state, skip_wheelhouse=args.reuse_wheelhouse)
    except BaseException:
        log("up failed: tearing down")
        down(state)
        raise


if __name__ == "__main__":
    main()
