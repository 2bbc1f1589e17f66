"""Free-disk watch on the data directory: ok / warn / degraded / critical.

The lake consults `level` to shed load before the disk is full: degraded drops low-priority
tables (Polymarket L2), critical keeps only collector events. The usage function and thresholds
are injectable so tests can simulate a full disk.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from polymm.service.backoff import sleep_or_stop

log = logging.getLogger(__name__)


class Usage(NamedTuple):
    total: int
    used: int
    free: int


UsageFn = Callable[[str], Usage]


class DiskLevel(enum.IntEnum):
    OK = 0
    WARN = 1
    DEGRADED = 2
    CRITICAL = 3


class DiskWatch:
    def __init__(
        self,
        path: Path | str,
        *,
        warn_pct: float = 80.0,
        degraded_pct: float = 90.0,
        critical_pct: float = 97.0,
        interval_s: float = 5.0,
        log_every_s: float = 60.0,
        usage_fn: UsageFn = shutil.disk_usage,  # type: ignore[assignment]
    ) -> None:
        if not warn_pct <= degraded_pct <= critical_pct:
            raise ValueError("disk thresholds must satisfy warn <= degraded <= critical")
        self.path = str(path)
        self.warn_pct = warn_pct
        self.degraded_pct = degraded_pct
        self.critical_pct = critical_pct
        self.interval_s = interval_s
        self.log_every_s = log_every_s
        self._usage_fn = usage_fn
        self.level = DiskLevel.OK
        self.used_pct = 0.0
        self.free_bytes = 0
        self.checks = 0
        self.check_errors = 0
        self.warnings = 0  # checks that found usage at or above warn_pct
        self._last_log = -float("inf")

    def classify(self, used_pct: float) -> DiskLevel:
        if used_pct >= self.critical_pct:
            return DiskLevel.CRITICAL
        if used_pct >= self.degraded_pct:
            return DiskLevel.DEGRADED
        if used_pct >= self.warn_pct:
            return DiskLevel.WARN
        return DiskLevel.OK

    async def check(self) -> DiskLevel:
        """One measurement (in a thread: statvfs can stall on a sick disk)."""
        try:
            usage = await asyncio.to_thread(self._usage_fn, self.path)
        except OSError as exc:
            self.check_errors += 1
            log.error("disk usage of %s unavailable: %s", self.path, exc)
            return self.level
        self.apply(usage)
        return self.level

    def apply(self, usage: Usage) -> None:
        self.checks += 1
        self.used_pct = 100.0 * usage.used / usage.total if usage.total else 100.0
        self.free_bytes = usage.free
        level = self.classify(self.used_pct)
        changed = level != self.level
        self.level = level
        if level >= DiskLevel.WARN:
            self.warnings += 1
        now = time.monotonic()
        if changed or (level >= DiskLevel.WARN and now - self._last_log >= self.log_every_s):
            self._last_log = now
            logf = log.info if level == DiskLevel.OK else log.error
            logf(
                "disk %s %.1f%% used (%d MB free): level %s",
                self.path, self.used_pct, usage.free // 1_000_000, level.name.lower(),
            )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            await self.check()
            if await sleep_or_stop(stop, self.interval_s):
                return

    def snapshot(self) -> dict[str, object]:
        return {
            "level": self.level.name.lower(),
            "used_pct": round(self.used_pct, 2),
            "free_bytes": self.free_bytes,
            "checks": self.checks,
            "check_errors": self.check_errors,
            "warnings": self.warnings,
        }
