"""A local NTP server (RFC 5905 server mode over UDP) serving this machine's clock.

The VM test bed has no route to a public pool, so chrony on the guests would stay "Not
synchronised" and playbooks/verify.yml's clock check could never pass for real. This server answers
client-mode (3) requests with server-mode (4) replies as stratum 1: originate = the client's
transmit time, receive and transmit stamped here. chrony accepts it like any other source.

    python -m polymm.sim.ntp --port 12323
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import struct
import time

log = logging.getLogger("polymm.sim.ntp")

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
PACKET = struct.Struct("!BBbbII4sQQQQ")  # header, ref id, then ref/originate/receive/transmit stamps
MODE_CLIENT, MODE_SERVER = 3, 4


def ntp_timestamp(unix_s: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point from 1900)."""
    return int((unix_s + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def reply(request: bytes, received_s: float, now_s: float) -> bytes | None:
    """The server-mode reply to one request, or None for anything that is not a client request."""
    if len(request) < PACKET.size:
        return None
    first = request[0]
    version, mode = (first >> 3) & 0x7, first & 0x7
    if mode != MODE_CLIENT or not 1 <= version <= 4:
        return None
    client_transmit = int.from_bytes(request[40:48], "big")
    poll = request[2] if request[2] < 128 else 6
    return PACKET.pack(
        (0 << 6) | (version << 3) | MODE_SERVER,  # leap indicator 0: synchronised
        1,  # stratum 1: this machine's clock is the reference
        poll,
        -20,  # precision, about 1 us
        0,  # root delay
        0x10,  # root dispersion, 16.16 fixed point (~0.25 ms)
        b"LOCL",
        ntp_timestamp(now_s),  # reference time: the clock is always "just set"
        client_transmit,
        ntp_timestamp(received_s),
        ntp_timestamp(now_s),
    )


class NtpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.answered = 0
        self.ignored = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # a datagram transport (not a DatagramTransport subclass)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        received = time.time()
        answer = reply(data, received, time.time())
        if answer is None or self.transport is None:
            self.ignored += 1
            return
        self.transport.sendto(answer, addr)  # type: ignore[attr-defined]
        self.answered += 1


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(NtpProtocol, local_addr=(host, port))
    log.info("ntp sim on udp %s:%d", host, port)
    try:
        while True:
            await asyncio.sleep(60)
            log.info("ntp sim: %d answered, %d ignored", protocol.answered, protocol.ignored)
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=12323)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
