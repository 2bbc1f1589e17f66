"""Binance combined-stream payloads -> relay events, parsed in C by msgspec.

The envelope is decoded first with the payload left raw, so each stream kind is parsed by a
decoder built for exactly its fields. `strict=False` lets msgspec turn Binance's decimal strings
into floats without a Python-level float() per field.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from polymm.relay.events import Bbo, Trade


class _Envelope(msgspec.Struct):
    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    # Some control messages are not wrapped: {"e":"serverShutdown",...} or {"result":null,"id":1}
    e: str = ""


class _BookTicker(msgspec.Struct):
    s: str
    u: int
    b: float
    B: float  # Binance's key
    a: float
    A: float
    E: int = 0  # event time (futures only)
    T: int = 0  # transaction time (futures only)


class _Trade(msgspec.Struct):
    s: str
    t: int
    p: float
    q: float
    m: bool
    E: int = 0
    T: int = 0


class _AggTrade(msgspec.Struct):
    s: str
    a: int
    p: float
    q: float
    m: bool
    E: int = 0
    T: int = 0


class _Control(msgspec.Struct):
    e: str = ""
    E: int = 0


class Control(msgspec.Struct, frozen=True):
    """A non-data message the client must act on (e.g. serverShutdown -> rotate the connection)."""

    event: str
    event_time: int


class ParseError(ValueError):
    pass


_envelope = msgspec.json.Decoder(_Envelope)
_book = msgspec.json.Decoder(_BookTicker, strict=False)
_trade = msgspec.json.Decoder(_Trade, strict=False)
_agg = msgspec.json.Decoder(_AggTrade, strict=False)
_control = msgspec.json.Decoder(_Control)


def _bbo(raw: msgspec.Raw, recv_ts: int) -> Bbo:
    m = _book.decode(raw)
    return Bbo(m.s, recv_ts, m.E, m.T, m.u, m.b, m.B, m.a, m.A)


def _spot_trade(raw: msgspec.Raw, recv_ts: int) -> Trade:
    m = _trade.decode(raw)
    # m = buyer is maker, so the aggressor sold
    return Trade(m.s, recv_ts, m.E, m.T, m.t, m.p, m.q, "sell" if m.m else "buy", False)


def _agg_trade(raw: msgspec.Raw, recv_ts: int) -> Trade:
    m = _agg.decode(raw)
    return Trade(m.s, recv_ts, m.E, m.T, m.a, m.p, m.q, "sell" if m.m else "buy", True)


_BY_SUFFIX: dict[str, Callable[[msgspec.Raw, int], Bbo | Trade]] = {
    "bookTicker": _bbo,
    "trade": _spot_trade,
    "aggTrade": _agg_trade,
}


class Parser:
    """Parses one connection's messages; caches the stream-name -> decoder lookup."""

    __slots__ = ("_routes",)

    def __init__(self) -> None:
        self._routes: dict[str, Callable[[msgspec.Raw, int], Bbo | Trade] | None] = {}

    def parse(self, message: str | bytes, recv_ts: int) -> Bbo | Trade | Control | None:
        """An event, a Control, or None for replies we ignore. Raises ParseError on bad input."""
        try:
            env = _envelope.decode(message)
            try:
                route = self._routes[env.stream]
            except KeyError:
                route = self._route(env.stream)
            if route is not None:
                return route(env.data, recv_ts)
            if env.stream and not env.stream.startswith("!"):
                return None  # a data stream this parser does not handle
            raw = env.data if env.stream else message
            ctl = _control.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(str(exc)) from None
        if ctl.e:
            return Control(ctl.e, ctl.E)
        return None

    def _route(self, stream: str) -> Callable[[msgspec.Raw, int], Bbo | Trade] | None:
        _, _, suffix = stream.partition("@")
        route = _BY_SUFFIX.get(suffix) if suffix else None
        if len(self._routes) < 4096:
            self._routes[stream] = route
        return route
