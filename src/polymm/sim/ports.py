"""Loopback ports for local stacks (demo, tests, benchmarks)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(*names: str) -> dict[str, int]:
    """One free port per name, all different: every socket stays bound until all are picked (one
    `free_port()` after another can return the same port twice; seen in the demo: the CLOB sim and
    data-collector both got 60107)."""
    socks: list[socket.socket] = []
    try:
        for _ in names:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return {name: int(s.getsockname()[1]) for name, s in zip(names, socks, strict=True)}
    finally:
        for s in socks:
            s.close()
