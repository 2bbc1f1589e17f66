"""Checks with real commands on the converged VMs (plain ssh, host keys checked):

  restarts  first call records every unit's InvocationID/NRestarts, later calls compare (a
            no-change converge restarts nothing)
  early     units active and READY, systemd-analyze security <= 5.0, secrets' owners and modes,
            ufw rules and reachability (peer accepted, non-peer 10.77.0.3 refused), no secret in
            the guests' journals, the relay links up, the executor quoting on the local CLOB,
            `systemctl stop data-collector` flushing everything to S3, rows read back from S3
  late      watchdog: SIGSTOP each service, systemd restarts it; fail2ban bans failed logins
  all       early then late

Every check runs even when an earlier one failed; the report names each failure, exit 1 if any.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("POLYMM_VM_STATE", ROOT / ".vm-cache" / "run"))
SERVICES = {"fra": ["binance-sender", "binance-collector"], "ams": ["trading-executor", "data-collector"]}
# service -> (environment, certificate kind) per docs/deploy-interface.md
CERTS = {
    "binance-sender": ("prod", "client"),
    "binance-collector": ("collect", "client"),
    "trading-executor": ("prod", "server"),
    "data-collector": ("collect", "server"),
}
MAX_EXPOSURE = 5.0
QUOTE_LINE = re.compile(r"\bquote \d\d:\d\d:\d\d\.\d{3}Z .* YES bid ")
EXEC_PORT, COLLECT_PORT = 9001, 9002


class CheckError(AssertionError):
    pass


def testbed() -> dict:
    return json.loads((STATE / "testbed.json").read_text())


TB: dict = {}


def run_ssh(host: str, command: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `command` on a VM as the admin user (prefix sudo where root is needed)."""
    argv = [
        "ssh", "-i", TB["identity_file"], "-p", str(TB["hosts"][host]["ssh_port"]),
        "-o", f"UserKnownHostsFile={TB['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
        "-o", "ControlMaster=auto", "-o", f"ControlPath={STATE}/cm-%p", "-o", "ControlPersist=120",
        f"{TB['admin_user']}@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ssh(host: str, command: str, *, check: bool = True, timeout: float = 120) -> str:
    out = run_ssh(host, command, timeout=timeout)
    if check and out.returncode != 0:
        raise CheckError(
            f"{host}: `{command}` exited {out.returncode}: {(out.stderr or out.stdout).strip()[-500:]}"
        )
    return out.stdout


def show(host: str, unit: str, *props: str) -> dict[str, str]:
    text = ssh(host, f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, every: float = 2.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every)


def all_units() -> list[tuple[str, str]]:
    return [(host, svc) for host, svcs in SERVICES.items() for svc in svcs]


# -- restarts --------------------------------------------------------------------------------------


def restarts() -> list[str]:
    now = {f"{h}/{s}": show(h, s, "InvocationID", "NRestarts", "ActiveState") for h, s in all_units()}
    path = STATE / "restarts.json"
    if not path.exists():
        path.write_text(json.dumps(now, indent=1))
        return [f"recorded invocations of {len(now)} units"]
    before = json.loads(path.read_text())
    lines, bad = [], []
    for unit, props in now.items():
        old = before.get(unit, {})
        lines.append(
            f"{unit}: NRestarts {old.get('NRestarts')} -> {props['NRestarts']}, "
            f"InvocationID {'same' if old.get('InvocationID') == props['InvocationID'] else 'CHANGED'}"
        )
        if old.get("NRestarts") != props["NRestarts"]:
            bad.append(f"{unit} was restarted by systemd (crash or watchdog) between the runs")
        elif old.get("InvocationID") != props["InvocationID"]:
            bad.append(f"{unit} was restarted by the second converge (InvocationID changed)")
    if bad:
        raise CheckError("; ".join(bad) + "\n" + "\n".join(lines))
    return lines


# -- early checks ----------------------------------------------------------------------------------


def check_units() -> list[str]:
    lines = []
    for host, svc in all_units():
        p = show(
            host, svc, "ActiveState", "SubState", "Type", "NRestarts", "WatchdogUSec", "StatusText", "Result"
        )
        lines.append(
            f"{host}/{svc}: {p['ActiveState']}/{p['SubState']} Type={p['Type']} "
            f"NRestarts={p['NRestarts']} Watchdog={p['WatchdogUSec']} status: {p['StatusText']}"
        )
        # A Type=notify unit is active/running only after the service sent READY=1.
        if (p["ActiveState"], p["SubState"], p["Type"]) != ("active", "running", "notify"):
            raise CheckError(f"{host}/{svc} not READY: {p}")
        if not p["StatusText"]:
            raise CheckError(f"{host}/{svc} sent no STATUS=")
    for host in SERVICES:
        state = ssh(host, "systemctl is-system-running", check=False).strip()
        failed = ssh(host, "systemctl --failed --no-legend --plain", check=False).strip()
        lines.append(f"{host}: system {state}{', failed: ' + failed if failed else ''}")
        if state != "running":
            raise CheckError(f"{host}: system {state}; failed units: {failed}")
    return lines


def check_security() -> list[str]:
    lines, bad = [], []
    for host, svc in all_units():
        out = ssh(host, f"systemd-analyze security --no-pager {svc}.service")
        m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out)
        if not m:
            raise CheckError(f"{host}/{svc}: no exposure level in systemd-analyze output")
        score = float(m.group(1))
        lines.append(f"{host}/{svc}: exposure {score} {m.group(2)}")
        if score > MAX_EXPOSURE:
            bad.append(f"{svc} {score} > {MAX_EXPOSURE}")
    if bad:
        raise CheckError("systemd-analyze security: " + ", ".join(bad) + "\n" + "\n".join(lines))
    return lines


