from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import pytest

from polymm.executor.journal import COLUMNS, Journal


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_lines_with_header_and_detail(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.start()
    now = time.time_ns()
    j.record("order_sent", ts_ns=now, token_id="t", side="BUY", price=0.45, size=10, order_id="0xab", extra=1)
    j.record("ack", ts_ns=now + 1, order_id="0xab", status="live")
    j.close()
    rows = read(j.path_for(now))
    assert list(rows[0].keys()) == list(COLUMNS)
    assert [r["event"] for r in rows] == ["order_sent", "ack"]
    assert rows[0]["price"] == "0.45" and rows[0]["detail"] == "extra=1" and rows[1]["ts_ns"] == str(now + 1)


def test_overflow_is_counted_and_written(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_queue=5)  # writer not started: the queue fills up
    for i in range(8):
        j.record("x", ts_ns=time.time_ns(), order_id=str(i))
    assert j.dropped == 3
    j.start()
    j.close()
    rows = read(j.path_for(time.time_ns()))
    assert [r["event"] for r in rows].count("x") == 5
    overflow = [r for r in rows if r["event"] == "journal_overflow"]
    assert overflow and overflow[0]["detail"] == "dropped=3"


def test_appends_to_existing_day_file_without_second_header(tmp_path: Path) -> None:
    for _ in range(2):
        j = Journal(tmp_path)
        j.start()
        j.record("x")
        j.close()
    lines = j.path_for(time.time_ns()).read_text().splitlines()
    assert lines[0].startswith("ts_ns,") and len(lines) == 3


def test_lines_recorded_on_the_loop_reach_the_writer_once_per_iteration(tmp_path: Path) -> None:
    """On the order path the writer thread is woken once per loop iteration, after the callback
    that recorded the lines (it used to be woken by every line, between decision and cancel)."""
    j = Journal(tmp_path)
    j.start()
    now = time.time_ns()

    async def order_path() -> tuple[int, int]:
        for i in range(3):
            j.record("cancel_sent", ts_ns=now + i, order_id=str(i))
        during = j.handovers  # still inside the callback that recorded them
        await asyncio.sleep(0)
        return during, j.handovers

    during, after = asyncio.run(order_path())
    j.close()
    assert (during, after) == (0, 1)
    assert [r["order_id"] for r in read(j.path_for(now))] == ["0", "1", "2"]


def test_close_writes_lines_not_yet_handed_over(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.start()

    async def record_then_close() -> None:
        j.record("stop", order_id="last")
        j.close()  # no loop iteration in between: the pending line must not be lost

    asyncio.run(record_then_close())
    assert [r["order_id"] for r in read(j.path_for(time.time_ns()))] == ["last"]


def test_overflow_on_the_loop_is_counted(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_queue=4)  # writer not started: the backlog fills up

    async def burst() -> None:
        for i in range(6):
            j.record("x", order_id=str(i))
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert j.dropped == 2
    j.start()
    j.close()
    rows = read(j.path_for(time.time_ns()))
    assert [r["order_id"] for r in rows if r["event"] == "x"] == ["0", "1", "2", "3"]
    assert [r["detail"] for r in rows if r["event"] == "journal_overflow"] == ["dropped=2"]


def test_write_failure_is_one_line_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = Journal(tmp_path)
    j.path_for(time.time_ns()).mkdir()  # the day's file cannot be opened: IsADirectoryError
    j.start()
    j.record("x")
    j.close()
    assert (j.write_errors, j.dropped, j.written) == (1, 1, 0)
    failures = [r for r in caplog.records if "journal write failed" in r.getMessage()]
    assert len(failures) == 1 and not failures[0].exc_info  # one line, no traceback
    assert "Is a directory" in failures[0].getMessage()
