"""Typed events of Polymarket's market channel (`/ws/market`) and a frame decoder.

A frame is one event object or a JSON array of events, each tagged by `event_type`. Prices,
sizes and timestamps arrive as strings; they are decoded straight to float / int (ms).

Decoding has two paths. The fast path is one msgspec decode of the whole frame into the final
structs. When that fails (an unknown event type in an array, a number spelt ".48", one broken
event among good ones) the frame is decoded untyped and each event is converted on its own, so a
single odd event costs only itself. Nothing here raises to the caller: errors are counted and
logged at most once per few seconds per kind.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from polymm.service.logs import Throttle

log = logging.getLogger("polymm.polymarket.messages")


class Level(msgspec.Struct, gc=False):
    price: float
    size: float


class BookEvent(msgspec.Struct, tag_field="event_type", tag="book"):
    """Full book for one asset; replaces whatever the client holds."""

    asset_id: str
    market: str = ""
    bids: list[Level] = []
    asks: list[Level] = []
    timestamp: int = 0
    hash: str = ""


class PriceLevelChange(msgspec.Struct, gc=False):
    """One level's new total size (0 deletes). BUY is a bid level, SELL an ask level."""

    asset_id: str
    price: float
    size: float
    side: str
    hash: str = ""
    best_bid: float | None = None
    best_ask: float | None = None


class LegacyChange(msgspec.Struct, gc=False):
    price: float
    side: str
    size: float


class PriceChangeEvent(msgspec.Struct, tag_field="event_type", tag="price_change"):
    """Batched level updates (format since 2025-09-15).

    The legacy single-asset format ({asset_id, hash, changes}) is normalised by the decoder into
    `price_changes`, so consumers read only that field; `legacy` says which one arrived.
    """

    market: str = ""
    timestamp: int = 0
    price_changes: list[PriceLevelChange] = []
    asset_id: str = ""
    hash: str = ""
    changes: list[LegacyChange] | None = None
    legacy: bool = False


class TradeEvent(msgspec.Struct, tag_field="event_type", tag="last_trade_price"):
    asset_id: str
    market: str = ""
    price: float = 0.0
    size: float = 0.0
    side: str = ""
    # Kept as the venue sent it (a decimal string, "0"): a float would turn "1.1" into 1.1000000000000001
    # on the way back to text. A bare JSON number (never seen) is kept as its number.
    fee_rate_bps: str | int | float | None = None
    timestamp: int = 0
    transaction_hash: str = ""  # the settlement transaction; the only unique id of a market trade

    @property
    def fee_text(self) -> str | None:
        fee = self.fee_rate_bps
        return fee if fee is None or type(fee) is str else repr(fee)


class TickSizeChangeEvent(msgspec.Struct, tag_field="event_type", tag="tick_size_change"):
    asset_id: str
    market: str = ""
    old_tick_size: float = 0.0
    new_tick_size: float = 0.0
    timestamp: int = 0


class BestBidAskEvent(msgspec.Struct, tag_field="event_type", tag="best_bid_ask"):
    asset_id: str
    market: str = ""
    best_bid: float | None = None
    best_ask: float | None = None
    spread: float | None = None
    timestamp: int = 0


class NewMarketEvent(msgspec.Struct, tag_field="event_type", tag="new_market"):
    """Custom feature, sent to every subscriber; shape is loosely documented, so fields are lenient."""

    id: str | int | None = None
    market: str = ""
    slug: str = ""
    question: str = ""
    assets_ids: list[str] = []
    outcomes: list[str] | str | None = None
    timestamp: int = 0


class MarketResolvedEvent(msgspec.Struct, tag_field="event_type", tag="market_resolved"):
    id: str | int | None = None
    market: str = ""
    assets_ids: list[str] = []
    winning_asset_id: str = ""
    winning_outcome: str = ""
    timestamp: int = 0


Event = (
    BookEvent
    | PriceChangeEvent
    | TradeEvent
    | TickSizeChangeEvent
    | BestBidAskEvent
    | NewMarketEvent
    | MarketResolvedEvent
)
_TAGS: dict[type, str] = {
    t: str(t.__struct_config__.tag)
    for t in (
        BookEvent,
        PriceChangeEvent,
        TradeEvent,
        TickSizeChangeEvent,
        BestBidAskEvent,
        NewMarketEvent,
        MarketResolvedEvent,
    )
}
EVENT_TYPES: frozenset[str] = frozenset(_TAGS.values())


