"""Peers without our CA's certificate are refused at the handshake; bad frames close only their
own connection. Every case leaves a log line and a counter, and the receiver keeps serving."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from polymm.relay import tls, wire
from polymm.relay.events import Bbo
from polymm.sim.binance_ws import BinanceSim
from tests.conftest import eventually
from tests.relay.conftest import running_sender, sender_config


def client_ctx(certs: Path, with_cert: bool = True, ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca or certs / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    return ctx


async def open_mtls(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read until the server ends the connection; hanging for 5 s raises TimeoutError and fails."""
    try:
        async with asyncio.timeout(5):
            while await reader.read(4096):
                pass
    except (ConnectionError, ssl.SSLError):
        return True
    return reader.at_eof()


async def assert_refused(port: int, ctx: ssl.SSLContext) -> None:
    """In TLS 1.3 the client may finish its side before the server rejects its certificate;
    either way the connection must end without the server accepting a byte."""
    try:
        reader, writer = await open_mtls(port, ctx)
    except (ssl.SSLError, ConnectionError):
        return
    writer.write(wire.encode_heartbeat(1, 1))
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await reader.readexactly(1)
    writer.close()


async def test_peer_without_client_certificate_is_refused(certs: Path, receiver, caplog):
    rx, _ = receiver
    caplog.set_level(logging.WARNING)
    await assert_refused(rx.port, client_ctx(certs, with_cert=False))
    await eventually(lambda: rx.stats.handshake_failures == 1, what="handshake failure counted")
    assert rx.stats.connections == 0 and rx.stats.frames == 0
    assert "refused connection from 127.0.0.1" in caplog.text
    assert "did not return a certificate" in caplog.text


async def test_certificate_from_another_ca_is_refused(certs: Path, foreign_certs: Path, receiver, caplog):
    rx, _ = receiver
    caplog.set_level(logging.WARNING)
    impostor = client_ctx(
        foreign_certs, ca=certs / "ca.crt"
    )  # trusts our server, but its own cert is foreign
    await assert_refused(rx.port, impostor)
    await eventually(lambda: rx.stats.handshake_failures == 1, what="handshake failure counted")
    assert rx.stats.connections == 0
    assert "certificate verify failed" in caplog.text or "unknown ca" in caplog.text.lower()


async def test_plaintext_garbage_is_refused(receiver):
    rx, _ = receiver
    reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
    await writer.drain()
    assert await closed_by_server(reader)
    await eventually(lambda: rx.stats.handshake_failures == 1, what="garbage refused")
    writer.close()


async def test_sender_refuses_a_receiver_signed_by_another_ca(certs: Path, foreign_certs: Path, binance):
    from tests.relay.conftest import make_receiver

    rx, inbox = make_receiver(foreign_certs)  # the impostor receiver
    await rx.start()
    try:
        async with running_sender(sender_config(certs, rx.port, binance)) as sender:
            await eventually(
                lambda: sender.link.stats.connect_failures >= 1, what="sender refused the server"
            )
            assert not sender.link.connected
            await binance.push_bbo("btcusdt", 1, 2)
            await asyncio.sleep(0.2)
        assert inbox == [] and rx.stats.connections == 0
    finally:
        await rx.close()


async def test_sender_checks_the_receiver_name(certs: Path, receiver, binance: BinanceSim):
    rx, _ = receiver
    config = sender_config(certs, rx.port, binance, TLS_SERVER_NAME="amsterdam.example")
    async with running_sender(config) as sender:
        await eventually(lambda: sender.link.stats.connect_failures >= 1, what="name mismatch refused")
        assert not sender.link.connected


@pytest.mark.parametrize(
    "payload, counter",
    [
        (b"\x00\x00\x10\x00" + b"\x01" * 64, "oversized"),  # claims a 1 MiB frame
        (b"\x05\x00\x00\x00garbage-garbage", "malformed"),  # shorter than any header
        (wire.encode_heartbeat(1, 1)[:4] + b"\x07" + wire.encode_heartbeat(1, 1)[5:], "malformed"),
    ],
)
async def test_bad_frames_close_that_connection_only(
    certs: Path, receiver, caplog, payload: bytes, counter: str
):
    rx, inbox = receiver
    caplog.set_level(logging.WARNING)
    reader, writer = await open_mtls(rx.port, client_ctx(certs))
    writer.write(wire.encode_heartbeat(1, 1) + payload)
    await writer.drain()
    await eventually(lambda: getattr(rx.stats, counter) == 1, what=f"{counter} counted")
    assert await closed_by_server(reader)
    assert "closing connection from 127.0.0.1" in caplog.text
    writer.close()
    # the receiver still serves a well-behaved sender
    reader, writer = await open_mtls(rx.port, client_ctx(certs))
    bbo = Bbo("BTCUSDT", 1, 0, 0, 7, 1.0, 1.0, 2.0, 1.0)
    writer.write(wire.encode_bbo(1, 2, bbo))
    await writer.drain()
    await eventually(lambda: len(inbox.bbo()) == 1, what="good frame after a bad peer")
    assert inbox.bbo()[0].update_id == 7
    assert rx.stats.truncated == 0  # the refused frame is not also counted as truncated
    writer.close()


async def test_truncated_frame_is_counted(certs: Path, receiver):
    rx, _ = receiver
    _, writer = await open_mtls(rx.port, client_ctx(certs))
    writer.write(wire.encode_bbo(1, 1, Bbo("BTCUSDT", 1, 0, 0, 7, 1.0, 1.0, 2.0, 1.0))[:20])
    await writer.drain()
    await eventually(lambda: rx.stats.connections == 1)
    writer.close()
    await eventually(lambda: rx.stats.truncated == 1, what="truncated frame counted")


async def test_consumer_errors_are_counted_not_fatal(certs: Path, receiver):
    rx, inbox = receiver
    calls = []

    def flaky(event):
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")
        inbox.append(event)

    rx.on_event = flaky
    _, writer = await open_mtls(rx.port, client_ctx(certs))
    for seq in (1, 2):
        writer.write(wire.encode_bbo(seq, 1, Bbo("BTCUSDT", 1, 0, 0, seq, 1.0, 1.0, 2.0, 1.0)))
    await writer.drain()
    await eventually(lambda: len(inbox) == 1, what="second event delivered")
    assert rx.stats.callback_errors == 1
    writer.close()


def test_tls_contexts_require_tls13_and_client_certs(certs: Path):
    server = tls.server_context(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    client = tls.client_context(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    assert server.minimum_version == ssl.TLSVersion.TLSv1_3 == client.minimum_version
    assert server.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
