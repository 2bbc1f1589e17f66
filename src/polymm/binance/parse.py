"""Binance combined-stream payloads -> relay events, parsed in C by msgspec.

The envelope is decoded first with the payload left raw, so each stream kind is parsed by a
decoder built for exactly its fields. `strict=False` lets msgspec turn Binance's decimal strings
into floats without a Python-level float() per field.

Nothing is dropped silently: a message that is not turned into an event, a control message or a
subscription reply comes back as `Dropped(reason)`, which the client counts and logs per reason.
Times are always milliseconds: a stream opened with `timeUnit=MICROSECOND` sends microseconds,
recognised by magnitude (a ms epoch stays below 10^14 until the year 5138, a us epoch has been
above 10^15 since 2001) and divided down, counted in `Parser.micro`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from polymm.relay.events import Bbo, Trade


class _Envelope(msgspec.Struct):
    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    # Some control messages are not wrapped: {"e":"serverShutdown",...} or {"result":null,"id":1};
    # a raw (non-combined) data payload has a symbol `s`.
    e: str = ""
    E: int = 0
    s: str = ""
    id: int | str | None = None


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


class Dropped(msgspec.Struct, frozen=True):
    """A message that is neither an event nor a control message nor a reply: it is not used, and
    the client counts and logs it. `reason` is short and stable (one log line per reason)."""

    reason: str


RAW_PAYLOAD = Dropped("raw payload without the combined-stream envelope")
UNRECOGNISED = Dropped("message that is no event, control message or reply")


class ParseError(ValueError):
    pass


_envelope = msgspec.json.Decoder(_Envelope)
_book = msgspec.json.Decoder(_BookTicker, strict=False)
_trade = msgspec.json.Decoder(_Trade, strict=False)
_agg = msgspec.json.Decoder(_AggTrade, strict=False)
_control = msgspec.json.Decoder(_Control)


_US = 10**14  # a time above this is in microseconds (see the module docstring)


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


def _ms(value: int) -> int:
    return value // 1000 if value >= _US else value


def _to_ms(event: Bbo | Trade) -> None:
    """Both times of a message share its unit, so the event time alone tells it."""
    event.exch_ts = event.exch_ts // 1000
    if type(event) is Bbo:
        event.txn_ts = _ms(event.txn_ts)
    else:
        event.trade_ts = _ms(event.trade_ts)  # type: ignore[union-attr]


_BY_SUFFIX: dict[str, Callable[[msgspec.Raw, int], Bbo | Trade]] = {
    "bookTicker": _bbo,
    "trade": _spot_trade,
    "aggTrade": _agg_trade,
}


class Parser:
    """Parses one connection's messages; caches the stream-name -> decoder lookup."""

    __slots__ = ("_routes", "micro")

    def __init__(self) -> None:
        self._routes: dict[str, Callable[[msgspec.Raw, int], Bbo | Trade] | None] = {}
        self.micro = 0  # events whose times came in microseconds and were divided to ms

    def parse(self, message: str | bytes, recv_ts: int) -> Bbo | Trade | Control | Dropped | None:
        """An event, a Control, a Dropped (not used: count and log it), or None for a reply to a
        request. Raises ParseError on bad input."""
        try:
            env = _envelope.decode(message)
            stream = env.stream
            try:
                route = self._routes[stream]
            except KeyError:
                route = self._route(stream)
            if route is not None:
                event = route(env.data, recv_ts)
                if event.exch_ts >= _US:
                    self.micro += 1
                    _to_ms(event)
                return event
            if stream:
                if not stream.startswith("!"):
                    return Dropped(f"message of unhandled stream kind {stream.partition('@')[2] or stream}")
                ctl = _control.decode(env.data)
                return Control(ctl.e, _ms(ctl.E)) if ctl.e else UNRECOGNISED
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(str(exc)) from None
        if env.s:
            return RAW_PAYLOAD  # e.g. a /ws/<stream> URL: Binance sends the payload unwrapped
        if env.e:
            return Control(env.e, _ms(env.E))
        if env.id is not None:
            return None  # the reply to a request (SUBSCRIBE, LIST_SUBSCRIPTIONS)
        return UNRECOGNISED

    def _route(self, stream: str) -> Callable[[msgspec.Raw, int], Bbo | Trade] | None:
        _, _, suffix = stream.partition("@")
        route = _BY_SUFFIX.get(suffix) if suffix else None
        if len(self._routes) < 4096:
            self._routes[stream] = route
        return route
