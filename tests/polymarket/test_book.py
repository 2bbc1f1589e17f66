"""OrderBook: snapshots, level updates, deletes, ordering, invalidation, and a randomized check."""

from __future__ import annotations

import random
import time

from polymm.polymarket.book import OrderBook
from polymm.polymarket.messages import Level


def make_book() -> OrderBook:
    book = OrderBook("tok", tick_size=0.01)
    # REST/WS order: bids ascending, asks descending (best last); the book must not care.
    book.apply_snapshot(
        [Level(0.48, 30), Level(0.49, 20), Level(0.50, 15)],
        [Level(0.54, 10), Level(0.53, 60), Level(0.52, 25)],
        timestamp=1000,
        hash="h0",
        market="0xm",
    )
    return book


def test_snapshot_orders_levels_best_first() -> None:
    book = make_book()
    assert book.valid and book.market == "0xm" and book.hash == "h0" and book.timestamp == 1000
    assert book.best_bid() == (0.50, 15)
    assert book.best_ask() == (0.52, 25)
    assert book.top_bids(10) == [(0.50, 15), (0.49, 20), (0.48, 30)]
    assert book.top_asks(2) == [(0.52, 25), (0.53, 60)]
    assert book.top(1) == ([(0.50, 15)], [(0.52, 25)])
    assert book.mid() == 0.51
    assert not book.crossed()


def test_snapshot_accepts_tuples_skips_zero_sizes_and_replaces_everything() -> None:
    book = make_book()
    book.apply_snapshot([(0.30, 5), (0.31, 0)], [(0.70, 7)], timestamp=2000, hash="h1")
    assert book.top_bids() == [(0.30, 5)]
    assert book.top_asks() == [(0.70, 7)]
    assert (book.timestamp, book.hash, book.snapshots) == (2000, "h1", 2)


def test_level_updates_set_new_totals_and_zero_deletes() -> None:
    book = make_book()
    assert book.apply_level("BUY", 0.51, 100, 1001, "h1")  # new best bid
    assert book.best_bid() == (0.51, 100)
    assert book.apply_level("BUY", 0.49, 5, 1002)  # size is the new total, not a delta
    assert book.top_bids(3) == [(0.51, 100), (0.50, 15), (0.49, 5)]
    assert book.apply_level("BUY", 0.51, 0, 1003)  # delete the best: next best takes over
    assert book.best_bid() == (0.50, 15)
    assert book.apply_level("SELL", 0.52, 0, 1004)
    assert book.apply_level("SELL", 0.515, 3, 1005, "h5")
    assert book.best_ask() == (0.515, 3)
    assert book.top_asks() == [(0.515, 3), (0.53, 60), (0.54, 10)]
    assert (book.timestamp, book.hash, book.deltas) == (1005, "h5", 5)
    assert book.apply_level("SELL", 0.99, 0, 1006)  # deleting an absent level is harmless
    assert len(book.asks) == 3


def test_unknown_side_is_refused() -> None:
    book = make_book()
    assert not book.apply_level("HOLD", 0.5, 1, 1001)
    assert book.timestamp == 1000 and book.deltas == 0


def test_invalid_book_refuses_updates_until_next_snapshot() -> None:
    book = make_book()
    book.invalidate()
    assert not book.valid
    assert book.best_bid() is None and book.best_ask() is None and book.top_bids() == []
    assert not book.apply_level("BUY", 0.5, 10, 1001)  # a delta across a gap must not build a book
    assert book.bids == {}
    book.apply_snapshot([(0.4, 1)], [(0.6, 1)], 1002)
    assert book.valid and book.best_bid() == (0.4, 1)
    assert book.apply_level("BUY", 0.45, 2, 1003)
    assert book.best_bid() == (0.45, 2)


def test_fresh_book_is_invalid() -> None:
    book = OrderBook("tok")
    assert not book.valid
    assert not book.apply_level("SELL", 0.5, 1, 1)
    assert book.mid() is None


def test_randomized_against_a_sorted_reference() -> None:
    rng = random.Random(3)
    book = OrderBook("tok")
    ref: dict[str, dict[float, float]] = {"BUY": {}, "SELL": {}}
    book.apply_snapshot([], [], 0)
    for i in range(20000):
        side = rng.choice(("BUY", "SELL"))
        price = round(rng.randrange(1, 100) / 100, 2)
        size = 0.0 if rng.random() < 0.4 else float(rng.randrange(1, 500))
        book.apply_level(side, price, size, i)
        if size:
            ref[side][price] = size
        else:
            ref[side].pop(price, None)
        if i % 97 == 0:
            bids = sorted(ref["BUY"].items(), reverse=True)
            asks = sorted(ref["SELL"].items())
            assert book.top_bids(5) == bids[:5]
            assert book.top_asks(5) == asks[:5]
            assert book.best_bid() == (bids[0] if bids else None)
            assert book.best_ask() == (asks[0] if asks else None)


def test_updates_are_fast() -> None:
    """Budget check, generous for slow CI: 200k updates plus a best read each, well under a second."""
    book = OrderBook("tok")
    book.apply_snapshot([(i / 100, 10) for i in range(1, 50)], [(i / 100, 10) for i in range(51, 100)], 0)
    prices = [round(random.Random(1).randrange(1, 50) / 100, 2) for _ in range(1000)]
    start = time.perf_counter()
    for i in range(200):
        for p in prices:
            book.apply_level("BUY", p, float(i % 7), i)
            book.best_bid()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5, f"200k updates took {elapsed:.2f}s"
