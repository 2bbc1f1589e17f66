"""Boot and stop the test bed's Debian VMs: qemu software emulation, direct kernel boot, one overlay
per VM on the shared base image, SSH on a user-net port forward, and a private link between the
VMs on a qemu socket netdev (no bridge, no root network setup, host traffic stays on loopback).

Every VM is a daemonized qemu with a pidfile in the state folder; `stop_all` ends exactly those
PIDs (checked against their command line), so a stale pidfile never kills someone else's process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from polymm.sim.ports import free_port

# qemu's user network: the host's loopback is 10.0.2.2 from inside a guest.
HOST_FROM_GUEST = "10.0.2.2"
LINK_PREFIX = 24


@dataclass(frozen=True)
class VmSpec:
    name: str
    link_address: str  # address on the private link (eth1)
    index: int  # distinct MACs and machine ids


@dataclass
class Vm:
    name: str
    link_address: str
    ssh_port: int
    pidfile: str
    console: str
    overlay: str

    def ssh_argv(self, image: Path, known_hosts: Path, user: str) -> list[str]:
        return [
            "ssh", "-i", str(image / "id_ed25519"), "-p", str(self.ssh_port),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1",
        ]  # fmt: skip


def qemu_argv(spec: VmSpec, vm: Vm, image: Path, link: str, memory_mb: int, cpus: int) -> list[str]:
    """One VM: TCG (this machine's /dev/kvm cannot boot a stock kernel), the image's own kernel and
    initrd, eth0 = user net with the SSH forward, eth1 = the socket link with a static address."""
    cmdline = " ".join([
        "root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "quiet",
        f"systemd.hostname={spec.name}", f"systemd.machine_id={spec.index + 1:032x}",
        # systemd-network-generator turns this into a .network file for eth1.
        f"ip={spec.link_address}:::255.255.255.0::eth1:off",
    ])  # fmt: skip
    return [
        "qemu-system-x86_64", "-name", spec.name,
        "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mb),
        "-nodefaults", "-display", "none", "-serial", f"file:{vm.console}",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", cmdline,
        "-drive", f"file={vm.overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:12:34:{spec.index + 1:02x}",
        "-netdev", f"socket,id=n1,{link}",
        "-device", f"virtio-net-pci,netdev=n1,mac=52:54:00:77:00:{spec.index + 1:02x}",
        "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
        "-daemonize", "-pidfile", vm.pidfile,
    ]  # fmt: skip


def boot(specs: list[VmSpec], image: Path, state: Path, *, memory_mb: int = 1536, cpus: int = 2) -> list[Vm]:
    """Start every VM (the first one listens on the link, the others connect to it) and return at
    once; `wait_ready` waits for them in parallel."""
    state.mkdir(parents=True, exist_ok=True)
    link_port = free_port()
    vms: list[Vm] = []
    for i, spec in enumerate(specs):
        overlay = state / f"{spec.name}.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "base.qcow2"),
             str(overlay)],
            check=True,
        )  # fmt: skip
        vm = Vm(spec.name, spec.link_address, free_port(), str(state / f"{spec.name}.pid"),
                str(state / f"{spec.name}.console"), str(overlay))  # fmt: skip
        link = f"listen=127.0.0.1:{link_port}" if i == 0 else f"connect=127.0.0.1:{link_port}"
        argv = qemu_argv(spec, vm, image, link, memory_mb, cpus)
        (state / f"{spec.name}.argv").write_text(json.dumps(argv))
        subprocess.run(argv, check=True)
        vms.append(vm)
    (state / "vms.json").write_text(json.dumps([asdict(v) for v in vms], indent=1))
    return vms


def crash(name: str, state: Path) -> Path:
    """The host dies: SIGKILL its qemu (with whatever it had not uploaded) and keep its disk as
    `<name>-dead.qcow2`, the disk an operator salvages. Returns that disk."""
    old = next(v for v in load(state) if v.name == name)
    if (pid := _pid(old)) is not None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while _pid(old) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    dead = state / f"{name}-dead.qcow2"
    os.replace(old.overlay, dead)
    return dead


def boot_replacement(name: str, image: Path, state: Path) -> Vm:
    """A new machine for a crashed VM: a fresh overlay on the same link address (what a reserved IP
    gives a rebuilt droplet) and the dead disk attached as /dev/vdb, the way an operator reaches the
    old host's disk. `snapshot=on`: the dead disk itself is never written."""
    machines = load(state)
    old = next(v for v in machines if v.name == name)
    dead = state / f"{name}-dead.qcow2"
    if alive(old) or not dead.exists():
        raise RuntimeError(f"{name} has not crashed (no {dead.name}, or its qemu still runs)")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "base.qcow2"),
         old.overlay],
        check=True,
    )  # fmt: skip
    new = Vm(old.name, old.link_address, free_port(), old.pidfile, old.console, old.overlay)
    argv = json.loads((state / f"{name}.argv").read_text())
    forward = "hostfwd=tcp:127.0.0.1:{}-:22"
    argv = [a.replace(forward.format(old.ssh_port), forward.format(new.ssh_port)) for a in argv]
    argv += ["-drive", f"file={dead},if=virtio,format=qcow2,snapshot=on"]
    (state / f"{name}.argv").write_text(json.dumps(argv))
    subprocess.run(argv, check=True)
    machines = [new if v.name == name else v for v in machines]
    (state / "vms.json").write_text(json.dumps([asdict(v) for v in machines], indent=1))
    return new


