"""Local record of every Parquet file the lake has produced, and of every journal consumed.

SQLite (stdlib, transactional, crash-safe) so a restart knows which `data_NNN` numbers are taken
-- locally or already in S3 -- and which journals are already inside a data file. Methods block:
call them from a worker thread, never from the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    dir TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    md5 TEXT NOT NULL,
    rows INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    uploaded_ns INTEGER,
    deleted_ns INTEGER
);
CREATE INDEX IF NOT EXISTS files_dir ON files(dir);
CREATE INDEX IF NOT EXISTS files_pending ON files(uploaded_ns);
CREATE TABLE IF NOT EXISTS sources (journal TEXT PRIMARY KEY, key TEXT NOT NULL);
-- Highest Binance trade id stored per (symbol, is_agg), whatever happened to the files since
-- (uploaded, deleted by retention): the relay's de-duplication floor after any restart.
CREATE TABLE IF NOT EXISTS trade_ids (
    symbol TEXT NOT NULL,
    is_agg INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (symbol, is_agg)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_TRADE_IDS_COMPLETE = "trade_ids_complete"

TradeIds = dict[tuple[str, bool], int]  # (symbol, is_agg) -> highest trade id


@dataclass(frozen=True)
class FileRecord:
    key: str  # relative lake key, also the S3 key (before the uploader's prefix)
    size: int
    sha256: str  # hex
    md5: str  # hex; the ETag S3 returns for a single-part upload
    rows: int
    created_ns: int
    uploaded_ns: int | None = None

    @property
    def dir(self) -> str:
        return self.key.rsplit("/", 1)[0]

    @property
    def number(self) -> int:
        return int(self.key.rsplit("_", 1)[1].split(".", 1)[0])


class StateStore:
    """Thread-safe wrapper around one SQLite connection in `<data_dir>/state/lake.db`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed record survives power loss
        self._db.executescript(_SCHEMA)
        # A lake.db from before trade_ids existed: its files are scanned once (backfill_trade_ids).
        if self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, '1')", (_TRADE_IDS_COMPLETE,))
        complete = self._db.execute("SELECT 1 FROM meta WHERE name = ?", (_TRADE_IDS_COMPLETE,)).fetchone()
        self.trade_ids_missing = complete is None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def register(
        self, rec: FileRecord, sources: Iterable[str] = (), trade_ids: TradeIds | None = None
    ) -> None:
        """Record a new local file, the journals it was built from and the highest trade ids it
        holds, in one transaction."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO files(key, dir, number, size, sha256, md5, rows, created_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.key, rec.dir, rec.number, rec.size, rec.sha256, rec.md5, rec.rows, rec.created_ns),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO sources(journal, key) VALUES (?, ?)", [(s, rec.key) for s in sources]
            )
            if trade_ids:
                self._raise_trade_ids(trade_ids)

    def raise_trade_ids(self, trade_ids: TradeIds) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._raise_trade_ids(trade_ids)

    def complete_trade_ids(self, trade_ids: TradeIds) -> None:
        """Raise the floor with what a scan of older files found, and record that it is complete."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._raise_trade_ids(trade_ids)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, '1')", (_TRADE_IDS_COMPLETE,))
        self.trade_ids_missing = False

    def _raise_trade_ids(self, trade_ids: TradeIds) -> None:
        self._db.executemany(
            "INSERT INTO trade_ids(symbol, is_agg, last_id) VALUES (?, ?, ?) ON CONFLICT (symbol, is_agg)"
            " DO UPDATE SET last_id = max(last_id, excluded.last_id)",
            [(symbol, int(is_agg), tid) for (symbol, is_agg), tid in trade_ids.items()],
        )

    def last_trade_ids(self) -> TradeIds:
        """Highest trade id ever stored per (symbol, is_agg)."""
        with self._lock:
            rows = self._db.execute("SELECT symbol, is_agg, last_id FROM trade_ids").fetchall()
        return {(symbol, bool(is_agg)): tid for symbol, is_agg, tid in rows}

    def local_files(self, prefix: str) -> list[str]:
        """Keys under `prefix` whose local copy has not been deleted by retention."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM files WHERE deleted_ns IS NULL AND substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
        return [r[0] for r in rows]

    def numbers_used(self, rel_dir: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT number FROM files WHERE dir = ?", (rel_dir,)).fetchall()
        return {r[0] for r in rows}

    def known(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM files WHERE key = ?", (key,)).fetchone() is not None

    def consumed_by(self, journal: str) -> str | None:
        """Key of the data file that already holds this journal's rows, if any."""
        with self._lock:
            row = self._db.execute("SELECT key FROM sources WHERE journal = ?", (journal,)).fetchone()
        return row[0] if row else None

    def pending(self) -> list[FileRecord]:
        """Files produced but not yet confirmed in S3, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, size, sha256, md5, rows, created_ns FROM files"
                " WHERE uploaded_ns IS NULL AND deleted_ns IS NULL ORDER BY created_ns, key"
            ).fetchall()
        return [FileRecord(*r) for r in rows]

    def mark_uploaded(self, key: str, ts_ns: int) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET uploaded_ns = ? WHERE key = ?", (ts_ns, key))

    def uploaded_before(self, ts_ns: int) -> list[str]:
        """Uploaded files still on local disk whose upload is older than `ts_ns`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM files WHERE uploaded_ns IS NOT NULL AND uploaded_ns <= ?"
                " AND deleted_ns IS NULL",
                (ts_ns,),
            ).fetchall()
        return [r[0] for r in rows]

    def mark_deleted(self, key: str, ts_ns: int) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET deleted_ns = ? WHERE key = ?", (ts_ns, key))

    def rekey(self, old: str, new: FileRecord) -> None:
        """Move a not-yet-uploaded record to a new key (after an S3 name clash)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE files SET key = ?, dir = ?, number = ? WHERE key = ?",
                (new.key, new.dir, new.number, old),
            )
            self._db.execute("UPDATE sources SET key = ? WHERE key = ?", (new.key, old))

    def replace_content(self, rec: FileRecord) -> None:
        """A not-yet-uploaded file was rewritten in place (salvage dropped rows S3 already has)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE files SET size = ?, sha256 = ?, md5 = ?, rows = ?"
                " WHERE key = ? AND uploaded_ns IS NULL",
                (rec.size, rec.sha256, rec.md5, rec.rows, rec.key),
            )

    def record(self, key: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, size, sha256, md5, rows, created_ns, uploaded_ns FROM files WHERE key = ?",
                (key,),
            ).fetchone()
        return FileRecord(*row) if row else None
