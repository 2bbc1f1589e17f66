"""A local DigitalOcean API (v2) server, for the provisioning playbooks' tests.

Speaks the JSON of https://docs.digitalocean.com/reference/api/ for what `playbooks/provision.yml`,
`destroy.yml` and `recover.yml` use: `/v2/account`, `/v2/account/keys`, `/v2/droplets` (paging with
`links.pages`, `tag_name` and `name` filters, actions), `/v2/actions`, `/v2/tags` and their resources,
`/v2/firewalls` (rules, droplets, tags), `/v2/monitoring/alerts`, `/v2/reserved_ips` and the older
`/v2/floating_ips` spelling of the same objects. Every request needs `Authorization: Bearer <token>`
(401 `{"id": "unauthorized", ...}` otherwise); a token may be limited to scopes ("droplet:read", ...),
as DigitalOcean's custom-scoped tokens are (403 `{"id": "forbidden", ...}`). Creates answer 202 or
201 as the real API does, errors carry DigitalOcean's `{"id", "message", "request_id"}` body.

Droplets come up "new" and are "active" from the next read on (`boot_delay_s` to slow that down);
actions are "in-progress" when posted and "completed" from the next read on. Addresses are from the
documentation ranges, unless the sim is given `machines`: a function that boots a real machine for
each created droplet and returns its address (standalone: `--machine-command`, e.g. the VM test
bed's `testbed.py droplet-up {name}`). The droplet then stays "new" until that machine is up, and
the API hands out the address the machine really has.

Runs on the caller's loop (`await sim.start()`), in a daemon thread (`sim.start_in_thread()`) for
synchronous tests that run `ansible-playbook`, or standalone: `python -m polymm.sim.digitalocean`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import itertools
import json
import logging
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polymm.sim.clob_http import HttpServer, Request, Response

log = logging.getLogger("polymm.sim.digitalocean")

# (droplet name, region) -> the public IPv4 of the machine booted for it; may take minutes.
MachineHook = Callable[[str, str], str]

REGIONS = {
    "ams3": "Amsterdam 3",
    "fra1": "Frankfurt 1",
    "lon1": "London 1",
    "nyc3": "New York 3",
    "sfo3": "San Francisco 3",
}
# slug -> (vcpus, memory MiB, disk GB, transfer TB, price_monthly USD), as DigitalOcean lists them.
SIZES = {
    "s-1vcpu-512mb-10gb": (1, 512, 10, 0.5, 4.0),
    "s-1vcpu-1gb": (1, 1024, 25, 1.0, 6.0),
    "s-1vcpu-2gb": (1, 2048, 50, 2.0, 12.0),
    "s-2vcpu-2gb": (2, 2048, 60, 3.0, 18.0),
    "s-2vcpu-4gb": (2, 4096, 80, 4.0, 24.0),
    "s-4vcpu-8gb": (4, 8192, 160, 5.0, 48.0),
}
IMAGES = {
    "debian-12-x64": (151001, "12 x64", "Debian"),
    "debian-13-x64": (151002, "13 x64", "Debian"),
    "ubuntu-24-04-x64": (151003, "24.04 (LTS) x64", "Ubuntu"),
    "docker-20-04": (151004, "Docker on Ubuntu 20.04", "Ubuntu"),
}
ALERT_TYPES = {
    "v1/insights/droplet/load_1",
    "v1/insights/droplet/load_5",
    "v1/insights/droplet/load_15",
    "v1/insights/droplet/memory_utilization_percent",
    "v1/insights/droplet/disk_utilization_percent",
    "v1/insights/droplet/cpu",
    "v1/insights/droplet/disk_read",
    "v1/insights/droplet/disk_write",
    "v1/insights/droplet/public_outbound_bandwidth",
    "v1/insights/droplet/public_inbound_bandwidth",
    "v1/insights/droplet/private_outbound_bandwidth",
    "v1/insights/droplet/private_inbound_bandwidth",
}
ALERT_WINDOWS = {"5m", "10m", "30m", "1h"}
DROPLET_ACTIONS = {"power_on", "power_off", "shutdown", "reboot", "power_cycle", "rebuild", "rename"}

_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,253}[a-zA-Z0-9])?$")
_TAG = re.compile(r"^[a-zA-Z0-9_:\-]{1,255}$")
_FIREWALL_NAME = re.compile(r"^[a-zA-Z0-9.\-]{1,255}$")
_PORTS = re.compile(r"^(\d{1,5})(-(\d{1,5}))?$")

# Which scope a request needs: (method, first path segment after /v2) -> resource; verbs from the method.
_SCOPE_RESOURCE = {
    "account": "account",
    "droplets": "droplet",
    "actions": "actions",
    "tags": "tag",
    "firewalls": "firewall",
    "monitoring": "monitoring",
    "reserved_ips": "reserved_ip",
    "floating_ips": "reserved_ip",
}
_SCOPE_VERB = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def md5_fingerprint(public_key: str) -> str | None:
    """DigitalOcean's key fingerprint: MD5 of the base64 body, colon-separated (None if malformed)."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class ApiError(Exception):
    """Turns into DigitalOcean's error body `{"id", "message", "request_id"}` with `status`."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "unprocessable_entity", message)


@dataclass
class Droplet:
    id: int
    name: str
    region: str
    size: str
    image: str
    tags: list[str]
    ssh_key_ids: list[int]
    public_ip: str
    private_ip: str
    monitoring: bool
    created: float
    ready_at: float
    status: str = "new"  # "new" in its create answer and until ready_at, then "active"
    request_no: int = 0  # the request that created it
    vpc_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Action:
    id: int
    type: str
    resource_id: int | str
    resource_type: str
    region: str
    started: float
    done_at: float  # "completed" once read after this
    apply: Any = None  # what the action does to its resource when it completes
    completed: float | None = None
    request_no: int = 0  # the request that made it: its own answer still says in-progress


class DigitalOceanSim:
    """State plus the HTTP front. Tests may read and change the dicts directly (from any thread
    after `start_in_thread()`; the loop only touches them inside request handlers, under `lock`)."""

    def __init__(self, tokens: dict[str, set[str] | None], host: str = "127.0.0.1", port: int = 0) -> None:
        # token -> None (full access) or the set of scopes it was created with ("droplet:read", ...)
        self.tokens = tokens
        self.host = host
        self.boot_delay_s = 0.0
        self.action_delay_s = 0.0
        self.machines: MachineHook | None = None  # boots a real machine per created droplet
        self.ssh_keys: dict[int, dict[str, Any]] = {}
        self.droplets: dict[int, Droplet] = {}
        self.actions: dict[int, Action] = {}
        self.tags: dict[str, float] = {}  # name -> created
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.reserved_ips: dict[str, dict[str, Any]] = {}  # ip -> {"region", "droplet_id", "project_id"}
        self.requests: list[tuple[str, str, int]] = []  # method, path?query, status
        self.lock = threading.RLock()
        self._ids = itertools.count(310_000_001)
        self._action_ids = itertools.count(2_000_000_001)
        self._request_no = 0
        self._next_host = dict.fromkeys(REGIONS, 10)
        self._reserved_host = itertools.count(10)
        self._http = HttpServer(self._handle, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.project_id = str(uuid.uuid4())

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        """What the collection's `baseurl` and the playbooks' `do_api_base_url` take."""
        return f"http://{self.host}:{self.port}/v2"

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    async def __aenter__(self) -> DigitalOceanSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> DigitalOceanSim:
        """Serve from a daemon thread's own loop, for synchronous callers (tests running ansible)."""
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="digitalocean-sim", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("DigitalOcean sim did not start")
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- test hooks ---------------------------------------------------------------------------------

    def droplet_by_name(self, name: str) -> Droplet | None:
        with self.lock:
            return next((d for d in self.droplets.values() if d.name == name), None)

    def kill(self, name: str) -> None:
        """The host dies: the droplet stays listed but is off (what a dead hypervisor looks like)."""
        with self.lock:
            droplet = self.droplet_by_name(name)
            if droplet is None:
                raise KeyError(name)
            droplet.status = "off"

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _handle(self, req: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            with self.lock:
                self._request_no += 1
                self._settle()
                status, body = self._route(req)
        except ApiError as exc:
            status, body = exc.status, {"id": exc.error_id, "message": exc.message, "request_id": request_id}
        target = req.path + ("?" + "&".join(f"{k}={v}" for k, v in req.query.items()) if req.query else "")
        self.requests.append((req.method, target, status))
        headers = {
            "ratelimit-limit": "5000",
            "ratelimit-remaining": "4999",
            "ratelimit-reset": str(int(time.time()) + 60),
            "x-request-id": request_id,
        }
        data = b"" if status == 204 or body is None else json.dumps(body).encode()
        return Response(status, data, headers)

    def _authorize(self, req: Request, resource: str) -> None:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token or token not in self.tokens:
            raise ApiError(401, "unauthorized", "Unable to authenticate you")
        scopes = self.tokens[token]
        if scopes is None:
            return
        needed = f"{resource}:{_SCOPE_VERB.get(req.method, 'read')}"
        if needed not in scopes and f"{resource}:*" not in scopes:
            raise ApiError(403, "forbidden", "You are not authorized to perform this operation")

    def _route(self, req: Request) -> tuple[int, Any]:
        parts = [p for p in req.path.split("/") if p]
        if not parts or parts[0] != "v2" or len(parts) < 2:
            raise _not_found()
        parts = parts[1:]
        resource = _SCOPE_RESOURCE.get(parts[0])
        if resource is None:
            raise _not_found()
        if parts[0] == "account" and len(parts) > 1 and parts[1] == "keys":
            resource = "ssh_key"
        self._authorize(req, resource)
        body = self._json(req)
        method = req.method
        head, rest = parts[0], parts[1:]
        if head == "account":
            if not rest and method == "GET":
                return 200, {"account": self._account()}
            if rest and rest[0] == "keys":
                return self._keys(method, rest[1:], body, req)
        elif head == "droplets":
            return self._droplets_route(method, rest, body, req)
        elif head == "actions":
            if len(rest) == 1 and method == "GET":
                return 200, {"action": self._action_json(self._action(rest[0]))}
            if not rest and method == "GET":
                items = [self._action_json(a) for a in self.actions.values()]
                return 200, self._page(req, "actions", items)
        elif head == "tags":
            return self._tags_route(method, rest, body, req)
        elif head == "firewalls":
            return self._firewalls_route(method, rest, body, req)
        elif head == "monitoring" and rest[:1] == ["alerts"]:
            return self._alerts_route(method, rest[1:], body, req)
        elif head in ("reserved_ips", "floating_ips"):
            return self._reserved_route(head, method, rest, body, req)
        raise _not_found()

    @staticmethod
    def _json(req: Request) -> dict[str, Any]:
        if not req.body:
            return {}
        try:
            body = json.loads(req.body)
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"unable to parse request body: {exc}") from exc
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "request body must be a JSON object")
        return body

    def _page(self, req: Request, key: str, items: list[Any]) -> dict[str, Any]:
        """DigitalOcean's paging: `page`/`per_page` (default 20, max 200), `links.pages`, `meta.total`."""
        try:
            page = max(1, int(req.query.get("page", "1")))
            per_page = min(200, max(1, int(req.query.get("per_page", "20"))))
        except ValueError as exc:
            raise ApiError(400, "bad_request", "page and per_page must be integers") from exc
        last = max(1, -(-len(items) // per_page))
        base = f"http://{self.host}:{self.port}{req.path}"
        extra = "".join(f"&{k}={v}" for k, v in req.query.items() if k not in ("page", "per_page"))

        def link(n: int) -> str:
            return f"{base}?page={n}&per_page={per_page}{extra}"

        pages: dict[str, str] = {}
        if page > 1:
            pages["first"] = link(1)
            pages["prev"] = link(page - 1)
        if page < last:
            pages["next"] = link(page + 1)
            pages["last"] = link(last)
        chunk = items[(page - 1) * per_page : page * per_page]
        return {key: chunk, "links": {"pages": pages} if pages else {}, "meta": {"total": len(items)}}

    # -- account and keys ---------------------------------------------------------------------------

    @staticmethod
    def _account() -> dict[str, Any]:
        return {
            "droplet_limit": 25,
            "floating_ip_limit": 5,
            "reserved_ip_limit": 5,
            "volume_limit": 100,
            "email": "operator@example.com",
            "name": "polymm operator",
            "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
            "email_verified": True,
            "status": "active",
            "status_message": " ",
            "team": {"uuid": "5df3e3004a17e242b7c20ca6c9fc25b701a47ece", "name": "polymm"},
        }

    def _key(self, ref: str) -> dict[str, Any]:
        for key in self.ssh_keys.values():
            if str(key["id"]) == ref or key["fingerprint"] == ref:
                return key
        raise _not_found()

    def _keys(self, method: str, rest: list[str], body: dict[str, Any], req: Request) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, self._page(req, "ssh_keys", list(self.ssh_keys.values()))
            if method == "POST":
                name, public_key = body.get("name"), body.get("public_key")
                if not name or not isinstance(name, str):
                    raise _unprocessable("Name can't be blank")
                fingerprint = md5_fingerprint(public_key) if isinstance(public_key, str) else None
                if fingerprint is None:
                    raise _unprocessable("Key invalid, key should be of the form 'type key [comment]'")
                if any(k["fingerprint"] == fingerprint for k in self.ssh_keys.values()):
                    raise _unprocessable("SSH Key is already in use on your account")
                key = {"id": next(self._ids), "fingerprint": fingerprint, "public_key": public_key.strip(),
                       "name": name}  # fmt: skip
                self.ssh_keys[key["id"]] = key
                return 201, {"ssh_key": key}
        elif len(rest) == 1:
            key = self._key(rest[0])
            if method == "GET":
                return 200, {"ssh_key": key}
            if method == "PUT":
                if "name" in body:
                    key["name"] = str(body["name"])
                return 200, {"ssh_key": key}
            if method == "DELETE":
                del self.ssh_keys[key["id"]]
                return 204, None
        raise ApiError(405, "method_not_allowed", "method not allowed")

    # -- droplets -----------------------------------------------------------------------------------

    def _droplet(self, ref: str) -> Droplet:
        try:
            droplet = self.droplets.get(int(ref))
        except ValueError:
            droplet = None
        if droplet is None:
            raise _not_found()
        return droplet

    def _droplet_json(self, d: Droplet) -> dict[str, Any]:
        vcpus, memory, disk, transfer, price = SIZES[d.size]
        image_id, image_name, distribution = IMAGES[d.image]
        networks: dict[str, list[dict[str, str]]] = {"v4": [], "v6": []}
        if d.status != "new":  # addresses appear once the droplet is up, as on DigitalOcean
            networks["v4"] = [
                {"ip_address": d.private_ip, "netmask": "255.255.240.0", "gateway": "",
                 "type": "private"},
                {"ip_address": d.public_ip, "netmask": "255.255.255.0",
                 "gateway": d.public_ip.rsplit(".", 1)[0] + ".1", "type": "public"},
            ]  # fmt: skip
        features = ["droplet_agent", "private_networking"] + (["monitoring"] if d.monitoring else [])
        return {
            "id": d.id,
            "name": d.name,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "locked": d.status == "new",
            "status": d.status,
            "kernel": None,
            "created_at": iso(d.created),
            "features": features,
            "backup_ids": [],
            "next_backup_window": None,
            "snapshot_ids": [],
            "image": {"id": image_id, "name": image_name, "distribution": distribution, "slug": d.image,
                      "public": True, "regions": sorted(REGIONS), "type": "base", "min_disk_size": 15,
                      "size_gigabytes": 2.36, "description": "", "tags": [], "status": "available",
                      "error_message": "", "created_at": "2025-06-10T12:00:00Z"},
            "volume_ids": [],
            "size": {"slug": d.size, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": transfer,
                     "price_monthly": price, "price_hourly": round(price / 672, 5),
                     "regions": sorted(REGIONS), "available": True, "description": "Basic"},
            "size_slug": d.size,
            "networks": networks,
            "region": self._region_json(d.region),
            "tags": list(d.tags),
            "vpc_uuid": d.vpc_uuid,
        }  # fmt: skip

    @staticmethod
    def _region_json(slug: str) -> dict[str, Any]:
        features = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]
        return {"name": REGIONS[slug], "slug": slug, "sizes": sorted(SIZES), "available": True,
                "features": features}  # fmt: skip

    def _allocate_public(self, region: str) -> str:
        host = self._next_host[region]
        self._next_host[region] += 1
        net = {"fra1": "203.0.113", "ams3": "198.51.100"}.get(region, "192.0.2")
        return f"{net}.{host}"

    def _private_for(self, region: str, public: str) -> str:
        second = {"fra1": 114, "ams3": 110}.get(region, 120)
        return f"10.{second}.0.{public.rsplit('.', 1)[1]}"

    def _create_droplet(self, body: dict[str, Any], name: str) -> Droplet:
        if not isinstance(name, str) or not _HOSTNAME.match(name):
            raise _unprocessable("Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)")
        region, size, image = body.get("region"), body.get("size"), body.get("image")
        if region not in REGIONS:
            raise _unprocessable("You specified an invalid region for Droplet creation.")
        if size not in SIZES:
            raise _unprocessable("You specified an invalid size for Droplet creation.")
        if image not in IMAGES:
            raise _unprocessable("You specified an invalid image for Droplet creation.")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
            raise _unprocessable("tags must be names of letters, numbers, colons, dashes and underscores")
        key_ids: list[int] = []
        for ref in body.get("ssh_keys") or []:
            try:
                key_ids.append(self._key(str(ref))["id"])
            except ApiError as exc:
                raise _unprocessable(f"ssh key {ref} could not be found") from exc
        now = time.time()
        public = "" if self.machines else self._allocate_public(region)
        private = self._private_for(region, public) if public else ""
        droplet = Droplet(
            id=next(self._ids), name=name, region=region, size=size, image=image, tags=list(tags),
            ssh_key_ids=key_ids, public_ip=public, private_ip=private,
            monitoring=bool(body.get("monitoring")), created=now,
            ready_at=float("inf") if self.machines else time.monotonic() + self.boot_delay_s,
            request_no=self._request_no,
        )  # fmt: skip
        self.droplets[droplet.id] = droplet
        if self.machines is not None:
            threading.Thread(target=self._boot_machine, args=(droplet, self.machines), daemon=True).start()
        for tag in tags:  # DigitalOcean creates tags named at droplet creation
            self.tags.setdefault(tag, now)
        return droplet

    def _boot_machine(self, droplet: Droplet, machines: MachineHook) -> None:
        """Off the loop: the droplet is "new" (no addresses) until its machine answers."""
        try:
            public = str(ipaddress.IPv4Address(machines(droplet.name, droplet.region).strip()))
        except Exception as exc:  # any failure leaves the droplet booting, named in the log
            log.error("machine for droplet %s (%d) did not come up: %s", droplet.name, droplet.id, exc)
            return
        with self.lock:
            droplet.public_ip = public
            droplet.private_ip = self._private_for(droplet.region, public)
            droplet.ready_at = time.monotonic()
        log.info("droplet %s (%d) is up at %s", droplet.name, droplet.id, public)

    def _droplets_route(
        self, method: str, rest: list[str], body: dict[str, Any], req: Request
    ) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                items = list(self.droplets.values())
                if "tag_name" in req.query:
                    items = [d for d in items if req.query["tag_name"] in d.tags]
                if "name" in req.query:
                    items = [d for d in items if d.name == req.query["name"]]
                return 200, self._page(req, "droplets", [self._droplet_json(d) for d in items])
            if method == "POST":
                if "names" in body:
                    names = body["names"]
                    if not isinstance(names, list) or not 1 <= len(names) <= 10:
                        raise _unprocessable("names must be a list of 1 to 10 names")
                    created = [self._create_droplet(body, n) for n in names]
                    acts = [self._new_action("create", d.id, "droplet", d.region) for d in created]
                    links = [self._action_link(a, "create") for a in acts]
                    return 202, {"droplets": [self._droplet_json(d) for d in created],
                                 "links": {"actions": links}}  # fmt: skip
                droplet = self._create_droplet(body, body.get("name"))  # type: ignore[arg-type]
                act = self._new_action("create", droplet.id, "droplet", droplet.region)
                return 202, {"droplet": self._droplet_json(droplet),
                             "links": {"actions": [self._action_link(act, "create")]}}  # fmt: skip
            if method == "DELETE" and "tag_name" in req.query:
                for d in [d for d in self.droplets.values() if req.query["tag_name"] in d.tags]:
                    self._delete_droplet(d)
                return 204, None
            if method == "DELETE":
                raise _unprocessable("tag_name is required to delete droplets in bulk")
        elif len(rest) == 1:
            droplet = self._droplet(rest[0])
            if method == "GET":
                return 200, {"droplet": self._droplet_json(droplet)}
            if method == "DELETE":
                self._delete_droplet(droplet)
                return 204, None
        elif rest[1] == "actions":
            droplet = self._droplet(rest[0])
            if len(rest) == 2 and method == "POST":
                return 201, {"action": self._action_json(self._droplet_action(droplet, body))}
            if len(rest) == 2 and method == "GET":
                items = [self._action_json(a) for a in self.actions.values() if a.resource_id == droplet.id]
                return 200, self._page(req, "actions", items)
            if len(rest) == 3 and method == "GET":
                action = self._action(rest[2])
                if action.resource_id != droplet.id:
                    raise _not_found()
                return 200, {"action": self._action_json(action)}
        raise ApiError(405, "method_not_allowed", "method not allowed")

    def _delete_droplet(self, droplet: Droplet) -> None:
        del self.droplets[droplet.id]
        for fw in self.firewalls.values():
            if droplet.id in fw["droplet_ids"]:
                fw["droplet_ids"].remove(droplet.id)
        for rip in self.reserved_ips.values():
            if rip["droplet_id"] == droplet.id:
                rip["droplet_id"] = None

    def _droplet_action(self, droplet: Droplet, body: dict[str, Any]) -> Action:
        kind = body.get("type")
        if kind not in DROPLET_ACTIONS:
            raise _unprocessable(f"Unknown action type {kind!r}")
        if droplet.status == "new":
            raise _unprocessable("Droplet is currently locked by another event, try again later")

        def apply() -> None:
            if kind in ("power_on", "reboot", "power_cycle", "rebuild"):
                droplet.status = "active"
            elif kind in ("power_off", "shutdown"):
                droplet.status = "off"
            if kind == "rebuild":
                droplet.image = str(body.get("image", droplet.image))
            if kind == "rename":
                droplet.name = str(body["name"])

        if kind == "rename" and not (isinstance(body.get("name"), str) and _HOSTNAME.match(body["name"])):
            raise _unprocessable("Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)")
        if kind == "rebuild" and body.get("image", droplet.image) not in IMAGES:
            raise _unprocessable("You specified an invalid image for rebuild.")
        return self._new_action(kind, droplet.id, "droplet", droplet.region, apply)

    # -- actions ------------------------------------------------------------------------------------

    def _new_action(
        self, kind: str, resource_id: int | str, resource_type: str, region: str, apply: Any = None
    ) -> Action:
        now = time.time()
        due = time.monotonic() + self.action_delay_s
        action = Action(next(self._action_ids), kind, resource_id, resource_type, region, now, due, apply,
                        request_no=self._request_no)  # fmt: skip
        self.actions[action.id] = action
        return action

    def _settle(self) -> None:
        """Boot droplets and complete actions that are due, as DigitalOcean does in the background:
        from the next request on (and after the delays), whether or not anyone polls them."""
        now = time.monotonic()
        for d in self.droplets.values():
            if d.status == "new" and d.request_no < self._request_no and now >= d.ready_at:
                d.status = "active"
        for a in self.actions.values():
            if a.completed is None and a.request_no < self._request_no and now >= a.done_at:
                if a.apply is not None and (a.resource_type != "droplet" or a.resource_id in self.droplets):
                    a.apply()
                a.completed = time.time()

    def _action(self, ref: str) -> Action:
        try:
            action = self.actions.get(int(ref))
        except ValueError:
            action = None
        if action is None:
            raise _not_found()
        return action

    def _action_json(self, a: Action) -> dict[str, Any]:
        return {
            "id": a.id,
            "status": "completed" if a.completed is not None else "in-progress",
            "type": a.type,
            "started_at": iso(a.started),
            "completed_at": iso(a.completed) if a.completed is not None else None,
            "resource_id": a.resource_id if a.resource_type == "droplet" else 0,
            "resource_type": a.resource_type,
            "region": self._region_json(a.region),
            "region_slug": a.region,
        }

    def _action_link(self, a: Action, rel: str) -> dict[str, Any]:
        return {"id": a.id, "rel": rel, "href": f"http://{self.host}:{self.port}/v2/actions/{a.id}"}

    # -- tags ---------------------------------------------------------------------------------------

    def _tag_json(self, name: str) -> dict[str, Any]:
        tagged = [d for d in self.droplets.values() if name in d.tags]
        last = f"/v2/droplets/{tagged[-1].id}" if tagged else ""
        empty = {"count": 0, "last_tagged_uri": ""}
        return {"name": name, "resources": {
            "count": len(tagged), "last_tagged_uri": last,
            "droplets": {"count": len(tagged), "last_tagged_uri": last},
            "images": dict(empty), "volumes": dict(empty), "volume_snapshots": dict(empty),
            "databases": dict(empty)}}  # fmt: skip

    def _tags_route(
        self, method: str, rest: list[str], body: dict[str, Any], req: Request
    ) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, self._page(req, "tags", [self._tag_json(t) for t in self.tags])
            if method == "POST":
                name = body.get("name")
                if not isinstance(name, str) or not _TAG.match(name):
                    raise _unprocessable("tag name must be letters, numbers, colons, dashes and underscores")
                self.tags.setdefault(name, time.time())
                return 201, {"tag": self._tag_json(name)}
        else:
            name = rest[0]
            if name not in self.tags:
                raise _not_found()
            if len(rest) == 1 and method == "GET":
                return 200, {"tag": self._tag_json(name)}
            if len(rest) == 1 and method == "DELETE":
                del self.tags[name]
                for d in self.droplets.values():
                    if name in d.tags:
                        d.tags.remove(name)
                return 204, None
            if rest[1:] == ["resources"] and method in ("POST", "DELETE"):
                resources = body.get("resources")
                if not isinstance(resources, list) or not resources:
                    raise _unprocessable("resources must be a non-empty list")
                for res in resources:
                    if not isinstance(res, dict) or res.get("resource_type") != "droplet":
                        raise _unprocessable("only droplet resources are supported here")
                    droplet = self.droplets.get(int(res.get("resource_id", 0) or 0))
                    if droplet is None:
                        raise _unprocessable(f"droplet {res.get('resource_id')} could not be found")
                    if method == "POST" and name not in droplet.tags:
                        droplet.tags.append(name)
                    elif method == "DELETE" and name in droplet.tags:
                        droplet.tags.remove(name)
                return 204, None
        raise ApiError(405, "method_not_allowed", "method not allowed")

    # -- firewalls ----------------------------------------------------------------------------------

    def _rules(self, rules: Any, side: str) -> list[dict[str, Any]]:
        """Validate rules and store them as DigitalOcean answers them (ports "0" for all / icmp)."""
        if rules is None:
            return []
        if not isinstance(rules, list):
            raise _unprocessable(f"{side} rules must be a list")
        where = "sources" if side == "inbound" else "destinations"
        out = []
        for rule in rules:
            if not isinstance(rule, dict):
                raise _unprocessable(f"{side} rule must be an object")
            protocol = rule.get("protocol")
            if protocol not in ("tcp", "udp", "icmp"):
                raise _unprocessable(f"{side} rule protocol must be one of tcp, udp, icmp")
            ports = str(rule.get("ports", "0" if protocol == "icmp" else ""))
            if ports == "all" or protocol == "icmp":
                ports = "0"
            match = _PORTS.match(ports)
            if ports != "0" and (
                not match
                or not 1 <= int(match.group(1)) <= 65535
                or (match.group(3) and not int(match.group(1)) <= int(match.group(3)) <= 65535)
            ):
                raise _unprocessable(f"{side} rule ports {ports!r} is not a port, range or 'all'")
            target = rule.get(where)
            if not isinstance(target, dict):
                raise _unprocessable(f"{side} rule needs {where}")
            stored: dict[str, Any] = {}
            for addr in target.get("addresses") or []:
                try:
                    ipaddress.ip_network(addr, strict=False)
                except ValueError as exc:
                    raise _unprocessable(f"{addr!r} is not a valid IP address or CIDR") from exc
            for key in ("addresses", "tags", "load_balancer_uids", "kubernetes_ids"):
                if target.get(key):
                    stored[key] = list(target[key])
            if target.get("droplet_ids"):
                stored["droplet_ids"] = [int(i) for i in target["droplet_ids"]]
            if not stored:
                raise _unprocessable(f"{side} rule {where} must name at least one address, tag or droplet")
            out.append({"protocol": protocol, "ports": ports, where: stored})
        return out

    def _firewall_body(self, body: dict[str, Any], fw_id: str, created: str) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not _FIREWALL_NAME.match(name):
            raise _unprocessable("name must contain only letters, numbers, periods and dashes")
        inbound = self._rules(body.get("inbound_rules"), "inbound")
        outbound = self._rules(body.get("outbound_rules"), "outbound")
        if not inbound and not outbound:
            raise _unprocessable("At least one inbound or outbound rule is required")
        droplet_ids = [int(i) for i in body.get("droplet_ids") or []]
        for did in droplet_ids:
            if did not in self.droplets:
                raise _unprocessable(f"droplet {did} could not be found")
        tags = list(body.get("tags") or [])
        for tag in tags:
            if tag not in self.tags:
                raise _unprocessable(f"tag {tag!r} could not be found")
        return {"id": fw_id, "name": name, "status": "succeeded", "inbound_rules": inbound,
                "outbound_rules": outbound, "created_at": created, "droplet_ids": droplet_ids,
                "tags": tags, "pending_changes": []}  # fmt: skip

    def _firewall(self, ref: str) -> dict[str, Any]:
        fw = self.firewalls.get(ref)
        if fw is None:
            raise _not_found()
        return fw

    def _firewalls_route(
        self, method: str, rest: list[str], body: dict[str, Any], req: Request
    ) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, self._page(req, "firewalls", list(self.firewalls.values()))
            if method == "POST":
                fw = self._firewall_body(body, str(uuid.uuid4()), iso(time.time()))
                if any(f["name"] == fw["name"] for f in self.firewalls.values()):
                    raise ApiError(409, "conflict", f"a firewall named {fw['name']!r} already exists")
                self.firewalls[fw["id"]] = fw
                return 202, {"firewall": {**fw, "status": "waiting"}}
        elif len(rest) == 1:
            fw = self._firewall(rest[0])
            if method == "GET":
                return 200, {"firewall": fw}
            if method == "PUT":
                updated = self._firewall_body(body, fw["id"], fw["created_at"])
                self.firewalls[fw["id"]] = updated
                return 200, {"firewall": updated}
            if method == "DELETE":
                del self.firewalls[fw["id"]]
                return 204, None
        elif len(rest) == 2 and method in ("POST", "DELETE"):
            fw = self._firewall(rest[0])
            if rest[1] == "droplets":
                ids = [int(i) for i in body.get("droplet_ids") or []]
                if not ids or any(i not in self.droplets for i in ids):
                    raise _unprocessable("droplet_ids must name existing droplets")
                for i in ids:
                    if method == "POST" and i not in fw["droplet_ids"]:
                        fw["droplet_ids"].append(i)
                    elif method == "DELETE" and i in fw["droplet_ids"]:
                        fw["droplet_ids"].remove(i)
                return 204, None
            if rest[1] == "tags":
                tags = list(body.get("tags") or [])
                if not tags or any(t not in self.tags for t in tags):
                    raise _unprocessable("tags must name existing tags")
                for t in tags:
                    if method == "POST" and t not in fw["tags"]:
                        fw["tags"].append(t)
                    elif method == "DELETE" and t in fw["tags"]:
                        fw["tags"].remove(t)
                return 204, None
        raise ApiError(405, "method_not_allowed", "method not allowed")

    def droplets_behind(self, firewall_name: str) -> list[str]:
        """Names of the droplets a firewall applies to (by id or by tag), as DigitalOcean resolves it."""
        with self.lock:
            fw = next((f for f in self.firewalls.values() if f["name"] == firewall_name), None)
            if fw is None:
                return []
            return sorted(d.name for d in self.droplets.values()
                          if d.id in fw["droplet_ids"] or set(d.tags) & set(fw["tags"]))  # fmt: skip

    # -- monitoring alerts --------------------------------------------------------------------------

    def _alert_body(self, body: dict[str, Any], alert_uuid: str) -> dict[str, Any]:
        missing = [k for k in ("alerts", "compare", "description", "enabled", "entities", "tags", "type",
                               "value", "window") if k not in body]  # fmt: skip
        if missing:
            raise ApiError(400, "bad_request", f"missing required fields: {', '.join(missing)}")
        if body["type"] not in ALERT_TYPES:
            raise _unprocessable(f"invalid alert type {body['type']!r}")
        if body["compare"] not in ("GreaterThan", "LessThan"):
            raise _unprocessable("compare must be GreaterThan or LessThan")
        if body["window"] not in ALERT_WINDOWS:
            raise _unprocessable("window must be one of 5m, 10m, 30m, 1h")
        alerts = body["alerts"]
        if not isinstance(alerts, dict) or not (alerts.get("email") or alerts.get("slack")):
            raise _unprocessable("alerts must name at least one email address or slack channel")
        for slack in alerts.get("slack") or []:
            if not isinstance(slack, dict) or not slack.get("url") or not slack.get("channel"):
                raise _unprocessable("each slack alert needs channel and url")
        entities = [str(e) for e in body["entities"] or []]
        for e in entities:
            if not e.isdigit() or int(e) not in self.droplets:
                raise _unprocessable(f"entity {e} is not a droplet of this account")
        try:
            value = float(body["value"])
        except (TypeError, ValueError) as exc:
            raise _unprocessable("value must be a number") from exc
        return {"uuid": alert_uuid, "alerts": {"email": list(alerts.get("email") or []),
                                               "slack": list(alerts.get("slack") or [])},
                "compare": body["compare"], "description": str(body["description"]),
                "enabled": bool(body["enabled"]), "entities": entities,
                "tags": list(body["tags"] or []), "type": body["type"], "value": value,
                "window": body["window"]}  # fmt: skip

    def _alerts_route(
        self, method: str, rest: list[str], body: dict[str, Any], req: Request
    ) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, self._page(req, "policies", list(self.alerts.values()))
            if method == "POST":
                policy = self._alert_body(body, str(uuid.uuid4()))
                self.alerts[policy["uuid"]] = policy
                return 200, {"policy": policy}
        elif len(rest) == 1:
            policy = self.alerts.get(rest[0])
            if policy is None:
                raise _not_found()
            if method == "GET":
                return 200, {"policy": policy}
            if method == "PUT":
                updated = self._alert_body(body, policy["uuid"])
                self.alerts[policy["uuid"]] = updated
                return 200, {"policy": updated}
            if method == "DELETE":
                del self.alerts[policy["uuid"]]
                return 204, None
        raise ApiError(405, "method_not_allowed", "method not allowed")

    # -- reserved IPs ---------------------------------------------------------------------------------

    def _rip_json(self, ip: str) -> dict[str, Any]:
        rip = self.reserved_ips[ip]
        droplet = self.droplets.get(rip["droplet_id"]) if rip["droplet_id"] else None
        return {"ip": ip, "droplet": self._droplet_json(droplet) if droplet else None,
                "region": self._region_json(rip["region"]), "locked": False,
                "project_id": self.project_id}  # fmt: skip

    def _reserved_route(
        self, head: str, method: str, rest: list[str], body: dict[str, Any], req: Request
    ) -> tuple[int, Any]:
        one, many = head[:-1], head  # reserved_ip / reserved_ips, floating_ip / floating_ips
        if not rest:
            if method == "GET":
                return 200, self._page(req, many, [self._rip_json(ip) for ip in self.reserved_ips])
            if method == "POST":
                if "droplet_id" in body:
                    droplet = self.droplets.get(int(body["droplet_id"]))
                    if droplet is None:
                        raise _unprocessable(f"droplet {body['droplet_id']} could not be found")
                    region, droplet_id = droplet.region, droplet.id
                elif body.get("region") in REGIONS:
                    region, droplet_id = body["region"], None
                else:
                    raise _unprocessable("droplet_id or a valid region is required")
                ip = f"192.0.2.{next(self._reserved_host)}"
                self.reserved_ips[ip] = {"region": region, "droplet_id": droplet_id}
                links: dict[str, Any] = {}
                if droplet_id is not None:
                    act = self._new_action("assign_ip", ip, one, region)
                    links = {"droplets": [{"id": droplet_id, "rel": "droplet",
                                           "href": f"{self.url}/droplets/{droplet_id}"}],
                             "actions": [self._action_link(act, "assign_ip")]}  # fmt: skip
                return 202, {one: self._rip_json(ip), "links": links}
        else:
            ip = rest[0]
            if ip not in self.reserved_ips:
                raise _not_found()
            rip = self.reserved_ips[ip]
            if len(rest) == 1 and method == "GET":
                return 200, {one: self._rip_json(ip)}
            if len(rest) == 1 and method == "DELETE":
                del self.reserved_ips[ip]
                return 204, None
            if rest[1:] == ["actions"] and method == "POST":
                kind = body.get("type")
                if kind == "assign":
                    droplet = self.droplets.get(int(body.get("droplet_id") or 0))
                    if droplet is None:
                        raise _unprocessable(f"droplet {body.get('droplet_id')} could not be found")
                    if droplet.region != rip["region"]:
                        raise _unprocessable("Reserved IP and Droplet must be in the same region")
                    for other in self.reserved_ips.values():  # one reserved IP per droplet
                        if other["droplet_id"] == droplet.id:
                            other["droplet_id"] = None
                    rip["droplet_id"] = droplet.id
                    act = self._new_action("assign_ip", ip, one, rip["region"])
                elif kind == "unassign":
                    rip["droplet_id"] = None
                    act = self._new_action("unassign_ip", ip, one, rip["region"])
                else:
                    raise _unprocessable("type must be assign or unassign")
                return 201, {"action": self._action_json(act)}
        raise ApiError(405, "method_not_allowed", "method not allowed")


def machine_command(template: str, timeout_s: float) -> MachineHook:
    """A MachineHook running `template` ({name}, {region} filled in); its last stdout line is the address."""

    def boot(name: str, region: str) -> str:
        argv = [part.format(name=name, region=region) for part in shlex.split(template)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{argv[0]} exited {out.returncode}: {tail[0]}")
        lines = out.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"{argv[0]} printed no address")
        return lines[-1]

    return boot


async def _main(args: argparse.Namespace) -> None:
    token = args.token or args.token_file.read_text().strip()
    sim = DigitalOceanSim({token: None}, args.host, args.port)
    if args.machine_command:
        sim.machines = machine_command(args.machine_command, args.machine_timeout)
    await sim.start()
    print(f"digitalocean sim listening on {sim.url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    tokens = parser.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--token", help="the bearer token the server accepts")
    tokens.add_argument("--token-file", type=Path, help="a file holding that token (kept out of `ps`)")
    parser.add_argument(
        "--machine-command",
        help="boots a machine per droplet ('{name}' and '{region}' filled in); its last line is the IPv4",
    )
    parser.add_argument("--machine-timeout", type=float, default=900.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
