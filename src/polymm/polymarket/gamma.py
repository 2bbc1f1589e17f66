"""Market discovery over Polymarket's Gamma API: which outcome tokens to subscribe to, now.

Every `interval_s` it asks Gamma for the markets of interest and reports token sets that were
added and removed since the last poll:
- window prefixes like `btc-updown-5m` (slug `{prefix}-{T}`, T = window-start unix seconds):
  the current and next `lookahead` windows, each via `/markets/slug/{slug}` (404 = not created yet);
- plain slugs and/or a tag id: `/markets?active=true&closed=false&slug=..&tag_id=..` (paged).

`clobTokenIds` and `outcomes` are JSON-encoded strings inside the JSON. A market whose
`closed` is true or whose `endDate` has passed is dropped, and so is one that a complete poll no
longer returns. A poll with errors (5xx, timeout, bad JSON) adds what it found but removes only
markets known to be over: a flaky Gamma must not unsubscribe live books. Errors are counted,
logged (rate-limited) and retried next interval; nothing is raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import httpx
import msgspec

from polymm.service.backoff import sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.polymarket.gamma")

DEFAULT_URL = "https://gamma-api.polymarket.com"
_WINDOW = re.compile(r"-(\d+)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
_PAGE = 100

OnTokens = Callable[[set[str], set[str]], None]  # added, removed


class GammaMarket(msgspec.Struct):
    condition_id: str
    slug: str
    token_ids: list[str]
    outcomes: list[str]
    end_ts: float | None  # unix seconds; None when Gamma gives no endDate
    active: bool
    closed: bool
    accepting_orders: bool
    tick_size: float | None = None
    neg_risk: bool = False

    def live(self, now: float) -> bool:
        return self.active and not self.closed and (self.end_ts is None or self.end_ts > now)


class GammaStats(msgspec.Struct):
    polls: int = 0
    requests: int = 0
    errors: int = 0
    not_found: int = 0
    bad_markets: int = 0
    last_ok_ns: int = 0
    last_error: str = ""


class GammaError(Exception):
    pass


def window_seconds(prefix: str) -> int | None:
    """`btc-updown-5m` -> 300; None when the prefix has no window suffix."""
    match = _WINDOW.search(prefix)
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def window_slugs(prefix: str, now: float, lookahead: int = 2) -> list[str]:
    """The current window's slug and the next `lookahead` ones."""
    window = window_seconds(prefix)
    if window is None:
        raise ValueError(f"{prefix!r} has no window suffix like -5m or -15m")
    start = int(now) // window * window
    return [f"{prefix}-{start + i * window}" for i in range(lookahead + 1)]


def parse_market(raw: dict[str, Any]) -> GammaMarket:
    """One Gamma market object -> GammaMarket; GammaError when essential fields are unusable."""
    try:
        token_ids = _json_list(raw.get("clobTokenIds"))
        outcomes = _json_list(raw.get("outcomes"))
    except (ValueError, TypeError) as exc:
        raise GammaError(f"market {raw.get('slug')!r}: bad clobTokenIds/outcomes ({exc})") from None
    condition_id = raw.get("conditionId") or ""
    if not isinstance(condition_id, str) or not token_ids:
        raise GammaError(f"market {raw.get('slug')!r}: no conditionId or no tokens")
    tick = raw.get("orderPriceMinTickSize")
    return GammaMarket(
        condition_id=condition_id,
        slug=str(raw.get("slug") or ""),
        token_ids=[str(t) for t in token_ids],
        outcomes=[str(o) for o in outcomes],
        end_ts=_parse_ts(raw.get("endDate")),
        active=bool(raw.get("active", True)),
        closed=bool(raw.get("closed", False)),
        accepting_orders=bool(raw.get("acceptingOrders", False)),
        tick_size=float(tick) if isinstance(tick, int | float | str) and tick != "" else None,
        neg_risk=bool(raw.get("negRisk", False)),
    )


