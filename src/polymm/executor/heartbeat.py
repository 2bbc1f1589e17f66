"""Dead-man switch: POST /v1/heartbeats every ~5 s, chaining heartbeat_id.

The exchange cancels every order of the API key when no heartbeat is accepted for 10 s. We send
every `interval_s` and call our own failure `threshold_s` (default 7 s) early, so the executor
stops quoting and cancels before the exchange does it for us and before we quote blind.

Chaining: each accepted heartbeat returns the id to send next. If the server refuses the id we
sent, it may say which one it expects; we adopt it, else start a fresh chain with "".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from polymm.service.backoff import sleep_or_stop
from polymm.service.logs import Throttle

log = logging.getLogger("polymm.executor.heartbeat")


class _Result(Protocol):
    ok: bool
    data: Any
    error: str


class _Gateway(Protocol):
    async def heartbeat(self, heartbeat_id: str) -> Any: ...


class Heartbeater:
    def __init__(
        self,
        gateway: _Gateway,
        *,
        interval_s: float = 5.0,
        threshold_s: float = 7.0,
        on_fail: Callable[[str], None] | None = None,
        on_recover: Callable[[], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.gateway = gateway
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self._on_fail = on_fail
        self._on_recover = on_recover
        self._clock = clock
        self._throttle = Throttle(10.0)
        self.heartbeat_id = ""
        self.started_ns = 0
        self.last_ok_ns = 0
        self.sent = 0
        self.failures = 0
        self.failed = False  # currently past the threshold

    def ok(self, now_ns: int | None = None) -> bool:
        """True while the last accepted heartbeat is younger than the threshold. Before the first
        one, the start time counts, so start-up gets one threshold of grace."""
        now = self._clock() if now_ns is None else now_ns
        ref = self.last_ok_ns or self.started_ns
        return ref > 0 and (now - ref) <= self.threshold_s * 1e9

    async def run(self, stop: asyncio.Event) -> None:
        self.started_ns = self._clock()
        watchdog = asyncio.create_task(self._watch(stop))
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                await self.beat()
                # Keep the cadence from send to send, so a slow answer does not stretch the gap.
                if await sleep_or_stop(stop, max(0.0, self.interval_s - (time.monotonic() - t0))):
                    break
        finally:
            watchdog.cancel()

    async def beat(self) -> bool:
        """Send one heartbeat; True if accepted."""
        res = await self._send()
        if res.ok:
            return True
        expected = _expected_id(res)
        self.heartbeat_id = expected or ""
        self._throttle.warn(log, "hb", "heartbeat refused: %s (restarting chain)", res.error)
        if expected is not None:
            # The server told us the id it wants: retry at once rather than lose an interval.
            return await self._retry_once()
        self._check()
        return False

    async def _retry_once(self) -> bool:
        if (await self._send()).ok:
            return True
        self.heartbeat_id = ""
        self._check()
        return False

    async def _send(self) -> _Result:
        """One POST; on success chain the returned id and note the time, else count a failure."""
        self.sent += 1
        res: _Result = await self.gateway.heartbeat(self.heartbeat_id)
        if res.ok:
            data = res.data if isinstance(res.data, dict) else {}
            self.heartbeat_id = str(data.get("heartbeat_id") or "")
            self.last_ok_ns = self._clock()
            self._check()
        else:
            self.failures += 1
        return res

    async def _watch(self, stop: asyncio.Event) -> None:
        # Separate from the sender: a hung request must still trip the failure on time.
        while not await sleep_or_stop(stop, 0.25):
            self._check()

    def _check(self) -> None:
        healthy = self.ok()
        if not healthy and not self.failed:
            self.failed = True
            log.error("heartbeat failed for more than %.1fs", self.threshold_s)
            if self._on_fail is not None:
                self._on_fail(f"no accepted heartbeat for {self.threshold_s}s")
        elif healthy and self.failed:
            self.failed = False
            log.warning("heartbeat recovered")
            if self._on_recover is not None:
                self._on_recover()


def _expected_id(res: _Result) -> str | None:
    """The id the server expects, if its refusal carries one."""
    data = res.data
    if isinstance(data, dict) and data.get("heartbeat_id"):
        return str(data["heartbeat_id"])
    return None
