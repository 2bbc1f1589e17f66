"""A restarted collector knows the last trade ids the crashed run stored, so the sender's replay
of trades it had journaled but not yet acknowledged is not written twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from polymm.collector.resume import last_trade_ids
from polymm.lake import Lake, binance_trade_row
from polymm.relay import wire
from polymm.relay.events import Trade
from tests.conftest import eventually
from tests.relay.conftest import make_receiver
from tests.relay.test_tls_and_bad_input import client_ctx, open_mtls

T0 = 1_768_780_800 * 1_000_000_000  # an hour boundary
MID_HOUR = T0 + 30 * 60 * 10**9


def trade(symbol: str, tid: int, is_agg: bool = False) -> Trade:
    ts = T0 + tid * 1_000_000
    return Trade(symbol, ts, ts // 10**6, ts // 10**6, tid, 100.0, 0.1, "buy", is_agg, arrival_ts=ts)


async def crashed_run(data: Path) -> None:
    """Journal some trades, then vanish without compacting (as kill -9 would)."""
    lake = Lake(data, clock=lambda: MID_HOUR)
    await lake.recover()
    for symbol, ids, agg in (("BTCUSDT", range(100, 111), False), ("ETHUSDT", range(5, 8), False),
                             ("BTCUSDT", range(40, 43), True)):  # fmt: skip
        for tid in ids:
            lake.append("binance_trades", symbol, binance_trade_row(trade(symbol, tid, agg)))
    await lake.flush()
    lake._release()


EXPECTED = {("BTCUSDT", False): 110, ("ETHUSDT", False): 7, ("BTCUSDT", True): 42}


async def test_last_trade_ids_come_from_the_recovered_journals(tmp_path: Path):
    await crashed_run(tmp_path / "data")
    lake = Lake(tmp_path / "data", clock=lambda: MID_HOUR)
    await lake.recover()
    assert last_trade_ids(lake.state) == EXPECTED
    await lake.close()


async def test_a_start_that_recovers_nothing_still_knows_the_stored_trade_ids(tmp_path: Path):
    """Second crash right after recovery: the third start finds no journal, only lake.db."""
    await crashed_run(tmp_path / "data")
    second = Lake(tmp_path / "data", clock=lambda: MID_HOUR)
    assert await second.recover()  # the crashed run's journals, compacted
    second._release()  # killed before the sender reconnected
    third = Lake(tmp_path / "data", clock=lambda: MID_HOUR)
    assert await third.recover() == []
    assert last_trade_ids(third.state) == EXPECTED
    await third.close()


async def test_journals_that_fail_to_compact_still_count_as_stored(tmp_path: Path):
    data = tmp_path / "data"
    await crashed_run(data)
    # Something in the way of BTCUSDT's output directory: that compaction fails, journals stay.
    blocker = data / "lake" / "binance" / "trades" / "symbol=BTCUSDT"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    lake = Lake(data, clock=lambda: MID_HOUR)
    recovered = await lake.recover()
    assert [r.key.split("/")[2] for r in recovered if r.key] == ["symbol=ETHUSDT"]
    assert lake.stats.compact_errors == 1
    assert last_trade_ids(lake.state) == EXPECTED
    await lake.close()


async def test_floor_outlives_retention_and_is_built_once_for_an_older_lake_db(tmp_path: Path):
    data = tmp_path / "data"
    await crashed_run(data)
    lake = Lake(data, clock=lambda: MID_HOUR)
    await lake.recover()
    lake._release()
    # A lake.db written before it kept trade ids: the floor is rebuilt from the files on disk.
    db = sqlite3.connect(data / "state" / "lake.db")
    db.executescript("DELETE FROM trade_ids; DELETE FROM meta;")
    db.close()
    lake = Lake(data, clock=lambda: MID_HOUR)
    await lake.recover()
    assert last_trade_ids(lake.state) == EXPECTED
    # Files deleted locally (uploaded, retention) no longer matter: lake.db keeps the floor.
    for path in (data / "lake").rglob("*.parquet"):
        lake.state.mark_deleted(str(path.relative_to(data / "lake")), MID_HOUR)
        path.unlink()
    lake._release()
    lake = Lake(data, clock=lambda: MID_HOUR)
    await lake.recover()
    assert last_trade_ids(lake.state) == EXPECTED
    await lake.close()


async def test_seeded_receiver_drops_replays_of_stored_trades(certs: Path):
    rx, inbox = make_receiver(certs)
    rx.seed_trade_ids({("BTCUSDT", False): 110})
    await rx.start()
    try:
        _, writer = await open_mtls(rx.port, client_ctx(certs))
        replay = wire.FLAG_RETRANSMIT
        for seq, tid in enumerate((109, 110, 111, 112), start=1):
            writer.write(wire.encode_trade(seq, 1, trade("BTCUSDT", tid), flags=replay))
        await writer.drain()
        await eventually(lambda: len(inbox.trades()) == 2, what="new trades delivered")
        await asyncio.sleep(0.05)
        assert [t.trade_id for t in inbox.trades()] == [111, 112]
        assert rx.stats.duplicates == 2 and rx.stats.trade_id_gaps == 0
        writer.close()
    finally:
        await rx.close()
