"""Binary frame format of the relay: little-endian structs, a few microseconds to pack or parse.

Every frame: u32 length (of what follows), u8 version, u8 kind, u8 flags, u64 seq, i64 send_ts (ns).
Then, by kind:
  HELLO     utf-8 JSON object (sender name, market, symbols)
  HEARTBEAT nothing
  BBO       i64 recv_ts, i64 exch_ts, i64 txn_ts, i64 update_id, f64 bid, bid_qty, ask, ask_qty,
            u8 symbol length, symbol (ascii)
  TRADE     i64 recv_ts, i64 exch_ts, i64 trade_ts, i64 trade_id, f64 price, qty, u8 trade flags,
            u8 symbol length, symbol
  NOTICE    utf-8 JSON of Notice
  ACK       nothing; seq is the highest sequence number the receiver has handed to its consumer
Flag RETRANSMIT marks a reliable item re-sent after a reconnect, so the receiver de-duplicates it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

import msgspec

from polymm.relay.events import Bbo, Notice, Trade

VERSION = 1
MAX_FRAME = 64 * 1024

HELLO, HEARTBEAT, BBO, TRADE, NOTICE, ACK = 1, 2, 3, 4, 5, 6
FLAG_RETRANSMIT = 0x01
_TRADE_SELL = 0x01  # taker sold (buyer was maker)
_TRADE_AGG = 0x02

_LEN = struct.Struct("<I")
_HEADER = struct.Struct("<BBBQq")
HEADER_SIZE = _LEN.size + _HEADER.size
_BBO = struct.Struct("<IBBBQq qqqq dddd B")
_TRADE = struct.Struct("<IBBBQq qqqq dd BB")
_BBO_BODY = struct.Struct("<qqqqddddB")
_TRADE_BODY = struct.Struct("<qqqqddBB")

_notice_encoder = msgspec.json.Encoder()
_notice_decoder = msgspec.json.Decoder(Notice)
_hello_decoder = msgspec.json.Decoder(dict[str, object])


class FrameError(ValueError):
    """The peer sent something that is not a valid frame; the connection must be closed."""


class OversizedFrameError(FrameError):
    pass


_VALID_SYMBOL = re.compile(rb"[A-Z0-9_]{1,32}")
_symbol_bytes: dict[str, bytes] = {}
_symbol_str: dict[bytes, str] = {}


def _sym(symbol: str) -> bytes:
    cached = _symbol_bytes.get(symbol)
    if cached is None:
        cached = symbol.encode("ascii")
        if len(cached) > 255:
            raise ValueError(f"symbol too long: {symbol!r}")
        _symbol_bytes[symbol] = cached
    return cached


def encode_bbo(seq: int, send_ts: int, e: Bbo, flags: int = 0) -> bytes:
    sym = _sym(e.symbol)
    return _BBO.pack(
        _BBO.size - 4 + len(sym), VERSION, BBO, flags, seq, send_ts,
        e.recv_ts, e.exch_ts, e.txn_ts, e.update_id, e.bid, e.bid_qty, e.ask, e.ask_qty, len(sym),
    ) + sym  # fmt: skip


def encode_trade(seq: int, send_ts: int, e: Trade, flags: int = 0) -> bytes:
    sym = _sym(e.symbol)
    trade_flags = (_TRADE_SELL if e.side == "sell" else 0) | (_TRADE_AGG if e.is_agg else 0)
    return _TRADE.pack(
        _TRADE.size - 4 + len(sym), VERSION, TRADE, flags, seq, send_ts,
        e.recv_ts, e.exch_ts, e.trade_ts, e.trade_id, e.price, e.qty, trade_flags, len(sym),
    ) + sym  # fmt: skip


def _encode_blob(kind: int, seq: int, send_ts: int, body: bytes, flags: int = 0) -> bytes:
    if len(body) + _HEADER.size > MAX_FRAME:
        raise ValueError(f"frame body of {len(body)} bytes exceeds MAX_FRAME")
    return _LEN.pack(_HEADER.size + len(body)) + _HEADER.pack(VERSION, kind, flags, seq, send_ts) + body


def encode_notice(seq: int, send_ts: int, notice: Notice, flags: int = 0) -> bytes:
    return _encode_blob(NOTICE, seq, send_ts, _notice_encoder.encode(notice), flags)


def encode_hello(seq: int, send_ts: int, info: dict[str, object]) -> bytes:
    return _encode_blob(HELLO, seq, send_ts, _notice_encoder.encode(info))


def encode_heartbeat(seq: int, send_ts: int) -> bytes:
    return _encode_blob(HEARTBEAT, seq, send_ts, b"")


def encode_ack(seq: int, send_ts: int) -> bytes:
    return _encode_blob(ACK, seq, send_ts, b"")


class Frame(msgspec.Struct, gc=False):
    kind: int
    flags: int
    seq: int
    send_ts: int
    body: object  # Bbo | Trade | Notice | dict (HELLO) | None


def _symbol(raw: bytes) -> str:
    cached = _symbol_str.get(raw)
    if cached is None:
        # The symbol becomes a directory name in the lake (symbol=BTCUSDT): anything else than a
        # Binance symbol (e.g. "../../x") is a malformed frame, refused before it reaches a consumer.
        if not _VALID_SYMBOL.fullmatch(raw):
            raise FrameError(f"symbol {raw[:40]!r} is not a Binance symbol ([A-Z0-9_]{{1,32}})")
        cached = raw.decode("ascii")
        if len(_symbol_str) < 10_000:  # bounded: a hostile peer cannot grow it forever
            _symbol_str[raw] = cached
    return cached


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, iterate over complete frames."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Frame]:
        buf = self._buf
        buf += data
        offset = 0
        end = len(buf)
        try:
            while end - offset >= 4:
                (length,) = _LEN.unpack_from(buf, offset)
                if length > self.max_frame:
                    raise OversizedFrameError(f"frame of {length} bytes exceeds the {self.max_frame} limit")
                if length < _HEADER.size:
                    raise FrameError(f"frame length {length} is shorter than a header")
                if end - offset - 4 < length:
                    break
                yield _decode(buf, offset + 4, length)
                offset += 4 + length
        finally:
            if offset:
                del buf[:offset]


def _decode(buf: bytearray, start: int, length: int) -> Frame:
    version, kind, flags, seq, send_ts = _HEADER.unpack_from(buf, start)
    if version != VERSION:
        raise FrameError(f"unsupported frame version {version}")
    body_start = start + _HEADER.size
    body_len = length - _HEADER.size
    if kind == BBO:
        if body_len < _BBO_BODY.size:
            raise FrameError("BBO frame too short")
        recv_ts, exch_ts, txn_ts, uid, bid, bq, ask, aq, n = _BBO_BODY.unpack_from(buf, body_start)
        sym_start = body_start + _BBO_BODY.size
        if body_len != _BBO_BODY.size + n:
            raise FrameError("BBO frame length does not match its symbol")
        symbol = _symbol(bytes(buf[sym_start : sym_start + n]))
        body: object = Bbo(symbol, recv_ts, exch_ts, txn_ts, uid, bid, bq, ask, aq, seq, send_ts)
    elif kind == TRADE:
        if body_len < _TRADE_BODY.size:
            raise FrameError("TRADE frame too short")
        recv_ts, exch_ts, trade_ts, tid, price, qty, tflags, n = _TRADE_BODY.unpack_from(buf, body_start)
        sym_start = body_start + _TRADE_BODY.size
        if body_len != _TRADE_BODY.size + n:
            raise FrameError("TRADE frame length does not match its symbol")
        symbol = _symbol(bytes(buf[sym_start : sym_start + n]))
        side = "sell" if tflags & _TRADE_SELL else "buy"
        body = Trade(symbol, recv_ts, exch_ts, trade_ts, tid, price, qty, side, bool(tflags & _TRADE_AGG),
                     seq, send_ts)  # fmt: skip
    elif kind in (HEARTBEAT, ACK):
        if body_len:
            raise FrameError(f"kind {kind} frame carries {body_len} unexpected bytes")
        body = None
    elif kind == NOTICE:
        try:
            body = _notice_decoder.decode(bytes(buf[body_start : body_start + body_len]))
        except msgspec.DecodeError as exc:
            raise FrameError(f"bad NOTICE body: {exc}") from None
    elif kind == HELLO:
        try:
            body = _hello_decoder.decode(bytes(buf[body_start : body_start + body_len]))
        except msgspec.DecodeError as exc:
            raise FrameError(f"bad HELLO body: {exc}") from None
    else:
        raise FrameError(f"unknown frame kind {kind}")
    return Frame(kind, flags, seq, send_ts, body)