def _stat(host: str, paths: list[str]) -> dict[str, str]:
    out = ssh(host, "sudo stat -c '%n|%U:%G|%a|%F' " + " ".join(f"'{p}'" for p in paths), check=False)
    return {
        n: f"{owner} {mode} {kind}" for n, owner, mode, kind in (ln.split("|") for ln in out.splitlines())
    }


def check_secret_files() -> list[str]:
    lines, bad = [], []
    for host, svc in all_units():
        env, kind = CERTS[svc]
        cert_dir = f"/etc/polymm/certs/{env}-{kind}"
        want = {
            f"/etc/{svc}/env": "root:root 600 regular file",
            cert_dir: "root:root 700 directory",
            f"{cert_dir}/ca.crt": "root:root 644 regular file",
            f"{cert_dir}/{kind}.crt": "root:root 644 regular file",
            f"{cert_dir}/{kind}.key": "root:root 600 regular file",
        }
        if svc == "trading-executor":
            want["/etc/trading-executor/markets.toml"] = "root:trading-executor 640 regular file"
        got = _stat(host, list(want))
        for path, expected in want.items():
            actual = got.get(path, "missing")
            lines.append(f"{host} {path}: {actual}")
            if actual != expected:
                bad.append(f"{host} {path}: {actual}, want {expected}")
        # The service user itself cannot read its env file or the key (systemd hands them over).
        for path in (f"/etc/{svc}/env", f"{cert_dir}/{kind}.key"):
            out = ssh(host, f"sudo -u {svc} cat {path} >/dev/null 2>&1 && echo READABLE || echo denied")
            if "READABLE" in out:
                bad.append(f"{host}: {path} readable by {svc}")
        # LoadCredential= copies: readable by the service user only, present only while it runs.
        cred_dir = f"/run/credentials/{svc}.service"
        creds = ssh(host, f"sudo sh -c \"stat -c '%n|%U|%a' {cred_dir}/*\"", check=False)
        entries = [ln.split("|") for ln in creds.split()]
        lines.append(f"{host} {cred_dir}: {[f'{Path(n).name} {u} {m}' for n, u, m in entries]}")
        if not entries:
            bad.append(f"{host}: no credentials under {cred_dir}")
        bad += [f"{host} {n}: {u} {m}, want {svc} 400" for n, u, m in entries if (u, m) != (svc, "400")]
    if bad:
        raise CheckError("; ".join(bad))
    return lines


def _ufw_rules(host: str) -> tuple[str, set[tuple[str, str, str]]]:
    out = ssh(host, "sudo ufw status verbose")
    default = next((ln for ln in out.splitlines() if ln.startswith("Default:")), "")
    rules = set()
    seen_header = False
    for line in out.splitlines():
        if line.startswith("--"):
            seen_header = True
            continue
        if seen_header and line.strip():
            to, action, source = [*re.split(r"\s{2,}", line.strip()), "", ""][:3]
            rules.add((to, action, source))
    return default, rules


