"""One line per event on stdout, for journald.

journald adds its own timestamp, but the line also carries UTC time with milliseconds so that
logs copied off a host still line up with market data.
"""

from __future__ import annotations

import logging
import os
import sys
import time


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(service: str, level: str | None = None) -> logging.Logger:
    """Route every logger to one unbuffered stdout handler, once per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    # The websockets library logs every handshake at INFO; our own lines say what matters.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise here
    return logging.getLogger(service)


def utc_ms(ts_ns: int) -> str:
    """12:00:01.234Z: a unix time in ns as UTC wall time with milliseconds (for human-read lines)."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return f"{time.strftime('%H:%M:%S', time.gmtime(seconds))}.{ns // 1_000_000:03d}Z"


class Throttle:
    """Lets a repeated warning through at most once per interval, counting what it held back,
    so a flood of bad input leaves a clear trace without flooding the journal."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, logger: logging.Logger, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" (+{held} similar since last report)" if held else ""
        logger.warning(msg + suffix, *args, exc_info=exc_info)
