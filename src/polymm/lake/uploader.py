"""Ships compacted Parquet files to S3, verified, idempotent, never overwriting.

For each pending file: HEAD the key; if an object is there with the same bytes (a retry after a
crash), just record it; if different bytes, never overwrite -- the local file moves to the next
free `data_NNN`. Otherwise PUT with a SHA-256 checksum (S3 rejects a corrupted body) and
`If-None-Match: *`, then HEAD again and compare size + checksum before marking it uploaded.
Local copies are deleted `retention_s` after their upload. All boto3 calls run in daemon worker
threads, so a stop never waits on a frozen S3 (`run` abandons an in-flight upload when `stop` is
set, `final_upload` after its deadline): what was not confirmed stays on disk and in lake.db for
the next start. Credentials come only from boto3's standard chain and are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from polymm.lake.compact import next_number
from polymm.lake.journal import fsync_dir
from polymm.lake.offload import in_daemon_thread
from polymm.lake.partition import Layout, parse_dir
from polymm.lake.state import FileRecord, StateStore
from polymm.service.backoff import Backoff

log = logging.getLogger(__name__)

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


class UploadConflictError(RuntimeError):
    """S3 already holds different bytes under the key."""


@dataclass
class UploaderStats:
    files_pending: int = 0
    bytes_pending: int = 0
    last_upload_ns: int = 0  # wall clock of the last confirmed upload
    last_error: str = ""
    consecutive_failures: int = 0
    uploads_ok: int = 0
    uploads_failed: int = 0
    already_present: int = 0  # found in S3 with identical content (retry after a crash)
    conflicts: int = 0  # different content under the key: renamed locally, nothing overwritten
    missing_local: int = 0
    files_deleted: int = 0  # local copies removed by retention
    cycles: int = 0
    outages: int = 0  # times S3 came back after failing
    last_outage_s: float = 0.0  # how long the last one lasted (first failure -> first success)
    abandoned: int = 0  # uploads left running in a worker when a stop deadline came


class S3Uploader:
    def __init__(
        self,
        data_dir: Path | str,
        bucket: str,
        region: str,
        *,
        endpoint_url: str | None = None,
        prefix: str = "",
        retention_s: float = 24 * 3600.0,
        interval_s: float = 3600.0,
        upload_on_compact: bool = True,
        backoff_initial_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.layout = Layout(Path(data_dir))
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        self.prefix = normalise_prefix(prefix)
        self.retention_ns = int(retention_s * 1e9)
        self.interval_s = interval_s
        self.upload_on_compact = upload_on_compact
        self.stats = UploaderStats()
        self._backoff = Backoff(backoff_initial_s, backoff_cap_s)
        self._config = Config(
            region_name=region,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._clock = clock
        self._client: Any = None
        self._state: StateStore | None = None
        self._kick = asyncio.Event()
        self._outage_started: float | None = None  # monotonic time of the first failure in a row

    # ---- public ---------------------------------------------------------------------------

    def kick(self, *_args: object) -> None:
        """Ask for an upload cycle now (wire as `Lake(on_compacted=uploader.kick)`)."""
        if self.upload_on_compact:
            self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Upload what earlier runs left, then every `interval_s` (or on `kick`); while S3 fails,
        retry with capped, jittered exponential backoff. Returns as soon as `stop` is set, even
        in the middle of an upload (the caller's `final_upload` or the next start redoes it)."""
        try:
            while not stop.is_set():
                ok = await self._unless_stopped(self.cycle(), stop)
                if ok is None:
                    return
                delay = self.interval_s if ok else self._backoff.next_delay()
                if ok:
                    self._backoff.reset()
                await self._wait(stop, delay)
        finally:
            await self.close()

    async def final_upload(self, timeout_s: float) -> bool:
        """One last cycle at shutdown, given up after `timeout_s` whatever S3 does. True when
        everything is in S3; otherwise the rest stays on disk for the next start."""
        try:
            return await asyncio.wait_for(self.cycle(), timeout_s)
        except TimeoutError:
            self.stats.abandoned += 1
            log.warning(
                "final upload given up after %.0fs (S3 too slow or unreachable); %d files (%d bytes)"
                " stay on disk and are uploaded at the next start",
                timeout_s, self.stats.files_pending, self.stats.bytes_pending,
            )  # fmt: skip
            return False
        finally:
            await self.close()

    async def close(self) -> None:
        """Release the state store (`run` does it on exit; call it after using `cycle` alone)."""
        if self._state is not None:
            state, self._state = self._state, None
            await asyncio.to_thread(state.close)

    async def cycle(self) -> bool:
        """Upload every pending file, then apply retention. True when nothing failed."""
        self._kick.clear()
        self.stats.cycles += 1
        state = await self._get_state()
        pending = await asyncio.to_thread(state.pending)
        self._set_pending(pending)
        ok = True
        recovered: tuple[float, int] | None = (
            None  # (seconds down, failed attempts) if this cycle ended an outage
        )
        done_before = self._done()
        for rec in pending:
            try:
                await in_daemon_thread(self._upload_one, rec, name="s3-upload")
            except (BotoCoreError, ClientError, OSError, UploadConflictError) as exc:
                ok = False
                self._failed(rec, exc)
                break  # S3 is most likely down: back off instead of failing file after file
            if self._outage_started is not None:
                recovered = (time.monotonic() - self._outage_started, self.stats.consecutive_failures)
                self._outage_started = None
            self.stats.consecutive_failures = 0
        self._set_pending(await asyncio.to_thread(state.pending))
        if recovered is not None:
            self._log_recovery(*recovered, self._done() - done_before)
        await self.apply_retention()
        return ok

    def _failed(self, rec: FileRecord, exc: Exception) -> None:
        if self._outage_started is None:
            self._outage_started = time.monotonic()
        self.stats.uploads_failed += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error(
            "upload of %s failed (%d in a row): %s",
            rec.key,
            self.stats.consecutive_failures,
            self.stats.last_error,
        )

    def _done(self) -> int:
        return self.stats.uploads_ok + self.stats.already_present

    def _log_recovery(self, down_s: float, failures: int, uploaded: int) -> None:
        self.stats.outages += 1
        self.stats.last_outage_s = down_s
        log.info(
            "S3 reachable again after %.1fs down (%d failed attempts): uploaded %d waiting files,"
            " %d still pending",
            down_s, failures, uploaded, self.stats.files_pending,
        )  # fmt: skip

    async def apply_retention(self) -> int:
        """Delete local copies uploaded more than `retention_s` ago; returns how many."""
        state = await self._get_state()
        return await asyncio.to_thread(self._retention, state)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self.stats)

    # ---- worker-thread side ---------------------------------------------------------------

    def _upload_one(self, rec: FileRecord) -> None:
        state = self._state
        assert state is not None
        path = self.layout.lake / rec.key
        if not path.exists():
            # Nothing can bring it back; record that loudly instead of retrying forever.
            self.stats.missing_local += 1
            log.error("registered file %s is missing locally; it cannot be uploaded", rec.key)
            state.mark_deleted(rec.key, self._clock())
            return
        s3 = self._s3()
        key = self.prefix + rec.key
        existing = self._head(s3, key)
        if existing is not None:
            if not self._same(s3, key, existing, rec):
                self._upload_one(self._rename_after_conflict(rec))
                return
            self.stats.already_present += 1
            log.info("s3://%s/%s already holds this file; recording it as uploaded", self.bucket, key)
        else:
            sha_b64 = base64.b64encode(bytes.fromhex(rec.sha256)).decode()
            try:
                with open(path, "rb") as body:
                    s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentLength=rec.size,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=sha_b64,
                        IfNoneMatch="*",  # S3 itself refuses to overwrite an existing key
                        ContentType="application/vnd.apache.parquet",
                    )
            except ClientError as exc:
                if _code(exc) not in _PRECONDITION:
                    raise
                # Someone (an earlier attempt of ours, most likely) got there first: compare.
                existing = self._head(s3, key)
                if existing is None or not self._same(s3, key, existing, rec):
                    raise UploadConflictError(f"{key}: exists with different content") from exc
            else:
                existing = self._head(s3, key)
                if existing is None or not self._same(s3, key, existing, rec):
                    raise UploadConflictError(f"{key}: stored object does not match the local file")
            self.stats.uploads_ok += 1
        now = self._clock()
        state.mark_uploaded(rec.key, now)
        self.stats.last_upload_ns = now

    def _head(self, s3: Any, key: str) -> dict[str, Any] | None:
        try:
            return s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")  # type: ignore[no-any-return]
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise

    def _same(self, s3: Any, key: str, head: dict[str, Any], rec: FileRecord) -> bool:
        if int(head.get("ContentLength", -1)) != rec.size:
            return False
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum:  # "-N" marks a composite multipart checksum
            return bool(base64.b64decode(checksum).hex() == rec.sha256)
        etag = str(head.get("ETag", "")).strip('"')
        if etag and "-" not in etag:
            return etag == rec.md5
        # No usable checksum (multipart, SSE-KMS): compare the bytes themselves.
        sha = hashlib.sha256()
        body = s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            sha.update(chunk)
        return sha.hexdigest() == rec.sha256

    def _rename_after_conflict(self, rec: FileRecord) -> FileRecord:
        """Different bytes already in S3 under our name (e.g. the state db was lost): keep both
        by moving ours to the next free number, checked against S3 as well."""
        state = self._state
        assert state is not None
        self.stats.conflicts += 1
        cell = parse_dir(rec.dir)
        if cell is None:
            raise UploadConflictError(f"{rec.key}: conflict, and the path is not a lake path")
        s3 = self._s3()
        number = next_number(self.layout, state, cell)
        while self._head(s3, self.prefix + cell.data_key(number)) is not None:
            number += 1
        new = FileRecord(cell.data_key(number), rec.size, rec.sha256, rec.md5, rec.rows, rec.created_ns)
        os.link(self.layout.lake / rec.key, self.layout.lake / new.key)  # EEXIST, never overwrite
        state.rekey(rec.key, new)
        (self.layout.lake / rec.key).unlink()
        fsync_dir((self.layout.lake / new.key).parent)
        log.error("s3 key %s holds different content: local file renamed to %s", rec.key, new.key)
        return new

    def _retention(self, state: StateStore) -> int:
        deleted = 0
        for key in state.uploaded_before(self._clock() - self.retention_ns):
            path = self.layout.lake / key
            path.unlink(missing_ok=True)
            state.mark_deleted(key, self._clock())
            deleted += 1
            with contextlib.suppress(OSError):  # prune now-empty hive directories
                parent = path.parent
                while parent != self.layout.lake and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
        self.stats.files_deleted += deleted
        return deleted

    def _s3(self) -> Any:
        if self._client is None:
            session = boto3.session.Session()
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
        return self._client

    # ---- helpers --------------------------------------------------------------------------

    async def _get_state(self) -> StateStore:
        if self._state is None:
            self._state = await asyncio.to_thread(StateStore, self.layout.state / "lake.db")
        return self._state

    def _set_pending(self, pending: list[FileRecord]) -> None:
        self.stats.files_pending = len(pending)
        self.stats.bytes_pending = sum(r.size for r in pending)

    async def _unless_stopped(self, work: Coroutine[Any, Any, bool], stop: asyncio.Event) -> bool | None:
        """`work`'s result, or None if `stop` came first (then the work is cancelled; an S3 call
        in flight is abandoned in its daemon thread)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.stats.abandoned += 1
        return None

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._kick.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()


def normalise_prefix(prefix: str) -> str:
    """'' or 'a/b/': how the key prefix is put in front of every lake key."""
    return prefix.strip("/") + "/" if prefix.strip("/") else ""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
