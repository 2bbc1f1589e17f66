"""A local HTTP server that answers like Polymarket's Gamma API, for tests and the demo.

Serves `/markets` (filters: active, closed, slug, tag_id, clob_token_ids, condition_ids, limit,
offset), `/markets/slug/{slug}`, `/events` (slug filter) and `/events/slug/{slug}` with Gamma's
field names; `clobTokenIds`, `outcomes` and `outcomePrices` are JSON-encoded strings, as on the
real API. Built on asyncio streams (HTTP/1.1 with keep-alive) so it shares the test's event loop
without blocking it. Tests mutate `markets` through add/close helpers and can switch on 500s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("polymm.sim.gamma")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_ids_for(slug: str) -> tuple[str, str]:
    """Deterministic 77-digit-style decimal token ids, like the real ones."""
    digest = hashlib.sha256(slug.encode()).digest()
    a = int.from_bytes(digest[:16], "big")
    b = int.from_bytes(digest[16:], "big")
    return str(a), str(b)


class GammaSim:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.markets: dict[str, dict[str, Any]] = {}  # slug -> market in Gamma's shape
        self.fail_status: int | None = None  # e.g. 500: every request answers with it
        self.delay_s = 0.0  # added before each answer, to provoke client timeouts
        self.garbage = False  # answer 200 with a body that is not JSON
        self.requests: list[str] = []  # path?query of every request
        self._server: asyncio.Server | None = None
        self._next_id = 500000

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def __aenter__(self) -> GammaSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- market list -------------------------------------------------------------------------------

    def add_market(
        self,
        slug: str,
        *,
        tokens: tuple[str, str] | None = None,
        outcomes: tuple[str, str] = ("Yes", "No"),
        end_ts: float | None = None,
        start_ts: float | None = None,
        tag_ids: Iterable[str] = (),
        accepting_orders: bool = True,
        tick: float = 0.01,
    ) -> dict[str, Any]:
        self._next_id += 1
        tokens = tokens or token_ids_for(slug)
        end_ts = end_ts if end_ts is not None else time.time() + 86400
        market = {
            "id": str(self._next_id),
            "question": f"Question for {slug}?",
            "conditionId": "0x" + hashlib.sha256(("cond" + slug).encode()).hexdigest(),
            "slug": slug,
            "startDate": iso(start_ts if start_ts is not None else time.time() - 3600),
            "endDate": iso(end_ts),
            "active": True,
            "closed": False,
            "archived": False,
            "acceptingOrders": accepting_orders,
            "enableOrderBook": True,
            "negRisk": False,
            "orderPriceMinTickSize": tick,
            "orderMinSize": 5,
            "outcomes": json.dumps(list(outcomes)),
            "outcomePrices": json.dumps(["0.5", "0.5"]),
            "clobTokenIds": json.dumps(list(tokens)),
            "volume": "0",
            "_tags": [str(t) for t in tag_ids],  # kept out of answers; Gamma filters by tag server-side
        }
        self.markets[slug] = market
        return market

    def add_window_markets(
        self, prefix: str, window_s: int, count: int, start: int | None = None
    ) -> list[str]:
        """Up/down markets `{prefix}-{T}` for `count` windows from the current one (T = window start)."""
        first = start if start is not None else int(time.time()) // window_s * window_s
        slugs = []
        for i in range(count):
            t0 = first + i * window_s
            slug = f"{prefix}-{t0}"
            self.add_market(slug, outcomes=("Up", "Down"), start_ts=t0, end_ts=t0 + window_s)
            slugs.append(slug)
        return slugs

    def close_market(self, slug: str) -> None:
        market = self.markets[slug]
        market["closed"] = True
        market["active"] = True  # Gamma keeps active=true on closed markets; closed is what counts
        market["acceptingOrders"] = False

    def remove_market(self, slug: str) -> None:
        self.markets.pop(slug, None)

    @staticmethod
    def tokens_of(market: dict[str, Any]) -> list[str]:
        return list(json.loads(market["clobTokenIds"]))

    # -- HTTP --------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split()
                headers: dict[str, str] = {}
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                if len(parts) < 2:
                    await self._respond(writer, 400, {"error": "bad request line"})
                    break
                await self._route(writer, parts[0], parts[1])
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(
        self, writer: asyncio.StreamWriter, status: int, body: Any, raw: bytes | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()

    async def _route(self, writer: asyncio.StreamWriter, method: str, target: str) -> None:
        self.requests.append(target)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            await self._respond(writer, self.fail_status, {"error": "simulated failure"})
            return
        if self.garbage:
            await self._respond(writer, 200, None, raw=b"<html>upstream error</html>")
            return
        if method != "GET":
            await self._respond(writer, 405, {"error": "method not allowed"})
            return
        split = urlsplit(target)
        path = split.path.rstrip("/")
        query = parse_qs(split.query)
        if path == "/markets":
            await self._respond(writer, 200, self._list_markets(query))
        elif path.startswith("/markets/slug/"):
            market = self.markets.get(unquote(path.removeprefix("/markets/slug/")))
            if market is None:
                await self._respond(writer, 404, {"type": "not found error", "error": "id not found"})
            else:
                await self._respond(writer, 200, _public(market))
        elif path == "/events":
            slugs = query.get("slug", [])
            events = [self._event(m) for s, m in self.markets.items() if not slugs or s in slugs]
            await self._respond(writer, 200, events)
        elif path.startswith("/events/slug/"):
            market = self.markets.get(unquote(path.removeprefix("/events/slug/")))
            if market is None:
                await self._respond(writer, 404, {"type": "not found error", "error": "id not found"})
            else:
                await self._respond(writer, 200, self._event(market))
        else:
            await self._respond(writer, 404, {"error": "not found"})

    def _list_markets(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        def flag(name: str) -> bool | None:
            values = query.get(name)
            return None if not values else values[0].lower() == "true"

        active, closed = flag("active"), flag("closed")
        if closed is None:
            closed = False  # Gamma's /markets assumes closed=false when not given
        slugs = set(query.get("slug", []))
        tags = set(query.get("tag_id", []))
        token_ids = set(query.get("clob_token_ids", []))
        conditions = set(query.get("condition_ids", []))
        out = []
        for slug, market in self.markets.items():
            if active is not None and market["active"] != active:
                continue
            if market["closed"] != closed:
                continue
            if slugs and slug not in slugs:
                continue
            if tags and not tags & set(market["_tags"]):
                continue
            if token_ids and not token_ids & set(self.tokens_of(market)):
                continue
            if conditions and market["conditionId"] not in conditions:
                continue
            out.append(_public(market))
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["500"])[0])
        return out[offset : offset + limit]

    @staticmethod
    def _event(market: dict[str, Any]) -> dict[str, Any]:
        return {"id": str(int(market["id"]) + 1000000), "slug": market["slug"], "title": market["question"],
                "active": market["active"], "closed": market["closed"], "endDate": market["endDate"],
                "markets": [_public(market)]}  # fmt: skip


def _public(market: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in market.items() if not k.startswith("_")}


async def _main(args: argparse.Namespace) -> None:
    sim = GammaSim(args.host, args.port)
    for prefix in [p for p in args.window_prefixes.split(",") if p]:
        window = 900 if "-15m" in prefix else 300
        sim.add_window_markets(prefix, window, args.windows)
    for slug in [s for s in args.slugs.split(",") if s]:
        sim.add_market(slug)
    await sim.start()
    print(f"gamma sim listening on {sim.url} ({len(sim.markets)} markets)", flush=True)
    while True:  # keep the up/down windows rolling for long demos
        await asyncio.sleep(30)
        for prefix in [p for p in args.window_prefixes.split(",") if p]:
            window = 900 if "-15m" in prefix else 300
            now = int(time.time()) // window * window
            for i in range(args.windows):
                slug = f"{prefix}-{now + i * window}"
                if slug not in sim.markets:
                    sim.add_market(slug, outcomes=("Up", "Down"), start_ts=now + i * window,
                                   end_ts=now + (i + 1) * window)  # fmt: skip
            for slug, market in list(sim.markets.items()):
                if (
                    slug.startswith(prefix)
                    and not market["closed"]
                    and int(slug.rsplit("-", 1)[1]) + window < now
                ):
                    sim.close_market(slug)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--window-prefixes", default="btc-updown-5m,btc-updown-15m")
    parser.add_argument("--windows", type=int, default=3, help="current and next windows to list")
    parser.add_argument("--slugs", default="", help="extra plain market slugs")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
