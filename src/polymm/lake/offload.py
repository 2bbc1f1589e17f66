"""Run a blocking call in a daemon thread that the caller may abandon.

`asyncio.to_thread` uses the loop's default executor, whose threads are joined when the loop
shuts down and again at interpreter exit: one boto3 call stuck on a frozen S3 (read timeout x
attempts) then keeps the process alive past systemd's stop timeout. A daemon thread is not
joined: when the awaiting task is cancelled (a stop deadline), the call is left to finish or die
with the process. Use it only for work that is safe to cut at any point (an upload that is
retried from lake.db at the next start), never for writes that must complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[..., T], *args: object, name: str = "offload") -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller gave up (cancelled) meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
