"""polymm-lake-salvage DIR: ship what a dead data-collector's disk still holds to S3, exactly once.

DIR is a copy of the old host's DATA_DIR (journals, Parquet files and lake.db together). The old
directory is treated as a lake of its own: its state store says what it had already uploaded, so
nothing is sent twice; journals a crash left behind are compacted (`Lake.recover`); then the
ordinary uploader runs, whose HEAD + `If-None-Match: *` never overwrites an object the new host
(or the old one) already put under the same key: a clash gets the next free `data_NNN`.

S3 settings are data-collector's own (S3_BUCKET, S3_REGION, S3_ENDPOINT_URL, S3_PREFIX, credentials
from boto3's chain), so it runs with the service's environment file. One summary line; exit 0 when
every file is in S3, 1 when some stay on disk (run it again), 2 for a bad setting or directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from polymm.collector.config import S3Target
from polymm.collector.service import check_s3
from polymm.lake.lake import Lake
from polymm.lake.partition import Layout
from polymm.lake.uploader import S3Uploader
from polymm.service.config import ConfigError
from polymm.service.logs import setup_logging
from polymm.service.startup import StartupError

log = logging.getLogger("polymm.salvage")
# Uploaded files stay in the salvage copy: the operator (or salvage-lake.yml) removes it once complete.
KEEP_LOCAL_S = 10 * 365 * 86400.0


@dataclass
class SalvageReport:
    directory: str
    rows_compacted: int  # rows recovered from journals a crash left uncompacted
    files_compacted: int
    uploaded: int
    already_in_s3: int  # identical bytes were there (the old host's PUT landed, its record did not)
    renamed: int  # a different object held the key: ours moved to the next free name
    left_on_disk: int

    @property
    def complete(self) -> bool:
        return self.left_on_disk == 0


def check_directory(path: Path) -> None:
    layout = Layout(path)
    if not path.is_dir():
        raise ConfigError(f"salvage directory {str(path)!r} does not exist")
    if not (layout.state / "lake.db").exists() and not layout.journal.is_dir() and not layout.lake.is_dir():
        raise ConfigError(f"{str(path)!r} holds no lake (no state/lake.db, journal/, lake/): not a DATA_DIR")


async def salvage(path: Path, target: S3Target, *, upload_timeout_s: float) -> SalvageReport:
    """Compact the old journals, then upload everything the old state store has not confirmed."""
    lake = Lake(path)  # takes the directory's lock: a live collector's DATA_DIR is refused
    results = await lake.recover()
    await lake.close()
    uploader = S3Uploader(
        path, target.bucket, target.region, endpoint_url=target.endpoint_url, prefix=target.prefix,
        retention_s=KEEP_LOCAL_S, upload_on_compact=False,
    )  # fmt: skip
    await uploader.final_upload(upload_timeout_s)
    stats = uploader.stats
    return SalvageReport(
        directory=str(path),
        rows_compacted=sum(r.rows for r in results),
        files_compacted=sum(1 for r in results if r.key),
        uploaded=stats.uploads_ok,
        already_in_s3=stats.already_present,
        renamed=stats.conflicts,
        left_on_disk=stats.files_pending,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a copy of the old host's DATA_DIR")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the uploads (default 600)")
    args = parser.parse_args(argv)
    setup_logging("lake-salvage")
    try:
        check_directory(args.directory)
        target = S3Target.from_env()
        check_s3(target)
        report = asyncio.run(salvage(args.directory, target, upload_timeout_s=args.timeout))
    except StartupError as exc:  # ConfigError, StorageError (LakeLockedError: a live DATA_DIR)
        print(f"polymm-lake-salvage: {exc}", file=sys.stderr)
        return 2
    print("salvage " + json.dumps({**asdict(report), "complete": report.complete}), flush=True)
    if not report.complete:
        log.error("%d files are still only in %s: run the salvage again", report.left_on_disk, args.directory)
    return 0 if report.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
