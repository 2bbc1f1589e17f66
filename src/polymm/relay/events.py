"""Market events as they travel the relay and reach the services that embed the receiver.

Times: `recv_ts` is the sender's (Frankfurt) local receive stamp in ns; `exch_ts` and
`txn_ts`/`trade_ts` are Binance's own ms stamps (0 when the stream gives none: spot bookTicker
has no time at all); `send_ts` is when the sender wrote the frame (ns) and `arrival_ts` when the
receiver decoded it (ns). `seq` is the per-connection relay sequence number.
"""

from __future__ import annotations

import msgspec


class Bbo(msgspec.Struct, gc=False):
    symbol: str
    recv_ts: int
    exch_ts: int
    txn_ts: int
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    seq: int = 0
    send_ts: int = 0
    arrival_ts: int = 0


class Trade(msgspec.Struct, gc=False):
    symbol: str
    recv_ts: int
    exch_ts: int
    trade_ts: int
    trade_id: int
    price: float
    qty: float
    side: str  # taker (aggressor) side: "buy" or "sell"
    is_agg: bool  # True for aggTrade ids (futures), False for raw trade ids (spot)
    seq: int = 0
    send_ts: int = 0
    arrival_ts: int = 0


class Notice(msgspec.Struct):
    """Something a consumer should record next to the data: a feed outage, dropped trades, ..."""

    event: str
    ts: int  # ns, when the sender noticed
    detail: dict[str, object] = msgspec.field(default_factory=dict)
    notice_id: str = ""
    seq: int = 0
    send_ts: int = 0
    arrival_ts: int = 0


RelayEvent = Bbo | Trade | Notice
