"""With an ack gate (data-collector), frames are acknowledged only once the owner has made them
durable; on shutdown the receiver stops reading, lets the owner persist, then acks and hangs up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polymm.relay import wire
from polymm.relay.events import Bbo
from tests.conftest import eventually
from tests.relay.conftest import make_receiver
from tests.relay.test_tls_and_bad_input import client_ctx, open_mtls


class AckReader:
    """Collects the ACK frames a receiver sends back to our raw sender connection."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.acks: list[int] = []
        self.closed = False
        self._reader = reader
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        decoder = wire.FrameDecoder()
        try:
            while data := await self._reader.read(4096):
                self.acks += [f.seq for f in decoder.feed(data) if f.kind == wire.ACK]
        except ConnectionError:
            pass
        self.closed = True


def bbo(seq: int) -> bytes:
    return wire.encode_bbo(seq, 1, Bbo("BTCUSDT", 1, 0, 0, seq, 1.0, 1.0, 2.0, 1.0))


async def test_acks_wait_for_the_owner_to_make_frames_durable(certs: Path):
    durable = 0
    rx, inbox = make_receiver(certs, ack_interval_s=0.02)
    rx.ack_gate = lambda: durable
    await rx.start()
    reader, writer = await open_mtls(rx.port, client_ctx(certs))
    acks = AckReader(reader)
    writer.write(bbo(1) + bbo(2) + bbo(3))
    await eventually(lambda: len(inbox) == 3, what="delivered")
    await asyncio.sleep(0.2)  # ten ack ticks: delivered, but not durable yet
    assert acks.acks and max(acks.acks) == 0

    durable = rx.delivered  # the owner's flush covered everything delivered so far
    await eventually(lambda: acks.acks[-1] == 3, what="ack after the flush")

    writer.write(bbo(4) + bbo(5))
    await eventually(lambda: len(inbox) == 5, what="delivered")
    rx.pause()
    writer.write(bbo(6))  # arrives after the pause: not read, so never acknowledged
    await asyncio.sleep(0.1)
    assert len(inbox) == 5
    durable = rx.delivered  # the owner's final flush
    await rx.close(final_ack=True)
    await eventually(lambda: acks.closed, what="connection closed")
    assert acks.acks[-1] == 5  # the sender keeps (and replays) frame 6 only
    writer.close()
