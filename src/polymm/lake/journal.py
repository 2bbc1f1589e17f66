"""Crash-safe journal: Arrow IPC stream files, one per (table, partition, hour, run, segment).

Each flush appends one record batch and fsyncs, so `kill -9` loses at most the rows since the
last completed flush. Every batch carries a CRC32 of its buffers in its custom metadata: the
reader keeps every complete, intact batch and stops at the first torn or damaged one, so a file
cut at any byte still yields its whole prefix. A writer that hits an I/O error truncates back to
its last good size and is retired; the next flush opens a fresh segment, so a torn batch is never
followed by good ones in the same file.
"""

from __future__ import annotations

import errno
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from polymm.lake.schemas import TableSpec

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".arrows"
_CRC_KEY = b"crc32"

WriteFn = Callable[[int, bytes | memoryview], int]


def rows_to_batch(spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> pa.RecordBatch:
    """Column-wise conversion of buffered row tuples (itemgetter transposes at C speed)."""
    width = len(spec.columns)
    if rows and set(map(len, rows)) != {width}:
        raise ValueError(f"{spec.name}: every row must have {width} columns")
    arrays = [pa.array(list(map(itemgetter(i), rows)), type=f.type) for i, f in enumerate(spec.schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema)


def batch_crc(batch: pa.RecordBatch) -> int:
    crc = 0
    for column in batch.columns:
        for buf in _buffers(column):
            crc = zlib.crc32(buf, crc)
    return crc


def _buffers(array: pa.Array) -> list[pa.Buffer]:
    return [b for b in array.buffers() if b is not None]


class _Sink:
    """In-memory target for the IPC writer, so the file I/O (and its errors) stays in our hands."""

    closed = False

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class JournalFile:
    """One append-only journal segment. Blocking: use from a worker thread."""

    def __init__(self, path: Path, schema: pa.Schema, write_fn: WriteFn = os.write) -> None:
        self.path = path
        self.size = 0  # bytes known to be complete and durable
        self.broken = False
        self._write = write_fn
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fsync_dir(path.parent)  # the new name must survive a power cut too
        self._sink = _Sink()
        self._writer = ipc.new_stream(self._sink, schema)

    def write_durably(self, batch: pa.RecordBatch) -> int:
        """Append one batch and fdatasync. On OSError the file is cut back to its last durable size
        (so a batch is never half in the file, nor both here and in a retry), the segment is
        marked broken and the error re-raised. Returns the bytes written."""
        if self.broken:
            raise OSError(errno.EIO, f"journal segment {self.path} is retired")
        self._writer.write_batch(batch, custom_metadata={_CRC_KEY: str(batch_crc(batch)).encode()})
        data = memoryview(self._sink.take())
        try:
            done = 0
            while done < len(data):
                n = self._write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
            os.fdatasync(self._fd)
        except OSError:
            self.broken = True
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                log.exception("journal %s: cannot truncate after a failed write", self.path)
            raise
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1
        if self.size == 0:
            # nothing durable was ever written: do not leave an empty file behind
            self.path.unlink(missing_ok=True)


@dataclass
class JournalRead:
    table: pa.Table
    batches: int
    good_bytes: int
    total_bytes: int
    error: str | None = None

    @property
    def torn(self) -> bool:
        return self.good_bytes < self.total_bytes


def read_journal(path: Path, schema: pa.Schema) -> JournalRead:
    """Every complete, intact batch of a journal file, in order; stops at the first bad one."""
    total = path.stat().st_size
    batches: list[pa.RecordBatch] = []
    good = 0
    error: str | None = None
    if total:
        source = pa.memory_map(str(path))  # zero-copy: an hour of BBO can be hundreds of MB
        try:
            reader = ipc.open_stream(source)
            missing = _missing_tail(reader.schema, schema)
            while True:
                try:
                    batch, meta = reader.read_next_batch_with_custom_metadata()
                except StopIteration:
                    good = source.tell()
                    break
                if meta is None or int(meta.get(_CRC_KEY, b"-1")) != batch_crc(batch):
                    raise ValueError(f"checksum mismatch in batch {len(batches)}")
                if missing:
                    batch = _pad(batch, schema, missing)
                batches.append(batch)
                good = source.tell()
        except (pa.ArrowException, ValueError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return JournalRead(pa.Table.from_batches(batches, schema=schema), len(batches), good, total, error)


def _missing_tail(found: pa.Schema, schema: pa.Schema) -> list[pa.Field]:
    """Columns a journal lacks at its end: an earlier version wrote it before they were added
    (e.g. polymarket_trades.transaction_hash), so they are read as null. Any other difference is
    an error."""
    n = len(found)
    if n > len(schema) or not all(found.field(i).equals(schema.field(i)) for i in range(n)):
        raise ValueError(f"schema differs from the table's: {found}")
    return [schema.field(i) for i in range(n, len(schema))]


def _pad(batch: pa.RecordBatch, schema: pa.Schema, missing: list[pa.Field]) -> pa.RecordBatch:
    nulls = [pa.nulls(batch.num_rows, type=f.type) for f in missing]
    return pa.RecordBatch.from_arrays([*batch.columns, *nulls], schema=schema)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
