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
"""


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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def register(self, rec: FileRecord, sources: Iterable[str] = ()) -> None:
        """Record a new local file and the journals it was built from, in one transaction."""
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

    def record(self, key: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, size, sha256, md5, rows, created_ns, uploaded_ns FROM files WHERE key = ?",
                (key,),
            ).fetchone()
        return FileRecord(*row) if row else None
