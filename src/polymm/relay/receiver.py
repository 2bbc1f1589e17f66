"""Amsterdam side of the relay: a mutual-TLS server that decodes frames and hands events on.

Embedded by trading-executor and data-collector. Events reach `on_event` synchronously on the
event loop, in arrival order, with `arrival_ts` stamped. The receiver acknowledges the highest
sequence number it has handed over, so the sender can replay trades lost in a broken connection;
replayed trades are de-duplicated here by trade id.

An owner that persists events (data-collector) passes `ack_gate`: then a frame is acknowledged
only once the owner reports everything delivered up to it durable (see `delivered`), so a crash
of the owner loses nothing the sender still holds: it replays what was not acknowledged.

Sockets are accepted by hand and handed to loop.connect_accepted_socket(ssl=...), which raises
when the TLS handshake fails; create_server(ssl=...) would drop such peers silently, and an
operator needs to see (and count) who was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

import msgspec

from polymm.relay import wire
from polymm.relay.events import Bbo, Notice, RelayEvent, Trade
from polymm.relay.tls import peer_name
from polymm.service.logs import Throttle
from polymm.service.metrics import LatencyWindow
from polymm.service.startup import listen_error

log = logging.getLogger("polymm.receiver")


class ReceiverStats(msgspec.Struct):
    connections: int = 0
    active: int = 0
    handshake_failures: int = 0
    frames: int = 0
    bbo: int = 0
    trades: int = 0
    notices: int = 0
    heartbeats: int = 0
    malformed: int = 0
    oversized: int = 0
    truncated: int = 0
    idle_closes: int = 0
    seq_gaps: int = 0
    duplicates: int = 0
    trade_id_gaps: int = 0
    trades_missing: int = 0
    callback_errors: int = 0
    last_event_ns: int = 0


class RelayReceiver:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        on_event: Callable[[RelayEvent], None],
        *,
        max_frame: int = wire.MAX_FRAME,
        idle_timeout_s: float = 5.0,
        ack_interval_s: float = 0.1,
        handshake_timeout_s: float = 5.0,
        ack_gate: Callable[[], int] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self.on_event = on_event
        self.max_frame = max_frame
        self.idle_timeout_s = idle_timeout_s
        self.ack_interval_s = ack_interval_s
        self.handshake_timeout_s = handshake_timeout_s
        # ack_gate() returns the value `delivered` had when the owner's last durable write began.
        self.ack_gate = ack_gate
        self.delivered = 0  # frames handed to on_event so far, over all connections
        self.stats = ReceiverStats()
        self.hop_latency = LatencyWindow()  # sender write -> receiver decode
        self.sender_latency = LatencyWindow()  # sender's Binance receipt -> its write
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._connections: set[_SenderConnection] = set()
        self._max_trade_id: dict[tuple[str, bool], int] = {}
        self._seen_notices: OrderedDict[str, None] = OrderedDict()
        self._throttle = Throttle()

    def bind(self) -> None:
        """Open the listening socket (no connection is accepted before `start`). Call it before
        anything else starts so a port in use or an unresolvable host ends start-up at once:
        raises ListenError naming host, port and the reason. Blocking (name resolution): call it
        before the event loop runs, as every service does while it is built."""
        if self._listener is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            # resolved here, not by create_server, which words a DNS failure as a bind failure
            info = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
            listener = socket.create_server(info[0][4][:2], family=info[0][0], backlog=64)
        except OSError as exc:  # socket.gaierror included: an unresolvable LISTEN_HOST
            raise listen_error(self.host, self.port, exc) from None
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]

    async def start(self) -> None:
        self.bind()
        assert self._listener is not None
        self._accept_task = asyncio.create_task(self._accept_loop(self._listener))
        log.info("relay receiver listening on %s:%d (mutual TLS 1.3)", self.host, self.port)

    async def serve(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    def seed_trade_ids(self, last: Mapping[tuple[str, bool], int]) -> None:
        """Trade ids an earlier run already stored, per (symbol, is_agg): replays of them are dropped."""
        for key, tid in last.items():
            self._max_trade_id[key] = max(self._max_trade_id.get(key, tid), tid)

    def pause(self) -> None:
        """Stop taking frames (shutdown: the owner persists what it has, then `close(final_ack=True)`)."""
        self._stop_accepting()
        for conn in self._connections:
            conn.pause()

    async def close(self, final_ack: bool = False) -> None:
        """Close every connection; with `final_ack`, first acknowledge what the gate allows."""
        await self._stop_accepting_and_wait()
        for task in list(self._handshakes):
            task.cancel()
        for conn in list(self._connections):
            if final_ack:
                conn.ack(force=True)
                conn.close(graceful=True)  # the ack is flushed before the connection goes
            else:
                conn.close()

    def _stop_accepting(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()

    async def _stop_accepting_and_wait(self) -> None:
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:  # closed only once nothing waits on it
            self._listener.close()
            self._listener = None

    @property
    def connected_senders(self) -> int:
        return len(self._connections)

    # -- connection set-up ------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, addr = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. EMFILE: keep serving the senders we have
                self._throttle.warn(log, "accept", "accept failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            task = loop.create_task(self._handshake(sock, _fmt_peer(addr)))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket, peer: str) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _SenderConnection(self, peer), sock, ssl=self._ssl,
                ssl_handshake_timeout=self.handshake_timeout_s,
            )  # fmt: skip
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            self.stats.handshake_failures += 1
            self._throttle.warn(log, f"hs:{peer.rsplit(':', 1)[0]}",
                                "refused connection from %s: TLS handshake failed: %s",
                                peer, _reason(exc))  # fmt: skip
            sock.close()

    # -- event delivery (called by connections) ---------------------------------------------

    def local_notice(self, event: str, ts: int, detail: dict[str, object]) -> None:
        """A notice raised here (not by a sender): trade-id gaps, senders coming and going."""
        notice = Notice(event, ts, detail, arrival_ts=ts)
        self.stats.notices += 1
        try:
            self.on_event(notice)
        except Exception:
            self.stats.callback_errors += 1
            self._throttle.warn(log, "callback", "event consumer raised; notice skipped", exc_info=True)

    def _deliver(self, frame: wire.Frame, arrival_ts: int) -> None:
        self.delivered += 1
        body = frame.body
        kind = type(body)
        stats = self.stats
        if kind is Bbo:
            stats.bbo += 1
        elif kind is Trade:
            key = (body.symbol, body.is_agg)  # type: ignore[union-attr]
            last = self._max_trade_id.get(key)
            tid = body.trade_id  # type: ignore[union-attr]
            if last is not None and tid <= last:
                if frame.flags & wire.FLAG_RETRANSMIT:
                    stats.duplicates += 1
                    return
            else:
                if last is not None and tid > last + 1:
                    stats.trade_id_gaps += 1
                    stats.trades_missing += tid - last - 1
                    self.local_notice("trade_id_gap", arrival_ts, {
                        "symbol": key[0], "is_agg": key[1], "after_id": last, "next_id": tid,
                        "missing": tid - last - 1,
                    })  # fmt: skip
                self._max_trade_id[key] = tid
            stats.trades += 1
        else:
            nid = body.notice_id  # type: ignore[union-attr]
            if nid:
                if nid in self._seen_notices:
                    stats.duplicates += 1
                    return
                self._seen_notices[nid] = None
                if len(self._seen_notices) > 10_000:
                    self._seen_notices.popitem(last=False)
            stats.notices += 1
        body.arrival_ts = arrival_ts  # type: ignore[union-attr]
        if kind is not Notice:
            self.hop_latency.add(arrival_ts - frame.send_ts)
            self.sender_latency.add(frame.send_ts - body.recv_ts)  # type: ignore[union-attr]
        stats.last_event_ns = arrival_ts
        try:
            self.on_event(body)  # type: ignore[arg-type]
        except Exception:
            stats.callback_errors += 1
            self._throttle.warn(log, "callback", "event consumer raised; event skipped", exc_info=True)


class _SenderConnection(asyncio.Protocol):
    def __init__(self, receiver: RelayReceiver, peer: str) -> None:
        self._rx = receiver
        self.peer = peer
        self.sender = "?"
        self._decoder = wire.FrameDecoder(receiver.max_frame)
        self._transport: asyncio.Transport | None = None
        self._last_seq = 0
        self._acked_seq = 0
        self._last_ack_ns = 0
        # (receiver.delivered, our last seq) at each tick, until the ack gate passes them
        self._marks: deque[tuple[int, int]] = deque(maxlen=100_000)
        self._last_frame_ns = time.time_ns()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        rx = self._rx
        rx._connections.add(self)
        rx.stats.connections += 1
        rx.stats.active = len(rx._connections)
        ssl_object = transport.get_extra_info("ssl_object")
        self.cert_name = peer_name(ssl_object)
        log.info("sender connected from %s (certificate CN=%s)", self.peer, self.cert_name)
        self._timer = asyncio.get_running_loop().call_later(rx.ack_interval_s, self._tick)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        arrival_ts = time.time_ns()
        self._last_frame_ns = arrival_ts
        rx = self._rx
        stats = rx.stats
        try:
            for frame in self._decoder.feed(data):
                stats.frames += 1
                if frame.seq != self._last_seq + 1:
                    stats.seq_gaps += 1
                    log.warning(
                        "sender %s: sequence jumped from %d to %d", self.sender, self._last_seq, frame.seq
                    )
                self._last_seq = frame.seq
                kind = frame.kind
                if kind == wire.BBO or kind == wire.TRADE or kind == wire.NOTICE:
                    rx._deliver(frame, arrival_ts)
                elif kind == wire.HEARTBEAT:
                    stats.heartbeats += 1
                elif kind == wire.HELLO:
                    self._hello(frame.body)
                else:
                    raise wire.FrameError(f"unexpected frame kind {kind} from a sender")
        except wire.OversizedFrameError as exc:
            stats.oversized += 1
            self._drop(f"oversized frame: {exc}")
        except wire.FrameError as exc:
            stats.malformed += 1
            self._drop(f"malformed frame: {exc}")

    def _hello(self, info: object) -> None:
        if isinstance(info, dict):
            self.sender = str(info.get("sender", "?"))
            self._rx.local_notice(
                "relay_connected", time.time_ns(), {"sender": self.sender, "peer": self.peer}
            )
            log.info(
                "sender %s (%s) says hello: market=%s symbols=%s trades=%s",
                self.sender, self.peer, info.get("market"), info.get("symbols"), info.get("include_trades"),
            )  # fmt: skip

    def _drop(self, why: str) -> None:
        self._refused = True  # what is left in the buffer is the bad frame, not a truncated one
        self._rx._throttle.warn(log, f"drop:{self.peer}", "closing connection from %s (%s): %s",
                                self.peer, self.sender, why)  # fmt: skip
        self.close()

    def _tick(self) -> None:
        """Periodic: acknowledge what was delivered (doubles as our heartbeat) and detect silence."""
        if self._closed or self._transport is None:
            return
        now = time.time_ns()
        rx = self._rx
        if now - self._last_frame_ns > rx.idle_timeout_s * 1e9:
            rx.stats.idle_closes += 1
            log.warning("sender %s (%s) silent for %.1fs; closing", self.sender, self.peer,
                        (now - self._last_frame_ns) / 1e9)  # fmt: skip
            self.close()
            return
        self.ack()
        self._timer = asyncio.get_running_loop().call_later(rx.ack_interval_s, self._tick)

    def ack(self, force: bool = False) -> None:
        """Acknowledge the highest seq we may (at least once a second: it is also our heartbeat)."""
        if self._closed or self._transport is None:
            return
        seq = self._ackable()
        now = time.time_ns()
        if force or seq != self._acked_seq or now - self._last_ack_ns > 1e9:
            self._transport.write(wire.encode_ack(seq, now))
            self._acked_seq = seq
            self._last_ack_ns = now

    def _ackable(self) -> int:
        gate = self._rx.ack_gate
        if gate is None:
            return self._last_seq
        marks = self._marks
        if self._last_seq and (not marks or marks[-1][1] != self._last_seq):
            marks.append((self._rx.delivered, self._last_seq))
        durable = gate()
        seq = self._acked_seq
        while marks and marks[0][0] <= durable:
            seq = marks.popleft()[1]
        return seq

    def pause(self) -> None:
        if not self._closed and self._transport is not None:
            self._transport.pause_reading()

    def close(self, graceful: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            if graceful:
                self._transport.close()
            else:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        rx = self._rx
        if self._decoder.pending_bytes and not self._refused:
            rx.stats.truncated += 1
            log.warning("sender %s (%s) left a truncated frame (%d bytes)", self.sender, self.peer,
                        self._decoder.pending_bytes)  # fmt: skip
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self in rx._connections:
            rx._connections.discard(self)
            rx.stats.active = len(rx._connections)
            log.info("sender %s (%s) disconnected%s", self.sender, self.peer, f": {exc}" if exc else "")
            if self.sender != "?":  # only senders that said hello were announced as connected
                detail = {"sender": self.sender, "peer": self.peer, "reason": str(exc or "closed")}
                rx.local_notice("relay_disconnected", time.time_ns(), detail)


def _fmt_peer(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()  # e.g. "peer did not return a certificate"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
