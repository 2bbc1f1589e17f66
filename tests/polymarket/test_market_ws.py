"""MarketFeed end to end against PolymarketSim on loopback: no mocks."""

from __future__ import annotations

import asyncio
import json

from polymm.polymarket.market_ws import MarketFeed
from polymm.sim.polymarket_ws import PolymarketSim
from tests.conftest import eventually
from tests.polymarket.conftest import NO, YES, Recorder, running_feed


def valid(feed: MarketFeed, *tokens: str) -> bool:
    return all(feed.books[t].valid for t in tokens)


async def test_snapshot_then_deltas_reach_on_book(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES, NO], rec) as feed:
        await eventually(lambda: valid(feed, YES, NO), what="both snapshots")
        book = feed.books[YES]
        assert book.best_bid() == (0.50, 15) and book.best_ask() == (0.52, 25)
        first = rec.books_for(YES)[0]
        assert first["valid"] and first["bid"] == (0.50, 15) and first["hash"] == book.hash
        assert first["recv_ts"] > 0 and first["exch_ts"] > 1_600_000_000_000  # ms, not s

        # One batched frame changing both assets: one on_book per asset, in the same loop turn.
        n = len(rec.books)
        await sim.push({"event_type": "price_change", "market": "0xm", "timestamp": "1757908892999",
                        "price_changes": [
                            {"asset_id": YES, "price": "0.51", "size": "40", "side": "BUY", "hash": "hy",
                             "best_bid": "0.51", "best_ask": "0.52"},
                            {"asset_id": YES, "price": "0.52", "size": "0", "side": "SELL", "hash": "hy2",
                             "best_bid": "0.51", "best_ask": "0.53"},
                            {"asset_id": NO, "price": "0.47", "size": "0", "side": "BUY", "hash": "hn",
                             "best_bid": "0", "best_ask": "0.51"}]})  # fmt: skip
        await eventually(lambda: len(rec.books) == n + 2, what="two on_book calls")
        yes, no = rec.books[n], rec.books[n + 1]
        assert (yes["token"], yes["bid"], yes["ask"]) == (YES, (0.51, 40), (0.53, 60))
        assert (yes["exch_ts"], yes["hash"]) == (1757908892999, "hy2")
        assert (no["token"], no["bid"], no["ask"]) == (NO, None, (0.51, 10))
        assert feed.stats.by_type["price_change"] == 1


async def test_trades_reach_on_trade(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES], rec) as feed:
        await eventually(lambda: valid(feed, YES))
        await sim.push(
            [
                {
                    "event_type": "last_trade_price",
                    "asset_id": YES,
                    "market": "0xm",
                    "price": "0.52",
                    "size": "12.5",
                    "side": "BUY",
                    "fee_rate_bps": "1.1",  # a float would come back as 1.1000000000000001
                    "timestamp": "1750428146322",
                    "transaction_hash": "0xabc123",
                }
            ]
        )
        await eventually(lambda: rec.trades, what="a trade")
        token, price, size, side, exch_ts, recv_ts, fee, tx_hash = rec.trades[0]
        assert (token, price, size, side, exch_ts) == (YES, 0.52, 12.5, "BUY", 1750428146322)
        assert (fee, tx_hash) == ("1.1", "0xabc123")  # the fee exactly as sent, the trade's unique id
        assert recv_ts > exch_ts * 1_000_000  # recv_ts is ns, taken after the exchange stamped it
        assert feed.stats.trades == 1


async def test_text_ping_gets_pong(sim: PolymarketSim) -> None:
    async with running_feed(sim.url, [YES], ping_interval_s=0.1) as feed:
        await eventually(lambda: sim.pings >= 3 and feed.stats.pongs >= 3, what="3 PING/PONG rounds")
        assert feed.connected and feed.last_message_age() < 1.0
        assert feed.stats.malformed == 0  # PONG is not JSON and must not count as an error


async def test_drop_reconnects_resubscribes_and_resyncs(sim: PolymarketSim) -> None:
    seen_at_disconnect: list[bool] = []

    class GapRecorder(Recorder):
        def on_event(self, kind: str, detail: dict) -> None:
            super().on_event(kind, detail)
            if kind == "disconnected":
                seen_at_disconnect.append(feed.books[YES].valid)

    rec = GapRecorder()
    async with running_feed(sim.url, [YES, NO], rec) as feed:
        await eventually(lambda: valid(feed, YES, NO))
        snapshots = feed.books[YES].snapshots
        sim.freeze()  # so the snapshot after reconnect waits until we have looked at the gap
        await sim.drop_all()
        await eventually(lambda: rec.kinds("disconnected"), what="disconnected event")
        assert seen_at_disconnect == [False]  # invalidated before the embedder hears of the gap
        assert set(rec.kinds("book_invalidated")[0]["assets_ids"]) == {YES, NO}
        assert "closed by peer (1001" in rec.kinds("disconnected")[0]["reason"]
        await eventually(lambda: len(rec.kinds("connected")) == 2, what="reconnect")
        assert not feed.books[YES].valid and feed.books[YES].best_bid() is None
        reconnect = rec.kinds("connected")[1]
        assert reconnect["reconnect"] and reconnect["down_ms"] > 0 and "1001" in reconnect["reason"]
        assert rec.kinds("resubscribed")[0]["assets_ids"] == sorted([YES, NO])
        assert sim.first_frames == 2 and sim.invalid_ops == 0  # a new connection gets a new first frame
        sim.unfreeze()
        # New data on the resubscribed connection: the sim's subscribe snapshot was swallowed by the
        # freeze, so resend the book as the server would after a trade.
        await sim.set_book(YES, [(0.40, 1)], [(0.60, 2)])
        await eventually(lambda: feed.books[YES].valid, what="fresh snapshot")
        assert feed.books[YES].best_bid() == (0.40, 1)
        assert feed.books[YES].snapshots == snapshots + 1
        assert feed.stats.reconnects == 1
        # Every on_book call ever made saw a valid book.
        assert all(b["valid"] for b in rec.books)