def load(state: Path) -> list[Vm]:
    path = state / "vms.json"
    if not path.exists():
        return []
    return [Vm(**v) for v in json.loads(path.read_text())]


def write_known_hosts(vms: list[Vm], image: Path, path: Path) -> Path:
    """The image's host keys for each forwarded port: ssh and Ansible keep host key checking on."""
    keys = [p.read_text().split()[:2] for p in sorted(image.glob("ssh_host_*_key.pub"))]
    lines = [f"[127.0.0.1]:{vm.ssh_port} {kind} {key}" for vm in vms for kind, key in keys]
    path.write_text("\n".join(lines) + "\n")
    return path


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(5)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_one(vm: Vm, image: Path, known_hosts: Path, user: str, timeout_s: float) -> float:
    """Seconds until sshd answers and systemd reports the boot finished (`running`)."""
    start = time.monotonic()
    deadline = start + timeout_s
    while not _banner(vm.ssh_port):
        if not alive(vm):
            raise RuntimeError(f"{vm.name}: qemu exited; console: {_tail(vm.console)}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{vm.name}: no SSH banner after {timeout_s:.0f}s; console: {_tail(vm.console)}"
            )
        time.sleep(1)
    ssh = vm.ssh_argv(image, known_hosts, user)
    while True:
        left = max(5.0, deadline - time.monotonic())
        try:
            out = subprocess.run(
                [*ssh, "systemctl", "is-system-running", "--wait"],
                capture_output=True, text=True, timeout=left,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{vm.name}: systemd still starting after {timeout_s:.0f}s") from exc
        state = out.stdout.strip()
        if state == "running":
            return time.monotonic() - start
        if state == "degraded":
            failed = subprocess.run(
                [*ssh, "systemctl", "--failed", "--no-legend"], capture_output=True, text=True
            )
            raise RuntimeError(f"{vm.name}: boot degraded, failed units: {failed.stdout.strip()}")
        if out.returncode == 255 and time.monotonic() < deadline:  # sshd up before the key was accepted
            time.sleep(1)
            continue
        raise RuntimeError(f"{vm.name}: is-system-running said {state!r} ({out.stderr.strip()})")


def wait_ready(
    vms: list[Vm], image: Path, known_hosts: Path, user: str, timeout_s: float = 300
) -> dict[str, float]:
    with ThreadPoolExecutor(len(vms)) as pool:
        futures = {vm.name: pool.submit(wait_one, vm, image, known_hosts, user, timeout_s) for vm in vms}
        return {name: f.result() for name, f in futures.items()}


def _pid(vm: Vm) -> int | None:
    try:
        pid = int(Path(vm.pidfile).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # Only our qemu: the pid may have been reused since the pidfile was written.
    return pid if b"qemu-system" in cmdline and vm.overlay.encode() in cmdline else None


def alive(vm: Vm) -> bool:
    return _pid(vm) is not None


def stop_all(state: Path, timeout_s: float = 15) -> list[str]:
    """SIGTERM each VM's qemu by its pidfile, SIGKILL after `timeout_s`; returns the names stopped."""
    stopped = []
    for vm in load(state):
        pid = _pid(vm)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid(vm) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if (pid := _pid(vm)) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(vm.name)
    for vm in load(state):
        Path(vm.overlay).unlink(missing_ok=True)
        Path(vm.overlay.removesuffix(".qcow2") + "-dead.qcow2").unlink(missing_ok=True)
        Path(vm.pidfile).unlink(missing_ok=True)
    return stopped


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"
