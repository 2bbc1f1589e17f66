"""The collector's write path: in-memory buffers -> journal (every flush) -> Parquet (every hour).

`append` is the hot path (~0.2 us): one dict lookup and one list append per row. Rows are
converted column-wise to Arrow only at flush time, in a worker thread, so the event loop never
waits on disk or on Arrow conversion of a whole second of data.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from polymm.lake.compact import (
    CompactResult,
    backfill_trade_ids,
    compact,
    floor_from_journals,
    list_journals,
    prune_empty,
    reconcile,
)
from polymm.lake.disk import DiskLevel, DiskWatch
from polymm.lake.journal import JOURNAL_SUFFIX, JournalFile, WriteFn, rows_to_batch
from polymm.lake.partition import NS_PER_HOUR, Layout, PartKey, check_partition_value
from polymm.lake.schemas import EVENTS_TABLE, TABLES, event_row
from polymm.lake.state import StateStore
from polymm.service.backoff import sleep_or_stop
from polymm.service.startup import StorageError

log = logging.getLogger(__name__)

Row = tuple[Any, ...] | dict[str, Any]
BufKey = tuple[str, str, int]  # (table, partition, hour)


class LakeLockedError(StorageError):
    """Another process already owns this data directory."""


@dataclass
class LakeStats:
    rows_in: int = 0  # rows taken from buffers by a flush (accepted rows, minus those pending)
    rows_journaled: int = 0
    journal_bytes: int = 0
    flushes: int = 0
    write_errors: int = 0  # failed journal writes (rows kept in memory and retried)
    last_flush_ns: int = 0
    last_flush_s: float = 0.0
    late_rows: int = 0  # rows for an hour already compacted (they go to a later data file)
    bad_rows: int = 0  # rows that could not be converted to the table schema (dropped, logged)
    files_compacted: int = 0
    rows_compacted: int = 0
    compact_errors: int = 0
    torn_journals: int = 0
    loop_errors: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # "table:reason" -> rows refused


class Lake:
    """Buffers rows, journals them every `flush_interval_s`, compacts closed hours to Parquet.

    One Lake owns one data directory (an exclusive lock file enforces it). Construct it from the
    service's start-up code (it opens a small SQLite file), then run `await lake.run(stop)`.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        flush_interval_s: float = 1.0,
        grace_s: float = 10.0,
        max_pending_rows: int = 500_000,
        disk: DiskWatch | None = None,
        on_compacted: Callable[[list[CompactResult]], None] | None = None,
        compact_retry_s: float = 30.0,
        clock: Callable[[], int] = time.time_ns,
        write_fn: WriteFn = os.write,
    ) -> None:
        self.layout = Layout(Path(data_dir))
        self.flush_interval_s = flush_interval_s
        self.grace_ns = int(grace_s * 1e9)
        self.max_pending_rows = max_pending_rows
        self.disk = disk
        self.on_compacted = on_compacted
        self.compact_retry_s = compact_retry_s
        self.stats = LakeStats()
        self._clock = clock
        self._write_fn = write_fn
        self.layout.state.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _take_lock(self.layout.state / "lake.lock")
        self.state = StateStore(self.layout.state / "lake.db")
        # Unique across restarts and processes: journal names never collide with an older run's.
        self.run_id = f"{time.time_ns()}-{os.getpid()}"
        self._buffers: dict[BufKey, list[tuple[Any, ...]]] = {}
        self._pending = 0
        self._refused: frozenset[str] = frozenset()
        self._refuse_reason = "disk"
        self._disk_level = DiskLevel.OK
        self._writers: dict[PartKey, JournalFile] = {}
        self._segments: dict[PartKey, int] = {}
        # Flushes and the start/end of a compaction (closing writers, listing journals, pruning
        # directories) are serialised by _io; the long part of a compaction runs outside it so
        # the 1 s flushes go on while an hour is being compacted.
        self._io = asyncio.Lock()
        self._compacting = asyncio.Lock()
        self._compaction: asyncio.Task[list[CompactResult]] | None = None
        self._closed_bound = self._hour_bound()  # hours below this are closed
        self._retry_at: float | None = None
        self._recovered = False
        self._closed = False
        self._last_log: dict[str, float] = {}
        # Durability watermark for an upstream that replays what is not confirmed (the relay):
        # `delivery_counter()` counts what was handed to append(); `durable_mark` is its value at
        # the start of the last flush that left nothing behind.
        self.delivery_counter: Callable[[], int] | None = None
        self.durable_mark = 0

    # ---- hot path -------------------------------------------------------------------------

    def append(self, table: str, partition: str, row: Row) -> bool:
        """Buffer one row; False if it was refused (disk degraded, memory bound), counted in
        `stats.dropped`. `partition` is the symbol or token id ("" for collector_events); a
        row is a tuple in the table's column order (or a dict) with recv_ts (ns) first."""
        if table in self._refused:
            self._drop(table, self._refuse_reason)
            return False
        if self._pending >= self.max_pending_rows and table != EVENTS_TABLE:
            self._drop(table, "memory")
            return False
        if type(row) is dict:
            row = TABLES[table].row(row)
        key = (table, partition, row[0] // NS_PER_HOUR)  # type: ignore[index]
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._new_buffer(key)
        buf.append(row)  # type: ignore[arg-type]
        self._pending += 1
        return True

    def event(self, source: str, kind: str, key: str = "", detail: dict[str, Any] | None = None) -> None:
        """Record a collector event (reconnect, gap, degraded, ...) in collector/events."""
        self.append(EVENTS_TABLE, "", event_row(self._clock(), source, kind, key, json.dumps(detail or {})))

    def _new_buffer(self, key: BufKey) -> list[tuple[Any, ...]]:
        table, partition, _hour = key
        spec = TABLES.get(table)
        if spec is None:
            raise KeyError(f"unknown lake table {table!r}")
        if spec.partition_key is not None:
            check_partition_value(partition)
        elif partition:
            raise ValueError(f"{table} has no partition key; pass '' not {partition!r}")
        buf: list[tuple[Any, ...]] = []
        self._buffers[key] = buf
        return buf

    def _drop(self, table: str, reason: str) -> None:
        name = f"{table}:{reason}"
        self.stats.dropped[name] = self.stats.dropped.get(name, 0) + 1
        self._warn(name, "dropping %s rows (%s); %d dropped so far", table, reason, self.stats.dropped[name])

    @property
    def rows_pending(self) -> int:
        """Rows accepted but not yet durable in a journal."""
        return self._pending

    # ---- flush ----------------------------------------------------------------------------

    async def flush(self) -> int:
        """Make every buffered row durable in its journal; returns rows written. Rows whose write
        failed stay buffered (ahead of newer rows) for the next flush."""
        async with self._io:
            mark = self.delivery_counter() if self.delivery_counter is not None else 0
            if not self._buffers:
                self.durable_mark = mark
                return 0
            bufs, self._buffers = self._buffers, {}
            self._pending = 0
            closed = self._closed_bound
            for (_t, _p, hour), rows in bufs.items():
                self.stats.rows_in += len(rows)
                if hour < closed:
                    self.stats.late_rows += len(rows)
            started = time.monotonic()
            written, failed = await asyncio.to_thread(self._write_journals, bufs)
            for key, rows in failed.items():
                newer = self._buffers.get(key)
                self._buffers[key] = rows + newer if newer else rows
                self._pending += len(rows)
                self.stats.rows_in -= len(rows)
            if not failed:
                self.durable_mark = mark
            self.stats.flushes += 1
            self.stats.last_flush_ns = self._clock()
            self.stats.last_flush_s = time.monotonic() - started
            return written

    def _write_journals(
        self, bufs: dict[BufKey, list[tuple[Any, ...]]]
    ) -> tuple[int, dict[BufKey, list[tuple[Any, ...]]]]:
        written = 0
        failed: dict[BufKey, list[tuple[Any, ...]]] = {}
        for key, rows in bufs.items():
            pk = PartKey(*key)
            batch = self._to_batch(pk, rows)
            if batch is None:
                continue
            writer = self._writers.get(pk)
            try:
                if writer is None or writer.broken:
                    if writer is not None:
                        writer.close()
                    writer = self._open_segment(pk)
                self.stats.journal_bytes += writer.write_durably(batch)
            except OSError as exc:
                self.stats.write_errors += 1
                failed[key] = rows
                self._warn(f"write:{pk.table}", "journal write for %s failed (%s); keeping %d rows in memory",
                           pk.dir, exc, len(rows))  # fmt: skip
                continue
            written += batch.num_rows
            self.stats.rows_journaled += batch.num_rows
        return written, failed

    def _to_batch(self, pk: PartKey, rows: list[tuple[Any, ...]]) -> pa.RecordBatch | None:
        spec = pk.spec
        try:
            return rows_to_batch(spec, rows)
        except (pa.ArrowException, TypeError, ValueError):
            pass
        # A bug upstream sent a malformed row: keep the good ones, drop and report the bad.
        good = []
        for row in rows:
            try:
                rows_to_batch(spec, [row])
                good.append(row)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                self.stats.bad_rows += 1
                self._warn(f"bad:{pk.table}", "dropping malformed %s row %r: %s", pk.table, row[:4], exc)
        return rows_to_batch(spec, good) if good else None

    def _open_segment(self, pk: PartKey) -> JournalFile:
        seg = self._segments.get(pk, 0)
        self._segments[pk] = seg + 1
        path = self.layout.journal / pk.dir / f"{self.run_id}-{seg:04d}{JOURNAL_SUFFIX}"
        writer = JournalFile(path, pk.spec.schema, self._write_fn)
        self._writers[pk] = writer
        return writer

    # ---- compaction -----------------------------------------------------------------------

    async def recover(self) -> list[CompactResult]:
        """Compact whatever an earlier run left in the journal (any hour), after registering data
        files a crash left unrecorded. Called by `run`; safe to call once before it."""
        if self._recovered:
            return []
        self._recovered = True
        own = self.run_id + "-"
        async with self._compacting:
            found = await asyncio.to_thread(reconcile, self.layout, self.state, self._clock)
            if self.state.trade_ids_missing:
                scanned = await asyncio.to_thread(backfill_trade_ids, self.layout, self.state)
                log.info("trade-id floor built from %d local trades files", scanned)
        if found:
            log.warning("registered %d data files left unrecorded by a crash", found)
        results = await self._compact_selected(lambda pk, p: not p.name.startswith(own))
        async with self._compacting:
            left = await asyncio.to_thread(floor_from_journals, self.layout, self.state, own)
        if left:
            log.warning(
                "%d trades journals could not be compacted yet; their trade ids count as stored", left
            )
        return results

    async def compact_closed(self) -> list[CompactResult]:
        """Compact every cell whose hour ended more than `grace_s` ago."""
        bound = self._hour_bound()
        self._closed_bound = max(self._closed_bound, bound)
        return await self._compact_selected(lambda pk, p: pk.hour < bound)

    async def _compact_selected(self, select: Callable[[PartKey, Path], bool]) -> list[CompactResult]:
        async with self._compacting:
            async with self._io:
                jobs = await asyncio.to_thread(self._plan, select)
            results = await asyncio.to_thread(self._compact_jobs, jobs)
            async with self._io:
                await asyncio.to_thread(self._prune, {paths[0].parent for paths in jobs.values()})
        self._notify(results)
        return results

    def _plan(self, select: Callable[[PartKey, Path], bool]) -> dict[PartKey, list[Path]]:
        """Retire the selected writers and snapshot the journals to compact. Segments a later
        flush opens (late rows) are not in the snapshot: they wait for the next compaction."""
        for pk in [pk for pk, w in self._writers.items() if select(pk, w.path)]:
            self._writers.pop(pk).close()
        jobs = {}
        for pk, paths in sorted(list_journals(self.layout).items()):
            chosen = [p for p in paths if select(pk, p)]
            if chosen:
                jobs[pk] = chosen
        return jobs

    def _compact_jobs(self, jobs: dict[PartKey, list[Path]]) -> list[CompactResult]:
        results = []
        errors = 0
        for pk, paths in jobs.items():
            try:
                res = compact(self.layout, self.state, pk, paths, self._clock)
            except Exception:
                # Journals stay where they are; retried after compact_retry_s.
                errors += 1
                self.stats.compact_errors += 1
                log.exception("compaction of %s failed; journals kept", pk.dir)
                continue
            self.stats.torn_journals += len(res.torn)
            if res.key is not None:
                self.stats.files_compacted += 1
                self.stats.rows_compacted += res.rows
                results.append(res)
        self._retry_at = time.monotonic() + self.compact_retry_s if errors else None
        return results

    def _prune(self, dirs: set[Path]) -> None:
        for d in dirs:
            prune_empty(d, self.layout.journal)

    def _notify(self, results: list[CompactResult]) -> None:
        if results and self.on_compacted is not None:
            try:
                self.on_compacted(results)
            except Exception:
                log.exception("on_compacted callback failed")

    def _hour_bound(self) -> int:
        return (self._clock() - self.grace_ns) // NS_PER_HOUR

    # ---- loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Recover, then flush every interval and compact each hour once it closes, until `stop`;
        then `close()` (final flush + compaction of everything, current hour included)."""
        try:
            await self.recover()
            while not await sleep_or_stop(stop, self.flush_interval_s):
                await self.tick()
        finally:
            await self.close()

    async def tick(self) -> None:
        """One iteration of `run`: apply the disk level, flush, compact closed hours if due."""
        try:
            self._apply_disk()
            await self.flush()
            due = self._retry_at is not None and time.monotonic() >= self._retry_at
            busy = self._compaction is not None and not self._compaction.done()
            if not busy and (self._hour_bound() > self._closed_bound or due):
                # in the background: the next ticks keep flushing while an hour is compacted
                self._compaction = asyncio.create_task(self.compact_closed())
                self._compaction.add_done_callback(self._compaction_done)
        except Exception:
            # The storage loop must outlive any single bad iteration; the error is counted.
            self.stats.loop_errors += 1
            log.exception("lake loop iteration failed")

    async def wait_idle(self) -> None:
        """Wait for a background compaction started by `tick` (for tests and tools)."""
        if self._compaction is not None:
            with contextlib.suppress(Exception):
                await self._compaction

    def _compaction_done(self, task: asyncio.Task[list[CompactResult]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.stats.loop_errors += 1
            log.error("background compaction failed", exc_info=task.exception())

    def _apply_disk(self) -> None:
        if self.disk is None or self.disk.level == self._disk_level:
            return
        level = self._disk_level = self.disk.level
        if level >= DiskLevel.CRITICAL:
            refused = frozenset(t for t in TABLES if t != EVENTS_TABLE)
        elif level >= DiskLevel.DEGRADED:
            refused = frozenset(t for t, spec in TABLES.items() if spec.low_priority)
        else:
            refused = frozenset()
        self._refused = refused
        log.error("disk level %s: refusing %s", level.name.lower(), ", ".join(sorted(refused)) or "nothing")
        self.event("lake", "degraded", "", {"level": level.name.lower(), "used_pct": self.disk.used_pct,
                                            "refused": sorted(refused)})  # fmt: skip

    async def close(self) -> None:
        """Flush, compact everything (current hour included) and release the data directory."""
        if self._closed:
            return
        self._closed = True
        await self.flush()
        if self._pending:
            await self.flush()  # one retry: a transient write error should not cost data
        await self.wait_idle()
        await self._compact_selected(lambda pk, p: True)
        if self._pending:  # rows appended while compacting (e.g. a last event): one more pass
            await self.flush()
            await self._compact_selected(lambda pk, p: True)
        if self._pending:
            log.error("closing with %d rows that could not be journaled: they are lost", self._pending)
            self.stats.dropped["all:close"] = self.stats.dropped.get("all:close", 0) + self._pending
        # From here on nothing can be journaled: refuse (and count) rather than buffer silently.
        self._refused, self._refuse_reason = frozenset(TABLES), "closed"
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self.state.close()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def snapshot(self) -> dict[str, Any]:
        """Counters for the service's status output."""
        out = asdict(self.stats)
        out["rows_pending"] = self._pending
        out["open_journals"] = len(self._writers)
        out["disk_level"] = self._disk_level.name.lower()
        return out

    def _warn(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -1e9) >= 10.0:
            self._last_log[key] = now
            log.error(msg, *args)


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LakeLockedError(
            f"DATA_DIR={str(path.parent.parent)!r} is in use: another data-collector holds {path}"
        ) from None
    return fd