async def test_reconnect_snapshot_arrives_by_itself(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES], rec) as feed:
        await eventually(lambda: valid(feed, YES))
        await sim.drop_all()
        await eventually(lambda: len(rec.kinds("connected")) == 2 and feed.books[YES].valid, what="resync")
        assert feed.books[YES].best_ask() == (0.52, 25)
        kinds = [k for k, _ in rec.events]
        assert kinds.index("disconnected") < kinds.index("resubscribed")


async def test_silent_freeze_forces_reconnect(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES], rec, ping_interval_s=0.1, silence_timeout_s=0.6) as feed:
        await eventually(lambda: valid(feed, YES))
        sim.freeze()  # PONGs continue, data stops
        await eventually(lambda: rec.kinds("disconnected"), timeout_s=3, what="silence close")
        assert "silent freeze" in rec.kinds("disconnected")[0]["reason"]
        assert feed.stats.silence_closes >= 1 and sim.pings >= 3
        assert not feed.books[YES].valid
        sim.unfreeze()
        await eventually(lambda: feed.books[YES].valid, timeout_s=3, what="valid after unfreeze")
        assert sim.connects >= 2


async def test_dynamic_subscribe_and_unsubscribe_on_a_live_connection(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES], rec) as feed:
        await eventually(lambda: valid(feed, YES))
        assert feed.subscribe([NO, YES]) == {NO}
        await eventually(lambda: NO in feed.books and feed.books[NO].valid, what="NO snapshot")
        assert feed.books[NO].best_bid() == (0.47, 10)
        assert (sim.first_frames, sim.subscribe_ops, sim.invalid_ops, sim.connects) == (1, 1, 0, 1)
        assert sim.requests[1] == {"operation": "subscribe", "assets_ids": [NO]}

        assert feed.unsubscribe([YES]) == {YES}
        assert YES not in feed.books and feed.tokens == {NO}
        await eventually(lambda: sim.unsubscribe_ops == 1)
        assert sim.requests[2] == {"operation": "unsubscribe", "assets_ids": [YES]}
        assert sim.subscribed() == [{NO}]
        assert rec.kinds("unsubscribed")[0]["assets_ids"] == [YES]
        assert sim.first_frames == 1 and sim.invalid_ops == 0


async def test_resubscribe_after_quick_unsubscribe_gets_a_new_snapshot(sim: PolymarketSim) -> None:
    async with running_feed(sim.url, [YES, NO]) as feed:
        await eventually(lambda: valid(feed, YES, NO))
        feed.unsubscribe([NO])
        feed.subscribe([NO])  # same loop turn: nothing went on the wire in between
        await eventually(lambda: NO in feed.books and feed.books[NO].valid, what="NO valid again")
        assert sim.invalid_ops == 0


async def test_first_frame_twice_is_an_invalid_operation(sim: PolymarketSim) -> None:
    """The sim enforces the real rule, so a client that resent it would be caught."""
    from websockets.asyncio.client import connect

    async with connect(sim.url) as ws:
        await ws.send(json.dumps({"type": "market", "assets_ids": [YES], "custom_feature_enabled": True}))
        books = json.loads(await ws.recv())
        assert books[0]["event_type"] == "book" and books[0]["asset_id"] == YES
        assert [lv["price"] for lv in books[0]["bids"]] == ["0.48", "0.49", "0.5"]  # best last, as live
        await ws.send(json.dumps({"type": "market", "assets_ids": [NO]}))
        assert await ws.recv() == "INVALID OPERATION"
        await ws.send("PING")
        assert await ws.recv() == "PONG"
    assert sim.invalid_ops == 1