def check_ufw() -> list[str]:
    lines, bad = [], []
    fra = TB["hosts"]["fra"]["link_address"]
    expected = {
        "fra": {("22/tcp", "ALLOW IN", "Anywhere"), ("22/tcp (v6)", "ALLOW IN", "Anywhere (v6)")},
        "ams": {("22/tcp", "ALLOW IN", "Anywhere"), ("22/tcp (v6)", "ALLOW IN", "Anywhere (v6)"),
                (f"{EXEC_PORT}/tcp", "ALLOW IN", fra), (f"{COLLECT_PORT}/tcp", "ALLOW IN", fra)},
    }  # fmt: skip
    for host, want in expected.items():
        default, rules = _ufw_rules(host)
        lines.append(f"{host} ufw {default}; rules: {sorted(rules)}")
        if not default.startswith("Default: deny (incoming)"):
            bad.append(f"{host}: ufw default is {default!r}")
        if rules != want:
            bad.append(f"{host}: ufw rules {sorted(rules)}, want exactly {sorted(want)}")
    # Reachability over the private link: from fra's own address accepted, from 10.77.0.3 refused.
    other = TB["non_peer_address"]
    ams = TB["hosts"]["ams"]["link_address"]
    ssh("fra", f"sudo ip addr replace {other}/24 dev eth1")
    try:
        for port in (EXEC_PORT, COLLECT_PORT):
            ok = _rc("fra", f"nc -z -w 5 {ams} {port}")
            refused = _rc("fra", f"nc -z -w 5 -s {other} {ams} {port}")
            lines.append(
                f"ams:{port} from {fra}: {'open' if ok == 0 else 'CLOSED'}; "
                f"from {other}: {'OPEN' if refused == 0 else 'refused'}"
            )
            if ok != 0:
                bad.append(f"ams:{port} not reachable from the peer {fra}")
            if refused == 0:
                bad.append(f"ams:{port} reachable from the non-peer {other}")
    finally:
        ssh("fra", f"sudo ip addr del {other}/24 dev eth1", check=False)
    blocked = ssh(
        "ams", f"sudo journalctl -k --no-pager -o cat | grep -c 'UFW BLOCK.*SRC={other}'", check=False
    )
    lines.append(f"ams kernel log: {blocked.strip() or 0} [UFW BLOCK] lines from {other}")
    if int(blocked.strip() or 0) == 0:
        bad.append(f"no [UFW BLOCK] line for {other} in ams's kernel log: refused by something else than ufw")
    if bad:
        raise CheckError("; ".join(bad) + "\n" + "\n".join(lines))
    return lines


def _rc(host: str, command: str) -> int:
    return run_ssh(host, command, timeout=60).returncode


def check_relay_links() -> list[str]:
    fra = TB["hosts"]["fra"]["link_address"]
    lines = []
    for port in (EXEC_PORT, COLLECT_PORT):

        def peers(port: int = port) -> str:
            out = ssh("ams", f"ss -Htn state established '( sport = :{port} )'")
            return out if fra in out else ""

        wait_for(peers, 90, f"an established relay connection from {fra} on ams:{port}")
        lines.append(f"ams:{port}: relay connection from {fra} established")
    return lines


def check_no_secret_in_journals() -> list[str]:
    values = json.loads((STATE / "secrets" / "values.json").read_text())
    lines = []
    for host in SERVICES:
        journal = ssh(host, "sudo journalctl --no-pager -o cat", timeout=180)
        found = [name for name, value in values.items() if value and value in journal]
        lines.append(
            f"{host}: journal ({len(journal.splitlines())} lines) holds none of {len(values)} test secrets"
            if not found
            else f"{host}: journal holds {found}"
        )
        if found:
            raise CheckError(f"{host}: secrets {found} appear in the journal")
    return lines


