#!/usr/bin/env python3
"""Checks one polymm host for playbooks/verify.yml (the seed's step 6), with systemd's own answers.

Runs on the host as root with the system python3 (stdlib only; the S3 listing runs in
data-collector's venv, which has boto3). Argument: one JSON object (see verify.yml). Prints one line
per check, `OK ...` or `FAIL ...`, and exits 1 if any check failed. Never prints a secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

LEVELS_BAD = {"ERROR", "CRITICAL"}


def run(*cmd: str) -> str:
    """A command's stdout; empty when the command is missing or hangs (the check then fails)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def unit_props(unit: str) -> dict[str, str]:
    names = "ActiveState,SubState,NRestarts,WatchdogTimestampMonotonic,WatchdogUSec,StatusText,InvocationID"
    out = run("systemctl", "show", unit, "-p", names)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def check_unit(svc: dict, limits: dict, report: list[tuple[bool, str]]) -> None:
    unit = svc["name"]
    props = unit_props(unit)
    state = f"{props.get('ActiveState')}/{props.get('SubState')}"
    # Type=notify: "active" is reached only after READY=1.
    report.append((state == "active/running", f"{unit}: {state}, NRestarts={props.get('NRestarts')}"))
    if state != "active/running":
        return
    stamp = int(props.get("WatchdogTimestampMonotonic") or 0)
    age = time.monotonic() - stamp / 1e6 if stamp else float("inf")
    limit = limits["watchdog_max_age_sec"]
    report.append((age <= limit, f"{unit}: watchdog pinged {age:.1f} s ago (limit {limit} s)"))
    status = props.get("StatusText", "")
    report.append((bool(status), f"{unit}: STATUS {status[:160]!r}"))
    lines = run(
        "journalctl", f"_SYSTEMD_INVOCATION_ID={props.get('InvocationID', '')}", "-n",
        str(limits["journal_lines"]), "-o", "cat", "--no-pager",
    ).splitlines()  # fmt: skip
    bad = [line for line in lines if len(line.split()) > 1 and line.split()[1] in LEVELS_BAD]
    report.append((not bad, f"{unit}: {len(bad)} ERROR lines in the last {len(lines)} journal lines"
                   + (f", last: {bad[-1][:200]}" if bad else "")))  # fmt: skip
    if svc.get("listen_port"):
        check_peers(svc, report)
    if svc.get("data_dir"):
        check_lake(svc, limits, report)
    if svc.get("s3"):
        check_s3(svc, limits, report)


def check_peers(svc: dict, report: list[tuple[bool, str]]) -> None:
    port = int(svc["listen_port"])
    out = run("ss", "-Htn", "state", "established", f"( sport = :{port} )")
    peers = {line.split()[-1].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line.split()}
    peers = {p.removeprefix("::ffff:") for p in peers}
    want = set(svc.get("peers", []))
    missing = sorted(want - peers)
    msg = f"{svc['name']}: relay peers on :{port}: {', '.join(sorted(peers)) or 'none'}"
    if missing:
        msg += f" (missing {', '.join(missing)})"
    report.append((not missing and bool(peers), msg))


def check_lake(svc: dict, limits: dict, report: list[tuple[bool, str]]) -> None:
    newest, name = 0.0, ""
    for sub in ("journal", "lake"):
        for path in Path(svc["data_dir"], sub).rglob("*"):
            try:
                st = path.stat()
            except OSError:
                continue  # compacted or uploaded meanwhile
            if path.is_file() and st.st_mtime > newest:
                newest, name = st.st_mtime, str(path)
    age_min = (time.time() - newest) / 60 if newest else float("inf")
    limit = limits["lake_max_age_minutes"]
    msg = f"{svc['name']}: newest lake file {age_min:.1f} min old (limit {limit}): {name}"
    report.append((age_min <= limit, msg))


S3_LIST = r"""
import datetime, json, os, sys
import boto3
args = json.loads(sys.argv[1])
for line in open(args["env_file"]):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        k, v = line.split("=", 1)
        os.environ[k] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\") if v.startswith('"') else v
s3 = boto3.client("s3", region_name=os.environ.get("S3_REGION", "eu-central-1"),
                  endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)
bucket = os.environ["S3_BUCKET"]
prefix = os.environ.get("S3_PREFIX", "").strip("/")
prefix = prefix + "/" if prefix else ""
now = datetime.datetime.now(datetime.timezone.utc)
found, newest = 0, None
for back in (0, 1):
    t = now - datetime.timedelta(hours=back)
    for sym in args["symbols"]:
        p = f"{prefix}binance/bbo/symbol={sym.upper()}/date={t:%Y-%m-%d}/hour={t:%H}/"
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=p).get("Contents", []):
            age = (now - obj["LastModified"]).total_seconds() / 60
            if age <= args["max_age_minutes"]:
                found += 1
                newest = age if newest is None else min(newest, age)
print(json.dumps({"bucket": bucket, "found": found, "newest_minutes": newest}))
"""


def check_s3(svc: dict, limits: dict, report: list[tuple[bool, str]]) -> None:
    args = {"env_file": svc["env_file"], "symbols": svc["s3"]["symbols"],
            "max_age_minutes": limits["s3_max_age_minutes"]}  # fmt: skip
    proc = subprocess.run(
        [svc["s3"]["python"], "-c", S3_LIST, json.dumps(args)], capture_output=True, text=True, timeout=120
    )
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        report.append((False, f"{svc['name']}: S3 listing failed: {err}"))
        return
    newest = res["newest_minutes"]
    msg = f"{svc['name']}: {res['found']} S3 objects in s3://{res['bucket']} binance/bbo for the last hour"
    if newest is not None:
        msg += f", newest {newest:.1f} min old"
    report.append((res["found"] > 0, msg))


def check_clock(limits: dict, report: list[tuple[bool, str]]) -> None:
    fields = run("chronyc", "-c", "tracking").strip().split(",")
    if len(fields) < 5:
        report.append((False, "clock: chronyc tracking gave no answer"))
        return
    offset_ms = float(fields[4]) * 1000
    limit = limits["max_clock_offset_ms"]
    leap = fields[13] if len(fields) > 13 else "?"
    synced = leap != "Not synchronised"
    msg = f"clock: offset {offset_ms:+.3f} ms from {fields[1] or 'no source'} (limit {limit} ms), {leap}"
    ok = abs(offset_ms) <= limit and (synced or not limits["require_clock_sync"])
    report.append((ok, msg))


def main() -> int:
    spec = json.loads(sys.argv[1])
    report: list[tuple[bool, str]] = []
    check_clock(spec["limits"], report)
    for svc in spec["services"]:
        check_unit(svc, spec["limits"], report)
    for ok, line in report:
        print(("OK   " if ok else "FAIL ") + line)
    return 0 if all(ok for ok, _ in report) else 1


if __name__ == "__main__":
    os.environ.setdefault("SYSTEMD_COLORS", "0")
    raise SystemExit(main())
