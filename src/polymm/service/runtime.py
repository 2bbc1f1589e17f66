"""Run a service's main coroutine on uvloop and turn SIGTERM/SIGINT into a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop

from polymm.service.startup import EXIT_STARTUP, StartupError

log = logging.getLogger("polymm.runtime")

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("received %s, stopping", sig.name)
    stop.set()


def refuse_start(service: str, exc: StartupError) -> int:
    """One line on stderr naming the cause, e.g. 'data-collector: cannot listen on 0.0.0.0:9001:
    address already in use' or 'config error: AMS_PORT='x' is not an integer'; returns exit code 2."""
    print(f"{exc.label or service}: {exc}", file=sys.stderr, flush=True)
    return EXIT_STARTUP


def run_service(build: Callable[[], ServiceMain], service: str = "polymm") -> int:
    """Build the service from config, then run it on uvloop. A StartupError, raised while building
    or by the service before it is up (binding its port), ends it with one line and exit 2."""
    try:
        serve = build()
    except StartupError as exc:
        return refuse_start(service, exc)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(stop)

    try:
        uvloop.run(main())
    except StartupError as exc:
        return refuse_start(service, exc)
    return 0