def _book(token: str) -> dict:
    url = f"{TB['endpoints']['host_clob_url']}/book?token_id={token}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def check_executor_quotes() -> list[str]:
    """The CLOB starts with 3 external levels of 100 per side on the YES token (0.47-0.49 bids, 0.51-0.53
    asks; the NO book mirrors them at the same prices): any other price or size is the executor's
    resting quote. Its log must show the quotes and its order journal must be written."""
    _, yes, no = TB["clob_market"]

    def quoting() -> list[str]:
        found = []
        for token in (yes, no):
            book = _book(token)
            for side in ("bids", "asks"):
                for level in book.get(side, []):
                    price, size = float(level["price"]), float(level["size"])
                    if size != 100 or not _external(side, price):
                        found.append(f"{'YES' if token == yes else 'NO'} {side} {size}@{price}")
        return found

    try:
        quotes = wait_for(quoting, 120, "the executor's quotes on the local CLOB's book", every=3)
    except CheckError as e:
        tail = ssh("ams", "sudo journalctl -u trading-executor --no-pager -o cat -n 25", check=False)
        raise CheckError(f"{e}; trading-executor's last lines:\n{tail}") from None
    journal = ssh("ams", "sudo journalctl -u trading-executor --no-pager -o cat -n 400")
    # The trader's view line (polymm.executor.quote_view): "quote 12:01:45.011Z BTCUSDT mid ... YES bid"
    order_lines = [ln for ln in journal.splitlines() if QUOTE_LINE.search(ln)]
    if not order_lines:
        raise CheckError("trading-executor logged no `quote` line in its last 400 journal lines")
    files = ssh(
        "ams", "sudo find /var/lib/trading-executor/journal -type f -size +0 -printf '%p %s\\n'", check=False
    )
    if not files.strip():
        raise CheckError(
            "trading-executor: its order journal under /var/lib/trading-executor/journal is empty"
        )
    return [
        f"CLOB book: {len(quotes)} levels from the executor: {quotes[:6]}",
        f"executor journal files: {' '.join(files.split()[:6])}",
        *[f"executor log: {ln}" for ln in order_lines[-3:]],
    ]


def _external(side: str, price: float) -> bool:
    prices = (
        [round(0.5 - i * 0.01, 2) for i in (1, 2, 3)]
        if side == "bids"
        else [round(0.5 + i * 0.01, 2) for i in (1, 2, 3)]
    )
    return round(price, 2) in prices


def _s3_objects(client: object, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=TB["bucket"], Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def check_collector_flush_and_s3() -> list[str]:
    """`systemctl stop data-collector`: flush, compact, upload; then every lake file is in S3 with
    its size, nothing is left pending, and the rows read back from S3 are the ones collected."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).parent))
    import hostservers

    from polymm.sim.s3 import ADMIN

    lines = []
    # Let some data arrive first (both feeds, both symbols).
    time.sleep(5)
    since = ssh("ams", "date -u '+%Y-%m-%d %H:%M:%S'").strip()
    t = time.monotonic()
    ssh("ams", "sudo systemctl stop data-collector", timeout=120)
    lines.append(f"systemctl stop data-collector took {time.monotonic() - t:.1f}s")
    log = ssh("ams", f"sudo journalctl -u data-collector --since '{since}' --no-pager -o cat")
    stopped = [ln for ln in log.splitlines() if "data-collector stopped:" in ln]
    if not stopped:
        raise CheckError(f"data-collector logged no clean stop; last lines: {log.splitlines()[-10:]}")
    lines.append(f"stop log: {stopped[-1]}")
    if "rows pending 0" not in stopped[-1] or "S3 pending 0 files" not in stopped[-1]:
        raise CheckError(f"data-collector stopped with data pending: {stopped[-1]}")
    local = ssh("ams", "sudo find /data/lake -type f -name '*.parquet' -printf '%P %s\\n'")
    local_files = dict(ln.rsplit(" ", 1) for ln in local.splitlines() if ln.strip())
    left = ssh("ams", "sudo find /data/journal -type f -size +0 -printf '%P\\n'", check=False).split()
    s3 = hostservers.s3_client(TB["endpoints"]["host_s3_url"], ADMIN)
    objects = _s3_objects(s3)
    lines.append(
        f"lake: {len(local_files)} Parquet files on ams, {len(objects)} objects in s3://{TB['bucket']}, "
        f"{len(left)} journal files left"
    )
    missing = [f"{k} ({size} B)" for k, size in local_files.items() if objects.get(k) != int(size)]
    if missing:
        raise CheckError(f"lake files not in S3 (or another size) after the stop: {missing[:5]}")
    if left:
        raise CheckError(f"journal files left after a clean stop: {left[:5]}")
    counts: dict[str, int] = {}
    symbols: set[str] = set()
    for key in objects:
        if not key.endswith(".parquet"):
            continue
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=TB["bucket"], Key=key)["Body"].read()))
        table_name = "/".join(key.split("/")[:2])
        counts[table_name] = counts.get(table_name, 0) + table.num_rows
        if key.startswith("binance/bbo/") and "symbol" in table.column_names:
            symbols.update(table.column("symbol").to_pylist())
    lines.append(f"rows read back from S3: {counts}; binance symbols {sorted(symbols)}")
    for table_name in ("binance/bbo", "polymarket/l2"):
        if counts.get(table_name, 0) == 0:
            raise CheckError(f"no {table_name} rows in S3 (got {counts})")
    ssh("ams", "sudo systemctl start data-collector", timeout=120)
    wait_for(
        lambda: show("ams", "data-collector", "ActiveState")["ActiveState"] == "active",
        90,
        "data-collector active again",
    )
    return lines


# -- late checks -----------------------------------------------------------------------------------


def check_watchdog() -> list[str]:
    """SIGSTOP every service at once: each stops pinging, systemd's watchdog aborts and restarts it."""
    before = {(h, s): int(show(h, s, "NRestarts")["NRestarts"]) for h, s in all_units()}
    t0 = time.monotonic()
    for host, svc in all_units():
        ssh(host, f"sudo systemctl kill -s STOP {svc}")

    def back(unit: tuple[str, str]) -> str:
        host, svc = unit

        def ok() -> bool:
            p = show(host, svc, "NRestarts", "ActiveState", "SubState")
            return int(p["NRestarts"]) > before[unit] and (p["ActiveState"], p["SubState"]) == (
                "active",
                "running",
            )

        wait_for(ok, 180, f"{host}/{svc} restarted by the watchdog", every=3)
        p = show(host, svc, "NRestarts")
        reason = ssh(
            host,
            f"sudo journalctl -u {svc} --no-pager -o cat -n 200 | grep -m1 -i 'watchdog timeout'",
            check=False,
        ).strip()
        return (
            f"{host}/{svc}: NRestarts {before[unit]} -> {p['NRestarts']}, active after "
            f"{time.monotonic() - t0:.0f}s ({reason or 'no watchdog line'})"
        )

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(back, all_units()))


