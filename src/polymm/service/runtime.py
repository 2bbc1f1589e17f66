"""Run a service's main coroutine on uvloop and turn SIGTERM/SIGINT into a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop

from polymm.service.config import ConfigError

log = logging.getLogger("polymm.runtime")

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("received %s, stopping", sig.name)
    stop.set()


def run_service(build: Callable[[], ServiceMain]) -> int:
    """Build the service from config (ConfigError -> exit 2 with one line), then run it on uvloop."""
    try:
        serve = build()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(stop)

    uvloop.run(main())
    return 0
