"""TLS 1.3 contexts for the relay: both ends present a certificate signed by the relay's own CA."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Receiver side: refuses any peer without a client certificate from our CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Sender side: checks the receiver's certificate and name against our CA only (not the system store)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """Common name of the verified peer certificate, for logs."""
    if ssl_object is None:
        return "?"
    cert = ssl_object.getpeercert()
    if not cert:
        return "?"
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"
