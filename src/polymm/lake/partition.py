"""Hive paths: which hour a receive time falls in, and the relative key of every lake file.

The same relative key is used under `<data_dir>/lake/`, under `<data_dir>/journal/` (as a
directory) and in S3, so a file's place never has to be looked up anywhere else.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from pathlib import Path

from polymm.lake.schemas import TABLES, TableSpec

NS_PER_HOUR = 3_600_000_000_000
_DATA_RE = re.compile(r"^data_(\d{3,})\.parquet$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def hour_of(ts_ns: int) -> int:
    """Hours since the epoch (UTC) for a ns timestamp."""
    return ts_ns // NS_PER_HOUR


def hour_start_ns(hour: int) -> int:
    return hour * NS_PER_HOUR


def check_partition_value(value: str) -> None:
    """Refuse values that would escape the directory tree or break hive parsing."""
    if not _SAFE_VALUE.match(value) or value in (".", ".."):
        raise ValueError(f"unsafe partition value {value!r}")


@dataclass(frozen=True, order=True)
class PartKey:
    """One (table, partition value, hour) cell: one journal set and one or more data files."""

    table: str
    partition: str
    hour: int

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.table]

    @property
    def dir(self) -> str:
        """Relative hive directory, e.g. binance/bbo/symbol=BTCUSDT/date=2026-01-19/hour=00."""
        spec = self.spec
        tm = time.gmtime(self.hour * 3600)
        date = f"date={tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}/hour={tm.tm_hour:02d}"
        if spec.partition_key is None:
            return f"{spec.prefix}/{date}"
        return f"{spec.prefix}/{spec.partition_key}={self.partition}/{date}"

    def data_key(self, number: int) -> str:
        return f"{self.dir}/data_{number:03d}.parquet"


def data_number(name: str) -> int | None:
    """NNN of a `data_NNN.parquet` file name, None for anything else."""
    m = _DATA_RE.match(name)
    return int(m.group(1)) if m else None


def parse_dir(rel_dir: str) -> PartKey | None:
    """Inverse of `PartKey.dir`; None when the path is not a lake directory."""
    parts = rel_dir.strip("/").split("/")
    for spec in TABLES.values():
        pre = spec.prefix.split("/")
        rest = parts[len(pre) :]
        if parts[: len(pre)] != pre:
            continue
        partition = ""
        if spec.partition_key is not None:
            if len(rest) != 3 or not rest[0].startswith(spec.partition_key + "="):
                continue
            partition = rest[0].split("=", 1)[1]
            rest = rest[1:]
        if len(rest) != 2 or not rest[0].startswith("date=") or not rest[1].startswith("hour="):
            continue
        try:
            tm = time.strptime(rest[0][5:] + " " + rest[1][5:], "%Y-%m-%d %H")
        except ValueError:
            continue
        hour = calendar.timegm(tm) // 3600
        key = PartKey(spec.name, partition, hour)
        if key.dir == "/".join(parts):
            return key
    return None


@dataclass(frozen=True)
class Layout:
    """Where everything lives under the collector's data directory."""

    data_dir: Path

    @property
    def journal(self) -> Path:
        return self.data_dir / "journal"

    @property
    def lake(self) -> Path:
        return self.data_dir / "lake"

    @property
    def state(self) -> Path:
        return self.data_dir / "state"

    @property
    def quarantine(self) -> Path:
        """Journals with a damaged tail, kept (after their good prefix is compacted) for forensics."""
        return self.data_dir / "quarantine"