async def test_sharding_spreads_tokens_over_connections(sim: PolymarketSim) -> None:
    tokens = [f"{i:077d}" for i in range(1, 8)]
    async with running_feed(sim.url, tokens, max_per_connection=3) as feed:
        await eventually(lambda: valid(feed, *tokens), what="all snapshots")
        assert sim.connections == 3 and feed.connections == 3
        subs = sim.subscribed()
        assert sorted(len(s) for s in subs) == [1, 3, 3]
        assert set().union(*subs) == set(tokens)
        assert sorted(len(s) for s in feed.shard_tokens()) == [1, 3, 3]

        extra = f"{99:077d}"
        feed.subscribe([extra])  # fills the shard that has room, on its live connection
        await eventually(lambda: extra in feed.books and feed.books[extra].valid)
        assert sim.connections == 3 and sim.first_frames == 3

        feed.unsubscribe(tokens[:3])  # empties the first shard: its connection closes
        await eventually(lambda: sim.connections == 2, what="empty shard closed")
        assert feed.connected


async def test_malformed_and_unknown_frames_do_not_break_the_feed(sim: PolymarketSim) -> None:
    async with running_feed(sim.url, [YES]) as feed:
        await eventually(lambda: valid(feed, YES))
        await sim.send_raw('{"event_type": "book", "asset_id": ')
        await sim.send_raw('[{"event_type": "surprise"}]')
        await sim.change(YES, [("BUY", 0.505, 7)])
        await eventually(lambda: feed.books[YES].best_bid() == (0.505, 7), what="update after junk")
        assert feed.stats.malformed == 1 and feed.stats.unknown == 1
        assert feed.connected and feed.stats.reconnects == 0


async def test_tick_size_change_invalidates_until_next_snapshot(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES, NO], rec) as feed:
        await eventually(lambda: valid(feed, YES, NO))
        await sim.push({"event_type": "tick_size_change", "asset_id": YES, "market": "0xm",
                        "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": "1000"})  # fmt: skip
        await eventually(lambda: rec.kinds("tick_size_change"), what="tick event")
        assert rec.kinds("tick_size_change")[0]["new_tick_size"] == 0.001
        assert rec.kinds("book_invalidated")[0] == {"assets_ids": [YES], "reason": "tick_size_change"}
        assert feed.books[YES].tick_size == 0.001 and feed.books[NO].valid
        # The feed re-requests the book with a subscribe operation; the sim answers with a snapshot.
        await eventually(lambda: feed.books[YES].valid, what="snapshot after tick change")
        assert sim.subscribe_ops == 1 and sim.invalid_ops == 0
        assert feed.books[YES].tick_size == 0.001


async def test_market_resolved_is_reported(sim: PolymarketSim) -> None:
    rec = Recorder()
    async with running_feed(sim.url, [YES, NO], rec) as feed:
        await eventually(lambda: valid(feed, YES, NO))
        await sim.push(
            {
                "event_type": "market_resolved",
                "id": "1",
                "market": "0xm",
                "assets_ids": [YES, NO],
                "winning_asset_id": YES,
                "winning_outcome": "Yes",
                "timestamp": "1766790415550",
            }
        )
        await eventually(lambda: rec.kinds("market_resolved"))
        detail = rec.kinds("market_resolved")[0]
        assert detail["winning_asset_id"] == YES and detail["assets_ids"] == [YES, NO]


async def test_callback_errors_are_contained(sim: PolymarketSim) -> None:
    calls = []

    def bad_on_book(*args: object) -> None:
        calls.append(args)
        raise RuntimeError("embedder bug")

    async with running_feed(sim.url, [YES, NO]) as feed:
        feed._on_book = bad_on_book
        await eventually(lambda: valid(feed, YES, NO) and len(calls) >= 2)
        await sim.change(YES, [("SELL", 0.515, 1)])
        await eventually(lambda: feed.books[YES].best_ask() == (0.515, 1))
        assert feed.stats.callback_errors >= 3 and feed.connected


async def test_random_walk_books_match_the_server() -> None:
    """Many random deltas, trades and post-trade snapshots: the client's books equal the server's."""
    tokens = [YES, NO, f"{3:077d}"]
    rec = Recorder()
    async with PolymarketSim(rate_hz=200, seed=5) as sim, running_feed(sim.url, tokens, rec) as feed:
        await eventually(lambda: feed.stats.by_type.get("price_change", 0) >= 300, what="300 price changes")
        sim.freeze()
        await asyncio.sleep(0.2)  # let frames in flight land
        for token in tokens:
            book, server = feed.books[token], sim.tokens[token]
            assert book.valid and not book.crossed()
            assert book.top_bids(50) == server.levels("BUY")
            assert book.top_asks(50) == server.levels("SELL")
        assert feed.stats.trades > 0 and feed.stats.by_type["book"] > len(tokens)
        assert feed.stats.malformed == 0 and feed.stats.ignored == 0
        assert all(b["valid"] for b in rec.books)


async def test_unreachable_server_retries_without_raising() -> None:
    rec = Recorder()
    sim = PolymarketSim(rate_hz=0)
    await sim.start()
    url = sim.url
    await sim.stop()  # the port is now closed
    feed = MarketFeed([YES], url=url, on_event=rec.on_event, backoff_initial_s=0.01, backoff_cap_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(0.4)
    assert not feed.connected and not task.done()
    assert rec.kinds("connected") == []
    stop.set()
    await asyncio.wait_for(task, 3)