def check_fail2ban() -> list[str]:
    fra, ams = TB["hosts"]["fra"]["link_address"], TB["hosts"]["ams"]["link_address"]
    status = ssh("fra", "sudo fail2ban-client status sshd")
    lines = [f"fra fail2ban sshd jail: {' '.join(status.split())[:160]}"]
    attempt = (
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o ConnectTimeout=5 -o PreferredAuthentications=publickey nosuchuser@{fra} true"
    )
    try:
        for _ in range(8):
            ssh("ams", attempt, check=False, timeout=30)

        def banned() -> bool:
            return ams in ssh("fra", "sudo fail2ban-client status sshd")

        wait_for(banned, 60, f"fail2ban on fra banning {ams} after failed logins")
        lines.append(f"fra: {ams} banned after failed logins")
        if _rc("ams", f"nc -z -w 5 {fra} 22") == 0:
            raise CheckError(f"{ams} is banned but still reaches fra:22")
        lines.append(f"fra:22 unreachable from {ams} while banned")
    finally:
        ssh("fra", f"sudo fail2ban-client set sshd unbanip {ams}", check=False)
    return lines


EARLY = [
    check_units,
    check_security,
    check_secret_files,
    check_ufw,
    check_relay_links,
    check_no_secret_in_journals,
    check_executor_quotes,
    check_collector_flush_and_s3,
]
LATE = [check_watchdog, check_fail2ban]


def run(checks: list[Callable[[], list[str]]]) -> int:
    failures = []
    for check in checks:
        t = time.monotonic()
        try:
            lines = check()
            print(f"PASS {check.__name__} ({time.monotonic() - t:.1f}s)", flush=True)
            for line in lines:
                print(f"     {line}", flush=True)
        except (CheckError, subprocess.TimeoutExpired, OSError) as exc:
            failures.append(check.__name__)
            print(f"FAIL {check.__name__} ({time.monotonic() - t:.1f}s): {exc}", flush=True)
    print(
        f"guest checks: {len(checks) - len(failures)} passed, {len(failures)} failed"
        + (f": {', '.join(failures)}" if failures else ""),
        flush=True,
    )
    return 1 if failures else 0


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    TB.update(testbed())
    if what == "restarts":
        raise SystemExit(run([restarts]))
    checks = {"early": EARLY, "late": LATE, "all": EARLY + LATE}.get(what)
    if checks is None:
        raise SystemExit(f"usage: {sys.argv[0]} restarts|early|late|all")
    raise SystemExit(run(checks))


if __name__ == "__main__":
    main()
