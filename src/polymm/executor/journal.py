"""Append-only CSV journal of every execution step, one file per UTC day.

The event loop only does a non-blocking `put`; a writer thread batches lines, writes and fsyncs.
If the queue is full the line is dropped but counted, logged (throttled) and the count is
written into the file as an `journal_overflow` line as soon as there is room again, so a gap
is always visible to whoever reconstructs the day.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from polymm.service.logs import Throttle

log = logging.getLogger("polymm.executor.journal")

COLUMNS = (
    "ts_ns",
    "event",
    "token_id",
    "market",
    "side",
    "price",
    "size",
    "order_id",
    "trade_id",
    "status",
    "reason",
    "detail",
)

_STOP = object()


class Journal:
    def __init__(self, directory: Path | str, prefix: str = "executor", max_queue: int = 100_000) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._throttle = Throttle(10.0)
        self._lock = threading.Lock()  # guards overflow counters (loop thread vs writer thread)
        self.dropped = 0  # lines lost to overflow, ever
        self._unreported = 0  # dropped lines not yet written as an overflow line
        self.written = 0
        self.write_errors = 0
        self._file: io.TextIOWrapper | None = None
        self._day = ""

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def record(self, event: str, **fields: Any) -> None:
        """Queue one line (never blocks). Unknown field names go into `detail`."""
        row = {"ts_ns": fields.pop("ts_ns", None) or time.time_ns(), "event": event}
        extra = {}
        for key, value in fields.items():
            if key in COLUMNS:
                row[key] = value
            else:
                extra[key] = value
        if extra:
            row["detail"] = " ".join(f"{k}={v}" for k, v in extra.items())
        try:
            self._q.put_nowait(row)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._unreported += 1
            self._throttle.warn(log, "overflow", "journal queue full: %d lines dropped so far", self.dropped)

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush everything queued and stop the writer thread (blocking: call via to_thread)."""
        if self._thread is None:
            return
        self._q.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    def path_for(self, ts_ns: int) -> Path:
        day = time.strftime("%Y-%m-%d", time.gmtime(ts_ns / 1e9))
        return self.directory / f"{self.prefix}-{day}.csv"

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._q.get()]
            while len(batch) < 5000:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [row for row in batch if row is not _STOP]
            self._write(batch)
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            lost, self._unreported = self._unreported, 0
        if lost:
            rows.append({"ts_ns": time.time_ns(), "event": "journal_overflow", "detail": f"dropped={lost}"})
        try:
            for row in rows:
                out = self._file_for(int(row["ts_ns"]))
                csv.writer(out).writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
                self.written += 1
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
        except OSError:
            self.write_errors += 1
            with self._lock:
                self._unreported += len(rows)
                self.dropped += len(rows)
            log.exception("journal write failed; %d lines lost", len(rows))

    def _file_for(self, ts_ns: int) -> io.TextIOWrapper:
        day = time.strftime("%Y-%m-%d", time.gmtime(ts_ns / 1e9))
        if self._file is None or day != self._day:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            path = self.directory / f"{self.prefix}-{day}.csv"
            fresh = not path.exists() or path.stat().st_size == 0
            self._file = path.open("a", newline="", encoding="utf-8")
            self._day = day
            if fresh:
                csv.writer(self._file).writerow(COLUMNS)
        return self._file
