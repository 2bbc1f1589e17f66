"""The venues and S3 for the VMs, on the host: the project's simulators (Binance WS, Polymarket
market WS, Gamma, the CLOB with signature and auth checks), SeaweedFS as S3, and the DigitalOcean
API sim whose droplets are the bed's VMs (its machine command is `testbed.py droplet-up`).

Each runs as its own detached process with a pidfile in the state folder, bound to 127.0.0.1 on a
free port: qemu's user network maps the guests' 10.0.2.2 to the host's loopback, so the guests
reach them at http(s)/ws://10.0.2.2:<port> and nothing listens on an outside interface.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from polymm.sim.ports import free_ports
from polymm.sim.s3 import ADMIN, REGION, S3Identity, weed_mini_command

GUEST_HOST = "10.0.2.2"
BUCKET = "marketdata-vmtest"
# Two Polymarket tokens on the market simulator (what data-collector subscribes to) and one
# market on the CLOB (what the executor quotes).
POLY_TOKENS = (
    "71321045679252212594626385532706912750332728571942532289631379312455583992563",
    "48331043336612883890938759509493159234755048973500640148014422747788308965732",
)
CLOB_MARKET = ("0x" + "5f" * 32, "7" * 76, "8" * 76)  # condition id, YES token, NO token
EXTERNAL_DEPTH = 3  # external levels per side the CLOB starts with (size 100 each)


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]
    port: int  # the port that answers when the server is ready
    udp: bool = False  # ready = answers an NTP request on that UDP port


def collector_identity() -> S3Identity:
    """A fresh S3 key per run, allowed only on the test bucket (what the IAM user gets on AWS)."""
    return S3Identity(
        "data-collector",
        "AKVM" + secrets.token_hex(8).upper(),
        secrets.token_urlsafe(30),
        (f"Read:{BUCKET}", f"Write:{BUCKET}", f"List:{BUCKET}"),
    )


def plan(state: Path, identity: S3Identity) -> tuple[list[Server], dict[str, str]]:
    """argv of every server, and the endpoint URLs as the guests see them."""
    py = sys.executable
    ports = free_ports("binance", "polymarket", "gamma", "clob", "clob_ws", "ntp", "digitalocean")
    # An empty S3 per bed: objects of an earlier run (same bucket, same hour's keys, the sim's same
    # trade ids) would pass "every lake file is in S3" and fail "no trade stored twice" (found so).
    shutil.rmtree(state / "s3", ignore_errors=True)
    weed_argv, s3_url = weed_mini_command(state / "s3", [ADMIN, identity])
    s3_port = int(s3_url.rsplit(":", 1)[1])
    token_file = state / "do-token"
    token_file.write_text("dop_v1_" + secrets.token_hex(32) + "\n")
    token_file.chmod(0o600)
    # Each droplet the playbooks create is a VM of this bed (the state folder is the servers' parent).
    testbed = Path(__file__).resolve().with_name("testbed.py")
    machine = shlex.join([py, str(testbed), "droplet-up", "{name}", "--state", str(state.parent)])
    servers = [
        Server("binance-sim", [py, "-m", "polymm.sim.binance_ws", "--port", str(ports["binance"]),
                               "--rate", "5"], ports["binance"]),
        Server("polymarket-sim", [py, "-m", "polymm.sim.polymarket_ws", "--port", str(ports["polymarket"]),
                                  "--tokens", ",".join(POLY_TOKENS), "--rate", "5"], ports["polymarket"]),
        Server("gamma-sim", [py, "-m", "polymm.sim.gamma", "--port", str(ports["gamma"])], ports["gamma"]),
        Server("clob-sim", [py, "-m", "polymm.sim.clob", "--port", str(ports["clob"]),
                            "--ws-port", str(ports["clob_ws"]), "--market", ":".join(CLOB_MARKET),
                            "--depth", str(EXTERNAL_DEPTH), "--churn", "0.5"], ports["clob"]),
        # The guests' only time source (no route to a pool): chrony syncs to the host's clock.
        Server("ntp-sim", [py, "-m", "polymm.sim.ntp", "--port", str(ports["ntp"])], ports["ntp"], udp=True),
        Server("s3", weed_argv, s3_port),
        Server("digitalocean-sim", [py, "-m", "polymm.sim.digitalocean", "--port", str(ports["digitalocean"]),
                                    "--token-file", str(token_file), "--machine-command", machine],
               ports["digitalocean"]),
    ]  # fmt: skip
    g = GUEST_HOST
    endpoints = {
        "binance_ws_url": f"ws://{g}:{ports['binance']}",
        "polymarket_ws_url": f"ws://{g}:{ports['polymarket']}/ws/market",
        "gamma_url": f"http://{g}:{ports['gamma']}",
        "clob_url": f"http://{g}:{ports['clob']}",
        "clob_ws_url": f"ws://{g}:{ports['clob_ws']}",
        "s3_endpoint_url": f"http://{g}:{s3_port}",
        "ntp_server": f"{g} port {ports['ntp']}",  # a chrony source line's address part
        # the same servers from the host, for the checks
        "host_clob_url": f"http://127.0.0.1:{ports['clob']}",
        "host_s3_url": f"http://127.0.0.1:{s3_port}",
        "do_api_url": f"http://127.0.0.1:{ports['digitalocean']}/v2",  # the control machine's only
        "do_token_file": str(token_file),
    }
    return servers, endpoints


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _answers_ntp(port: int) -> bool:
    request = bytes([0x23]) + bytes(47)  # version 4, client mode
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(request, ("127.0.0.1", port))
        return len(sock.recv(512)) >= 48
    return False


def start(state: Path, identity: S3Identity, timeout_s: float = 90) -> dict[str, str]:
    """Start every server detached (own session, pidfile, log), wait until each listens, make the
    bucket; returns the endpoints. On failure everything started is stopped again."""
    state.mkdir(parents=True, exist_ok=True)
    servers, endpoints = plan(state, identity)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for server in servers:
            with open(state / f"{server.name}.log", "ab") as log:
                proc = subprocess.Popen(
                    server.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=state, env=env, start_new_session=True,
                )  # fmt: skip
            (state / f"{server.name}.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        for server in servers:
            while not (_answers_ntp(server.port) if server.udp else _listening(server.port)):
                if not _running(state, server.name):
                    raise RuntimeError(f"{server.name} exited; see {state / (server.name + '.log')}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{server.name} not listening on {server.port} after {timeout_s:.0f}s")
                time.sleep(0.2)
        _make_bucket(endpoints["host_s3_url"], deadline)
    except BaseException:
        stop(state)
        raise
    (state / "servers.json").write_text(json.dumps([s.name for s in servers]))
    return endpoints


def s3_client(url: str, identity: S3Identity = ADMIN, **config: object) -> object:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=url, region_name=REGION,
        aws_access_key_id=identity.access_key, aws_secret_access_key=identity.secret_key,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )  # fmt: skip


def _make_bucket(url: str, deadline: float) -> None:
    """weed mini opens its S3 port before a volume takes writes: retry until a write succeeds."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(url, connect_timeout=1, read_timeout=5)
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with contextlib.suppress(ClientError):
                client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
            client.put_object(Bucket=BUCKET, Key="ready-probe", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="ready-probe")
            return
        except (BotoCoreError, ClientError) as exc:
            last = exc
            time.sleep(0.3)
    raise TimeoutError(f"S3 bucket {BUCKET} not writable: {last}")


def _pid(state: Path, name: str) -> int | None:
    try:
        pid = int((state / f"{name}.pid").read_text())
        environ = Path(f"/proc/{pid}/cwd").resolve()
    except (OSError, ValueError):
        return None
    return pid if environ == state.resolve() else None  # ours: started in this state folder


def _running(state: Path, name: str) -> bool:
    pid = _pid(state, name)
    if pid is None:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return False


def stop(state: Path, timeout_s: float = 10) -> list[str]:
    """SIGTERM each server's process group, SIGKILL what is left after `timeout_s`."""
    stopped = []
    for pidfile in sorted(state.glob("*.pid")):
        name = pidfile.stem
        pid = _pid(state, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _running(state, name) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            stopped.append(name)
        pidfile.unlink(missing_ok=True)
    return stopped
