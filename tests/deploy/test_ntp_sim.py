"""The NTP sim (the VM bed's time source) answers like an NTP server: server mode, the client's
transmit time echoed as originate, its own clock in receive/transmit; anything else is ignored."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

from polymm.sim.ntp import NTP_EPOCH_OFFSET, reply
from polymm.sim.ports import free_port


def _request(transmit: int) -> bytes:
    return bytes([0x23]) + bytes(39) + transmit.to_bytes(8, "big")  # version 4, client mode


def _unix(ntp: int) -> float:
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def test_the_sim_answers_a_client_over_udp() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "polymm.sim.ntp", "--port", str(port)])
    try:
        answer = b""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            for _ in range(40):  # the process needs a moment to bind
                sock.sendto(_request(0x1234_5678_9ABC_DEF0), ("127.0.0.1", port))
                try:
                    answer = sock.recv(512)
                    break
                except (TimeoutError, ConnectionRefusedError):
                    time.sleep(0.1)
        assert len(answer) == 48
        first, stratum = answer[0], answer[1]
        assert (first >> 6, (first >> 3) & 7, first & 7) == (0, 4, 4)  # synchronised, v4, server
        assert stratum == 1
        originate, received, transmitted = struct.unpack("!QQQ", answer[24:48])
        assert originate == 0x1234_5678_9ABC_DEF0
        assert abs(_unix(transmitted) - time.time()) < 2
        assert received <= transmitted
    finally:
        proc.terminate()
        proc.wait(5)


def test_anything_but_a_client_request_gets_no_answer() -> None:
    now = time.time()
    assert reply(b"\x23" * 10, now, now) is None  # short
    assert reply(bytes([0x24]) + bytes(47), now, now) is None  # server mode
    assert reply(bytes([0x03]) + bytes(47), now, now) is None  # version 0
    assert reply(_request(1), now, now) is not None