def event_type(event: Event) -> str:
    return _TAGS[type(event)]


# Keys whose string values the tolerant path converts itself (msgspec refuses "0.", ".5").
_FLOAT_KEYS = frozenset({"price", "size", "best_bid", "best_ask", "spread", "old_tick_size", "new_tick_size"})
_NESTED_KEYS = frozenset({"bids", "asks", "price_changes", "changes"})


class DecodeStats(msgspec.Struct):
    frames: int = 0
    events: int = 0
    by_type: dict[str, int] = {}
    pongs: int = 0
    malformed: int = 0  # frames or events that are not JSON or do not fit the schema
    unknown: int = 0  # well-formed events of a type this client does not know
    text_replies: int = 0  # non-JSON server text other than PONG, e.g. "INVALID OPERATION"


class FrameDecoder:
    """Turns one WebSocket frame into a list of events; never raises."""

    def __init__(self, stats: DecodeStats | None = None, log_interval_s: float = 5.0) -> None:
        self.stats = stats if stats is not None else DecodeStats()
        self._fast = msgspec.json.Decoder(list[Event] | Event, strict=False)  # type: ignore[arg-type]
        self._any = msgspec.json.Decoder()
        self._throttle = Throttle(log_interval_s)

    def decode(self, frame: str | bytes) -> list[Event]:
        stats = self.stats
        stats.frames += 1
        if len(frame) < 32:  # cheap test before any JSON work: PONG and other server text
            text = frame.decode(errors="replace") if isinstance(frame, bytes) else frame
            text = text.strip()
            if text == "PONG":
                stats.pongs += 1
                return []
            if text[:1] not in ("{", "["):
                stats.text_replies += 1
                self._throttle.warn(log, "text", "polymarket server text: %r", text)
                return []
        try:
            decoded = self._fast.decode(frame)
        except msgspec.DecodeError:  # ValidationError is a subclass: both go the tolerant way
            return self._tolerant(frame)
        events = decoded if type(decoded) is list else [decoded]
        self._count(events)
        return events

    def _count(self, events: list[Event]) -> None:
        by_type = self.stats.by_type
        self.stats.events += len(events)
        for event in events:
            tag = _TAGS[type(event)]
            by_type[tag] = by_type.get(tag, 0) + 1
            if type(event) is PriceChangeEvent and event.changes is not None:
                _normalise_legacy(event)

    def _tolerant(self, frame: str | bytes) -> list[Event]:
        try:
            raw = self._any.decode(frame)
        except msgspec.DecodeError as exc:
            self._malformed("json", "polymarket frame is not JSON (%s): %.200r", exc, frame)
            return []
        items = raw if isinstance(raw, list) else [raw]
        events: list[Event] = []
        for item in items:
            if not isinstance(item, dict):
                self._malformed("shape", "polymarket event is not an object: %.200r", item)
                continue
            kind = item.get("event_type")
            if kind not in EVENT_TYPES:
                self.stats.unknown += 1
                self._throttle.warn(log, f"unknown:{kind}", "polymarket unknown event_type %r skipped", kind)
                continue
            try:
                events.append(msgspec.convert(_coerce(item), Event, strict=False))  # type: ignore[arg-type]
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                self._malformed(f"schema:{kind}", "polymarket %s event does not fit: %s", kind, exc)
        self._count(events)
        return events

    def _malformed(self, key: str, msg: str, *args: object) -> None:
        self.stats.malformed += 1
        self._throttle.warn(log, key, msg, *args)


def _normalise_legacy(event: PriceChangeEvent) -> None:
    changes = event.changes or []
    event.price_changes = [
        PriceLevelChange(event.asset_id, c.price, c.size, c.side, event.hash) for c in changes
    ]
    event.changes = None
    event.legacy = True


def _coerce(obj: dict[str, Any]) -> dict[str, Any]:
    """Convert numeric strings the strict JSON grammar refuses; leave the rest to the schema."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if type(value) is str:
            if key in _FLOAT_KEYS:
                value = _to_float(value)
            elif key == "timestamp":
                value = _to_int(value)
        elif type(value) is list and key in _NESTED_KEYS:
            value = [_coerce(v) if type(v) is dict else v for v in value]
        out[key] = value
    return out


def _to_float(text: str) -> float | str | None:
    if text == "":
        return None  # an empty best_bid means "no level"; required fields then fail the schema
    try:
        return float(text)
    except ValueError:
        return text


def _to_int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return text
