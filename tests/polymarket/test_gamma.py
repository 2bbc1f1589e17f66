"""GammaDiscovery against GammaSim over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest

from polymm.polymarket.gamma import GammaDiscovery, parse_market, window_seconds, window_slugs
from polymm.sim.gamma import GammaSim
from tests.conftest import eventually


class Changes(list[tuple[set[str], set[str]]]):
    def __call__(self, added: set[str], removed: set[str]) -> None:
        self.append((set(added), set(removed)))


def test_window_slugs() -> None:
    assert window_seconds("btc-updown-5m") == 300
    assert window_seconds("btc-updown-15m") == 900
    assert window_seconds("fed-decision-in-june") is None
    now = 1766790123.7
    assert window_slugs("btc-updown-5m", now, lookahead=2) == [
        "btc-updown-5m-1766790000",
        "btc-updown-5m-1766790300",
        "btc-updown-5m-1766790600",
    ]
    assert window_slugs("btc-updown-15m", now, lookahead=0) == ["btc-updown-15m-1766790000"]
    with pytest.raises(ValueError):
        window_slugs("no-window", now)


def test_parse_market_reads_json_encoded_strings() -> None:
    raw = {"conditionId": "0xc", "slug": "s", "clobTokenIds": '["111", "222"]', "outcomes": '["Up", "Down"]',
           "endDate": "2025-12-26T23:05:00Z", "active": True, "closed": False, "acceptingOrders": True,
           "orderPriceMinTickSize": 0.01, "negRisk": False}  # fmt: skip
    market = parse_market(raw)
    assert market.token_ids == ["111", "222"] and market.outcomes == ["Up", "Down"]
    assert market.end_ts == 1766790300.0
    assert market.accepting_orders and market.tick_size == 0.01
    assert market.live(1766790000.0) and not market.live(1766790300.0)


async def test_window_markets_appear_and_expire(gamma_sim: GammaSim) -> None:
    window = 300
    now = int(time.time()) // window * window
    slugs = gamma_sim.add_window_markets("btc-updown-5m", window, 3, start=now)
    gamma_sim.add_window_markets("btc-updown-5m", window, 1, start=now - window)  # ended: never reported
    changes = Changes()
    disc = GammaDiscovery(gamma_sim.url, ["btc-updown-5m"], None, 60, changes, lookahead=3)
    try:
        added, removed = await disc.poll_once()
        expected = {t for s in slugs for t in GammaSim.tokens_of(gamma_sim.markets[s])}
        assert added == expected and len(added) == 6 and removed == set()
        assert changes == [(expected, set())]
        assert disc.stats.not_found == 1  # the 4th window does not exist yet: not an error
        assert disc.stats.errors == 0
        assert [f"/markets/slug/{s}" for s in slugs] == gamma_sim.requests[:3]
        market = disc.market_of(GammaSim.tokens_of(gamma_sim.markets[slugs[0]])[0])
        assert market is not None and market.outcomes == ["Up", "Down"] and market.slug == slugs[0]

        # The current window closes: its tokens go; the others stay.
        gamma_sim.close_market(slugs[0])
        added, removed = await disc.poll_once()
        assert added == set() and removed == set(GammaSim.tokens_of(gamma_sim.markets[slugs[0]]))
        assert len(disc.tokens) == 4 and changes[-1] == (set(), removed)
    finally:
        await disc.aclose()


async def test_listing_by_slug_and_tag(gamma_sim: GammaSim) -> None:
    gamma_sim.add_market("will-it-rain", tokens=("11", "12"))
    gamma_sim.add_market("crypto-a", tokens=("21", "22"), tag_ids=["21"])
    gamma_sim.add_market("crypto-b", tokens=("31", "32"), tag_ids=["21"])
    gamma_sim.add_market("sports", tokens=("41", "42"), tag_ids=["1"])
    disc = GammaDiscovery(gamma_sim.url, ["will-it-rain"], "21", 60, None)
    try:
        added, _ = await disc.poll_once()
        assert added == {"11", "12", "21", "22", "31", "32"}
        assert any(
            "active=true" in r and "closed=false" in r and "tag_id=21" in r for r in gamma_sim.requests
        )
        gamma_sim.remove_market("crypto-b")  # gone from the list: a complete poll drops it
        _, removed = await disc.poll_once()
        assert removed == {"31", "32"}
    finally:
        await disc.aclose()


async def test_server_errors_are_logged_retried_and_keep_tokens(
    gamma_sim: GammaSim, caplog: pytest.LogCaptureFixture
) -> None:
    slugs = gamma_sim.add_window_markets("btc-updown-15m", 900, 2)
    changes = Changes()
    disc = GammaDiscovery(gamma_sim.url, ["btc-updown-15m"], None, 60, changes, lookahead=1)
    try:
        await disc.poll_once()
        tokens = set(disc.tokens)
        assert len(tokens) == 4
        gamma_sim.fail_status = 500
        gamma_sim.close_market(slugs[1])  # Gamma would say so, but it is failing: nothing may be removed
        with caplog.at_level(logging.WARNING, logger="polymm.polymarket.gamma"):
            for _ in range(3):
                assert await disc.poll_once() == (set(), set())
        assert disc.tokens == tokens
        assert disc.stats.errors == 6 and "HTTP 500" in disc.stats.last_error
        assert len([r for r in caplog.records if "HTTP 500" in r.getMessage()]) == 1  # rate-limited
        gamma_sim.fail_status = None
        _, removed = await disc.poll_once()  # retried: now the close is seen
        assert removed == set(GammaSim.tokens_of(gamma_sim.markets[slugs[1]]))
        assert len(changes) == 2
    finally:
        await disc.aclose()


async def test_garbage_and_timeouts_count_as_errors(gamma_sim: GammaSim) -> None:
    gamma_sim.add_market("m", tokens=("1", "2"))
    disc = GammaDiscovery(gamma_sim.url, ["m"], None, 60, None, timeout_s=0.2)
    try:
        gamma_sim.garbage = True
        assert await disc.poll_once() == (set(), set())
        assert "not JSON" in disc.stats.last_error
        gamma_sim.garbage = False
        gamma_sim.delay_s = 0.5
        assert await disc.poll_once() == (set(), set())
        assert "Timeout" in disc.stats.last_error
        gamma_sim.delay_s = 0
        assert (await disc.poll_once())[0] == {"1", "2"}
        assert disc.stats.errors == 2 and disc.stats.last_ok_ns > 0
    finally:
        await disc.aclose()


async def test_bad_market_entries_are_skipped(gamma_sim: GammaSim) -> None:
    gamma_sim.add_market("good", tokens=("1", "2"))
    bad = gamma_sim.add_market("bad", tokens=("3", "4"))
    bad["clobTokenIds"] = "[not json"
    disc = GammaDiscovery(gamma_sim.url, ["good", "bad"], None, 60, None)
    try:
        added, _ = await disc.poll_once()
        assert added == {"1", "2"} and disc.stats.bad_markets == 1
    finally:
        await disc.aclose()


async def test_ended_markets_drop_even_while_gamma_fails(gamma_sim: GammaSim) -> None:
    end = int(time.time()) + 2  # whole seconds, as Gamma gives them; at least 1 s ahead
    gamma_sim.add_market("soon", tokens=("1", "2"), end_ts=end)
    disc = GammaDiscovery(gamma_sim.url, ["soon"], None, 60, None)
    try:
        assert (await disc.poll_once())[0] == {"1", "2"}
        gamma_sim.fail_status = 503
        await asyncio.sleep(end - time.time() + 0.05)
        assert await disc.poll_once() == (set(), {"1", "2"})
    finally:
        await disc.aclose()


async def test_run_loop_reports_through_callback(gamma_sim: GammaSim) -> None:
    changes = Changes()
    disc = GammaDiscovery(gamma_sim.url, ["a-market"], None, 0.05, changes)
    stop = asyncio.Event()
    task = asyncio.create_task(disc.run(stop))
    try:
        await eventually(lambda: disc.stats.polls >= 2)
        assert changes == []
        gamma_sim.add_market("a-market", tokens=("7", "8"))
        await eventually(lambda: changes, what="tokens reported")
        assert changes[0] == ({"7", "8"}, set())
    finally:
        stop.set()
        await asyncio.wait_for(task, 3)


async def test_gamma_sim_speaks_gammas_shape(gamma_sim: GammaSim) -> None:
    gamma_sim.add_market("btc-updown-5m-1766790000", outcomes=("Up", "Down"))
    async with httpx.AsyncClient(base_url=gamma_sim.url) as client:
        market = (await client.get("/markets/slug/btc-updown-5m-1766790000")).json()
        assert isinstance(market["clobTokenIds"], str) and len(json.loads(market["clobTokenIds"])) == 2
        assert json.loads(market["outcomes"]) == ["Up", "Down"]
        events = (await client.get("/events", params={"slug": "btc-updown-5m-1766790000"})).json()
        assert events[0]["markets"][0]["conditionId"] == market["conditionId"]
        assert (await client.get("/markets/slug/nope")).status_code == 404
        assert (await client.get("/markets")).json()[0]["slug"] == "btc-updown-5m-1766790000"
        gamma_sim.close_market("btc-updown-5m-1766790000")
        assert (await client.get("/markets")).json() == []  # closed=false is the default
        assert len((await client.get("/markets", params={"closed": "true"})).json()) == 1
