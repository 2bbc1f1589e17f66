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
    return logging.getLogger(service)
