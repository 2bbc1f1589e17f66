"""systemd notify protocol: READY, WATCHDOG and STATUS through sdnotify.

Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op, so services and tests run the
same code path.
"""

from __future__ import annotations

import os

import sdnotify


class Notifier:
    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self._enabled else None
        self._ready = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str | None = None) -> None:
        if not self._ready:
            self._ready = True
            self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self) -> None:
        self._send("STOPPING=1")


def watchdog_interval_s(default: float = 5.0) -> float:
    """Half the unit's WatchdogSec (systemd passes it as WATCHDOG_USEC), else the default."""
    usec = os.environ.get("WATCHDOG_USEC")
    if usec and usec.isdigit() and int(usec) > 0:
        return int(usec) / 2_000_000
    return default