def _json_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = json.loads(value)  # Gamma ships these lists as JSON text inside the JSON
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class GammaDiscovery:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        slug_prefixes: list[str] | None = None,
        tag_id: str | None = None,
        interval_s: float = 30.0,
        on_tokens: OnTokens | None = None,
        *,
        slugs: Iterable[str] = (),
        lookahead: int = 2,
        timeout_s: float = 10.0,
        max_pages: int = 20,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.window_prefixes: list[str] = []
        self.slugs: list[str] = list(slugs)
        # A prefix with a window suffix is expanded to per-window slugs; anything else is a plain slug.
        for prefix in slug_prefixes or []:
            (self.window_prefixes if window_seconds(prefix) else self.slugs).append(prefix)
        self.tag_id = tag_id
        self.interval_s = interval_s
        self.lookahead = lookahead
        self.timeout_s = timeout_s
        self.max_pages = max_pages
        self._on_tokens = on_tokens
        self._client = client
        self._own_client = client is None
        self.markets: dict[str, GammaMarket] = {}  # conditionId -> market, live ones only
        self.stats = GammaStats()
        self._throttle = Throttle(5.0)

    @property
    def tokens(self) -> set[str]:
        return {t for m in self.markets.values() for t in m.token_ids}

    def market_of(self, token_id: str) -> GammaMarket | None:
        for market in self.markets.values():
            if token_id in market.token_ids:
                return market
        return None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.poll_once()
                if await sleep_or_stop(stop, self.interval_s):
                    break
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def poll_once(self) -> tuple[set[str], set[str]]:
        """One discovery round; returns (added, removed) and reports them through on_tokens."""
        self.stats.polls += 1
        now = time.time()
        found: dict[str, GammaMarket] = {}
        complete = True
        for slug in (s for p in self.window_prefixes for s in window_slugs(p, now, self.lookahead)):
            ok, raw = await self._get(f"/markets/slug/{slug}", None, allow_404=True)
            complete &= ok
            if ok and isinstance(raw, dict):
                self._collect(raw, found)
        # Separate queries: Gamma ANDs its filters, and a slug list with a tag should mean "either".
        if self.slugs:
            complete &= await self._list(found, [("slug", s) for s in self.slugs])
        if self.tag_id:
            complete &= await self._list(found, [("tag_id", self.tag_id)])
        if complete:
            self.stats.last_ok_ns = time.time_ns()
        return self._update(found, complete, now)

    async def _list(self, found: dict[str, GammaMarket], filters: list[tuple[str, str]]) -> bool:
        params = [("active", "true"), ("closed", "false"), ("limit", str(_PAGE)), *filters]
        for page in range(self.max_pages):
            ok, raw = await self._get("/markets", [*params, ("offset", str(page * _PAGE))])
            if not ok:
                return False
            if not isinstance(raw, list):
                self._error("shape", f"/markets answered {type(raw).__name__}, not a list")
                return False
            for item in raw:
                if isinstance(item, dict):
                    self._collect(item, found)
            if len(raw) < _PAGE:
                return True
        self._throttle.warn(
            log, "pages", "gamma /markets: more than %d pages; list truncated", self.max_pages
        )
        return False  # truncated: do not treat missing markets as gone

    def _collect(self, raw: dict[str, Any], found: dict[str, GammaMarket]) -> None:
        try:
            market = parse_market(raw)
        except GammaError as exc:
            self.stats.bad_markets += 1
            self._throttle.warn(log, "market", "gamma: %s", exc)
            return
        found[market.condition_id] = market

    def _update(self, found: dict[str, GammaMarket], complete: bool, now: float) -> tuple[set[str], set[str]]:
        before = self.tokens
        live = {cid: m for cid, m in found.items() if m.live(now)}
        if complete:
            self.markets = live
        else:
            # Keep what we cannot see, minus what is known to be over (by this poll or by the clock).
            kept = {cid: m for cid, m in self.markets.items() if m.live(now) and cid not in found}
            self.markets = {**kept, **live}
        after = self.tokens
        added, removed = after - before, before - after
        if added or removed:
            log.info("gamma: +%d -%d tokens (%d markets live)", len(added), len(removed), len(self.markets))
            if self._on_tokens is not None:
                try:
                    self._on_tokens(added, removed)
                except Exception:
                    self._throttle.warn(log, "callback", "gamma on_tokens callback raised", exc_info=True)
        return added, removed

    async def _get(
        self, path: str, params: list[tuple[str, str]] | None, allow_404: bool = False
    ) -> tuple[bool, Any]:
        """(ok, decoded JSON). ok is True for a 404 when allowed (the body is then None)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers={"Accept": "application/json"})
        self.stats.requests += 1
        try:
            response = await self._client.get(self.base_url + path, params=params)
        except httpx.HTTPError as exc:
            self._error("http", f"GET {path}: {type(exc).__name__} {exc}")
            return False, None
        if response.status_code == 404 and allow_404:
            self.stats.not_found += 1
            return True, None
        if response.status_code != 200:
            self._error(f"status{response.status_code}", f"GET {path}: HTTP {response.status_code}")
            return False, None
        try:
            return True, response.json()
        except ValueError as exc:
            self._error("json", f"GET {path}: body is not JSON ({exc})")
            return False, None

    def _error(self, key: str, text: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = text
        self._throttle.warn(log, key, "gamma %s; retrying next interval", text)
