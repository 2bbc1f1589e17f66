"""Journal segments: round trip, torn tails at every byte offset, damaged bodies, failed writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pytest

from polymm.lake.journal import JournalFile, read_journal, rows_to_batch
from polymm.lake.schemas import BINANCE_BBO, POLYMARKET_L2, POLYMARKET_TRADES, bbo_row, polymarket_trade_row
from polymm.relay.events import Bbo

from .conftest import T0, bbo, book


def _write(path: Path, batches: int, rows: int = 7) -> list[int]:
    """Writes `batches` batches; returns the file size after each one."""
    jf = JournalFile(path, POLYMARKET_L2.schema)
    sizes = []
    for b in range(batches):
        jf.write_durably(rows_to_batch(POLYMARKET_L2, [book(T0 + b * 1000 + i, i=i) for i in range(rows)]))
        sizes.append(jf.size)
    jf.close()
    return sizes


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "j.arrows"
    _write(path, 3)
    read = read_journal(path, POLYMARKET_L2.schema)
    assert (read.batches, read.table.num_rows, read.torn, read.error) == (3, 21, False, None)
    assert read.table.column("bids")[0].as_py()[0] == {"price": 0.5, "size": 100.0}


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    full = tmp_path / "full.arrows"
    sizes = _write(full, 3, rows=3)
    data = full.read_bytes()
    cut = tmp_path / "cut.arrows"
    for offset in range(len(data) + 1):
        cut.write_bytes(data[:offset])
        read = read_journal(cut, POLYMARKET_L2.schema)
        complete = sum(1 for s in sizes if s <= offset)
        assert read.batches == complete, offset
        assert read.table.num_rows == 3 * complete
        # the intact prefix is everything up to the last complete batch (or the bare schema)
        assert (sizes[complete - 1] if complete else 0) <= read.good_bytes <= offset


def test_damaged_body_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "j.arrows"
    sizes = _write(path, 3)
    data = bytearray(path.read_bytes())
    # zero the last 24 bytes of the second batch's body (what a power cut can leave behind)
    data[sizes[1] - 24 : sizes[1]] = bytes(24)
    path.write_bytes(bytes(data))
    read = read_journal(path, POLYMARKET_L2.schema)
    assert read.batches == 1 and read.torn and "checksum" in (read.error or "")


def test_zero_filled_tail(tmp_path: Path) -> None:
    path = tmp_path / "j.arrows"
    _write(path, 2)
    with open(path, "ab") as fh:
        fh.write(bytes(4096))
    read = read_journal(path, POLYMARKET_L2.schema)
    assert read.batches == 2 and read.table.num_rows == 14


def test_failed_write_truncates_and_retires(tmp_path: Path) -> None:
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # second batch: half of it lands, then the disk is full
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    path = tmp_path / "j.arrows"
    jf = JournalFile(path, BINANCE_BBO.schema, half_then_enospc)
    jf.write_durably(rows_to_batch(BINANCE_BBO, [bbo(T0 + i, i=i) for i in range(5)]))
    good = jf.size
    with pytest.raises(OSError):
        jf.write_durably(rows_to_batch(BINANCE_BBO, [bbo(T0 + 10 + i, i=i) for i in range(5)]))
    assert jf.broken and path.stat().st_size == good
    with pytest.raises(OSError):
        jf.write_durably(rows_to_batch(BINANCE_BBO, [bbo(T0)]))  # a retired segment takes no more data
    jf.close()
    read = read_journal(path, BINANCE_BBO.schema)
    assert (read.batches, read.table.num_rows, read.torn) == (1, 5, False)


def test_empty_segment_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "j.arrows"
    JournalFile(path, BINANCE_BBO.schema).close()
    assert not path.exists()


def test_journal_of_an_earlier_version_reads_its_new_columns_as_null(tmp_path: Path) -> None:
    """polymarket_trades gained transaction_hash: a journal left by the previous version before an
    upgrade still compacts, with nulls there, instead of failing on its schema."""
    old_schema = pa.schema(list(POLYMARKET_TRADES.schema)[:-1])
    path = tmp_path / "old.arrows"
    jf = JournalFile(path, old_schema)
    jf.write_durably(
        pa.RecordBatch.from_pylist(
            [
                {
                    "recv_ts": T0,
                    "token_id": "1",
                    "price": 0.5,
                    "size": 2.0,
                    "side": "buy",
                    "exch_ts": 1,
                    "fee_rate_bps": "0",
                }
            ],
            schema=old_schema,
        )
    )
    jf.close()
    read = read_journal(path, POLYMARKET_TRADES.schema)
    assert read.error is None and read.table.schema.equals(POLYMARKET_TRADES.schema)
    assert read.table.to_pylist()[0]["transaction_hash"] is None
    assert read.table.to_pylist()[0]["fee_rate_bps"] == "0"
    # any other difference is still refused
    assert read_journal(path, BINANCE_BBO.schema).error is not None


def test_rows_keep_what_the_venues_sent() -> None:
    bbo_batch = rows_to_batch(
        BINANCE_BBO, [bbo_row(Bbo("BTCUSDT", 1, 0, 0, 7, 1.0, 1.0, 2.0, 1.0, arrival_ts=T0))]
    )
    assert bbo_batch.to_pylist()[0]["exch_ts"] is None and bbo_batch.to_pylist()[0]["txn_ts"] is None
    row = polymarket_trade_row(T0, "1", 0.5, 2.0, "SELL", 1750428146322, "1.1", "0xabc")
    (out,) = rows_to_batch(POLYMARKET_TRADES, [row]).to_pylist()
    assert (out["side"], out["fee_rate_bps"], out["transaction_hash"]) == ("sell", "1.1", "0xabc")
    row = polymarket_trade_row(T0, "1", 0.5, 2.0, "BUY", 1750428146322, None, "")
    (out,) = rows_to_batch(POLYMARKET_TRADES, [row]).to_pylist()
    assert (out["side"], out["fee_rate_bps"], out["transaction_hash"]) == ("buy", None, None)
