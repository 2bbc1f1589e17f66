from __future__ import annotations

import csv
import time
from pathlib import Path

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
