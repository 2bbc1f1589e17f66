"""A local WebSocket server that speaks Polymarket's market channel, for tests, demo and bench.

Protocol as on `/ws/market`: the first frame `{"type":"market","assets_ids":[..]}` once per
connection (again -> `INVALID OPERATION`), then `{"operation":"subscribe"|"unsubscribe"}`; text
`PING` -> `PONG`; every (re)subscribe pushes a `book` per asset. Activity is a random walk per
token: batched `price_change` (size = new level total, 0 deletes), `last_trade_price`, and now and
then a `book` after a trade. Prices, sizes and timestamps are strings, as on the wire.

Test hooks: `push` exact events, `set_book`, `send_raw` malformed text, `drop_all`, `freeze` (data
stops, PONG continues), and counters of what clients sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection

from polymm.sim.ws_sim import TickingWsSim

log = logging.getLogger("polymm.sim.polymarket")
_json = msgspec.json.Encoder()


def _fmt(x: float) -> str:
    """Shortest decimal form, as Polymarket prints prices and sizes ("0.5", "120", "12.34")."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return text or "0"


class SimToken:
    """One outcome token's book on an integer tick grid, so prices never drift by float error."""

    def __init__(self, token_id: str, market: str, mid: float, tick: float, rng: random.Random) -> None:
        self.token_id = token_id
        self.market = market
        self.tick = tick
        self.bids: dict[int, float] = {}  # ticks -> size
        self.asks: dict[int, float] = {}
        self._rng = rng
        centre = round(mid / tick)
        top = round(1 / tick)
        for i in range(1, 8):
            if centre - i > 0:
                self.bids[centre - i] = self._size()
            if centre + i < top:
                self.asks[centre + i] = self._size()

    def _size(self) -> float:
        return float(self._rng.choice((5, 10, 20, 25, 50, 100, 150, 250, 500)))

    def price(self, ticks: int) -> float:
        return round(ticks * self.tick, 6)

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def levels(self, side: str) -> list[tuple[float, float]]:
        """Best first, like OrderBook.top_*: for comparing the two in tests."""
        if side == "BUY":
            return [(self.price(t), s) for t, s in sorted(self.bids.items(), reverse=True)]
        return [(self.price(t), s) for t, s in sorted(self.asks.items())]

    def set_levels(self, bids: Iterable[tuple[float, float]], asks: Iterable[tuple[float, float]]) -> None:
        self.bids = {round(p / self.tick): s for p, s in bids if s > 0}
        self.asks = {round(p / self.tick): s for p, s in asks if s > 0}

    def apply(self, side: str, price: float, size: float) -> None:
        levels = self.bids if side == "BUY" else self.asks
        ticks = round(price / self.tick)
        if size > 0:
            levels[ticks] = size
        else:
            levels.pop(ticks, None)

    def digest(self) -> str:
        return hashlib.sha1(repr((sorted(self.bids.items()), sorted(self.asks.items()))).encode()).hexdigest()

    def random_change(self) -> tuple[str, int, float]:
        """Pick one level change that keeps the book uncrossed: (side, ticks, new size)."""
        rng = self._rng
        side = "BUY" if rng.random() < 0.5 else "SELL"
        levels, other = (self.bids, self.asks) if side == "BUY" else (self.asks, self.bids)
        top = round(1 / self.tick)
        roll = rng.random()
        if levels and (roll < 0.35 or len(levels) > 12):
            ticks = rng.choice(list(levels))
            if roll < 0.15 or len(levels) > 12:
                return side, ticks, 0.0  # cancel the whole level
            return side, ticks, max(1.0, levels[ticks] + rng.choice((-20, -10, -5, 5, 10, 20, 50)))
        # A new or bigger level: inside the spread now and then, so the price walks.
        opp = (min(other) if other else top) if side == "BUY" else (max(other) if other else 0)
        best = (max(levels) if levels else opp - 2) if side == "BUY" else (min(levels) if levels else opp + 2)
        if side == "BUY":
            ticks = best + rng.choice((-3, -2, -1, 0, 1))
            ticks = max(1, min(ticks, opp - 1))
        else:
            ticks = best + rng.choice((3, 2, 1, 0, -1))
            ticks = min(top - 1, max(ticks, opp + 1))
        if (side == "BUY" and ticks >= opp) or (side == "SELL" and ticks <= opp):
            return side, ticks, levels.get(ticks, 0.0)  # no room: a no-op change
        return side, ticks, levels.get(ticks, 0.0) + self._size()


class _Client:
    __slots__ = ("assets", "initialized", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.assets: set[str] = set()
        self.initialized = False


class PolymarketSim(TickingWsSim):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rate_hz: float = 20.0,
        trade_prob: float = 0.15,
        book_after_trade_prob: float = 0.3,
        tick_size: float = 0.01,
        seed: int = 11,
        tokens: Iterable[str] = (),
    ) -> None:
        super().__init__(host, port, rate_hz)
        self.serve_options = {"ping_interval": None, "max_size": 1 << 22}
        self.trade_prob = trade_prob
        self.book_after_trade_prob = book_after_trade_prob
        self.tick_size = tick_size
        self._rng = random.Random(seed)
        self.tokens: dict[str, SimToken] = {}
        for token in tokens:
            self.token(token)
        self._clients: dict[ServerConnection, _Client] = {}
        # Counters and logs of what clients did, for tests.
        self.connects = 0
        self.first_frames = 0
        self.subscribe_ops = 0
        self.unsubscribe_ops = 0
        self.invalid_ops = 0
        self.pings = 0
        self.sent = 0
        self._trades = 0  # numbers each trade, so its transaction hash is unique
        self.requests: list[dict[str, Any]] = []  # every JSON frame received, in order

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/market"

    @property
    def connections(self) -> int:
        return len(self._clients)

    def token(self, token_id: str, market: str | None = None) -> SimToken:
        state = self.tokens.get(token_id)
        if state is None:
            mid = self._rng.uniform(0.2, 0.8)
            market = market or "0x" + hashlib.sha256(token_id.encode()).hexdigest()
            state = self.tokens[token_id] = SimToken(token_id, market, mid, self.tick_size, self._rng)
        return state

    # -- connections -------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients[ws] = client
        self.connects += 1
        self._changed.set()
        try:
            async for message in ws:
                await self._on_message(client, message)
        except Exception:  # a client vanishing is normal here
            pass
        finally:
            self._clients.pop(ws, None)
            self._changed.set()

    async def _on_message(self, client: _Client, message: str | bytes) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        if text.strip() == "PING":
            self.pings += 1
            await client.ws.send("PONG")
            return
        try:
            request = msgspec.json.decode(text)
        except msgspec.DecodeError:
            self.invalid_ops += 1
            await client.ws.send("INVALID OPERATION")
            return
        if not isinstance(request, dict):
            self.invalid_ops += 1
            await client.ws.send("INVALID OPERATION")
            return
        self.requests.append(request)
        assets = [str(a) for a in request.get("assets_ids") or []]
        if request.get("type") == "market":
            if client.initialized:
                self.invalid_ops += 1
                await client.ws.send("INVALID OPERATION")
                return
            client.initialized = True
            self.first_frames += 1
            client.assets.update(assets)
            self._changed.set()
            await self._send_books(client, assets)
        elif request.get("operation") in ("subscribe", "unsubscribe") and client.initialized:
            if request["operation"] == "subscribe":
                self.subscribe_ops += 1
                client.assets.update(assets)
                await self._send_books(client, assets)
            else:
                self.unsubscribe_ops += 1
                client.assets.difference_update(assets)
            self._changed.set()
        else:
            self.invalid_ops += 1
            await client.ws.send("INVALID OPERATION")

    async def _send_books(self, client: _Client, assets: list[str]) -> None:
        if self.frozen or not assets:
            return
        books = [self.book_event(self.token(a)) for a in assets]
        await self._send(client, _json.encode(books).decode())

    def subscribed(self) -> list[set[str]]:
        """Asset sets of the connected clients, one per connection."""
        return [set(c.assets) for c in self._clients.values() if c.initialized]

    # -- message formats ---------------------------------------------------------------------------

    @staticmethod
    def _now_ms() -> str:
        return str(int(time.time() * 1000))

    def book_event(self, t: SimToken) -> dict[str, Any]:
        # Real `book` frames list bids ascending and asks descending (best last), like REST /book.
        bids = [{"price": _fmt(t.price(k)), "size": _fmt(s)} for k, s in sorted(t.bids.items())]
        asks = [{"price": _fmt(t.price(k)), "size": _fmt(s)} for k, s in sorted(t.asks.items(), reverse=True)]
        return {"event_type": "book", "asset_id": t.token_id, "market": t.market, "bids": bids,
                "asks": asks, "timestamp": self._now_ms(), "hash": t.digest()}  # fmt: skip

    def price_change_event(self, t: SimToken, changes: list[tuple[str, float, float]]) -> dict[str, Any]:
        """Apply `changes` (side, price, new size) to the sim book and describe them."""
        items = [self.change_item(t, side, price, size) for side, price, size in changes]
        return self.wrap_changes(t, items)

    def change_item(self, t: SimToken, side: str, price: float, size: float) -> dict[str, Any]:
        """Apply one level change; best bid/ask are as they stand right after it, like the live feed."""
        t.apply(side, price, size)
        bb, ba = t.best_bid(), t.best_ask()
        return {"asset_id": t.token_id, "price": _fmt(price), "size": _fmt(size), "side": side,
                "hash": t.digest(), "best_bid": _fmt(t.price(bb)) if bb is not None else "0",
                "best_ask": _fmt(t.price(ba)) if ba is not None else "1"}  # fmt: skip

    def wrap_changes(self, t: SimToken, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"event_type": "price_change", "market": t.market, "timestamp": self._now_ms(),
                "price_changes": items}  # fmt: skip

    def trade_event(
        self, t: SimToken, price: float, size: float, side: str, fee_rate_bps: str = "0"
    ) -> dict[str, Any]:
        self._trades += 1
        tx_hash = "0x" + hashlib.sha256(f"{t.token_id}:{self._trades}".encode()).hexdigest()
        return {"event_type": "last_trade_price", "asset_id": t.token_id, "market": t.market,
                "price": _fmt(price), "size": _fmt(size), "side": side, "fee_rate_bps": fee_rate_bps,
                "timestamp": self._now_ms(), "transaction_hash": tx_hash}  # fmt: skip

    # -- sending -----------------------------------------------------------------------------------

    async def _send(self, client: _Client, text: str) -> bool:
        try:
            await client.ws.send(text)
        except Exception:
            return False
        self.sent += 1
        return True

    async def broadcast(self, token_id: str, text: str) -> int:
        """Send to every connection subscribed to `token_id`."""
        n = 0
        for client in list(self._clients.values()):
            if token_id in client.assets:
                n += await self._send(client, text)
        return n

    async def push(self, event_or_list: dict[str, Any] | list[dict[str, Any]]) -> int:
        """Send exact events as one frame to every connection subscribed to any asset they name
        (or to every initialized connection when they name none). Bypasses freeze."""
        events = event_or_list if isinstance(event_or_list, list) else [event_or_list]
        assets = set()
        for event in events:
            if "asset_id" in event:
                assets.add(str(event["asset_id"]))
            for change in event.get("price_changes") or []:
                assets.add(str(change.get("asset_id")))
        text = _json.encode(event_or_list).decode()
        n = 0
        for client in list(self._clients.values()):
            if client.initialized and (not assets or client.assets & assets):
                n += await self._send(client, text)
        return n

    async def send_raw(self, text: str | bytes) -> int:
        """Send any text (malformed JSON, unknown events) to every initialized connection."""
        n = 0
        for client in list(self._clients.values()):
            if client.initialized:
                with contextlib.suppress(Exception):
                    await client.ws.send(text)
                    n += 1
        return n

    async def set_book(
        self, token_id: str, bids: Iterable[tuple[float, float]], asks: Iterable[tuple[float, float]]
    ) -> int:
        """Replace a token's book and send the `book` event to its subscribers."""
        t = self.token(token_id)
        t.set_levels(bids, asks)
        return await self.broadcast(token_id, _json.encode(self.book_event(t)).decode())

    async def change(self, token_id: str, changes: list[tuple[str, float, float]]) -> int:
        """Apply level changes to the sim book and send them as one batched price_change."""
        t = self.token(token_id)
        return await self.broadcast(token_id, _json.encode(self.price_change_event(t, changes)).decode())

    async def drop_all(self, code: int = 1001, reason: str = "server going away") -> None:
        for client in list(self._clients.values()):
            with contextlib.suppress(Exception):
                await client.ws.close(code, reason)

    # -- random activity ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: every subscribed token gets a price_change, sometimes a trade and a book."""
        wanted = sorted({a for c in self._clients.values() for a in c.assets})
        rng = self._rng
        for token_id in wanted:
            t = self.token(token_id)
            if rng.random() < self.trade_prob and t.bids and t.asks:
                await self._random_trade(t)
                continue
            items = []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                side, ticks, size = t.random_change()  # applied at once, so the next pick sees it
                items.append(self.change_item(t, side, t.price(ticks), size))
            event = self.wrap_changes(t, items)
            await self.broadcast(token_id, _json.encode(event).decode())

    async def _random_trade(self, t: SimToken) -> None:
        # A taker hits the best bid (SELL) or lifts the best ask (BUY), eating part or all of it.
        rng = self._rng
        if rng.random() < 0.5:
            side, ticks = "SELL", max(t.bids)
            level = t.bids
        else:
            side, ticks = "BUY", min(t.asks)
            level = t.asks
        size = min(level[ticks], float(rng.choice((5, 10, 25, 50))))
        price = t.price(ticks)
        await self.broadcast(t.token_id, _json.encode(self.trade_event(t, price, size, side)).decode())
        book_side = "BUY" if side == "SELL" else "SELL"
        left = level[ticks] - size
        if rng.random() < self.book_after_trade_prob:
            t.apply(book_side, price, left)
            await self.broadcast(t.token_id, _json.encode(self.book_event(t)).decode())
        else:
            event = self.price_change_event(t, [(book_side, price, left)])
            await self.broadcast(t.token_id, _json.encode(event).decode())


async def _main(args: argparse.Namespace) -> None:
    tokens = [t for t in (args.tokens or "").split(",") if t]
    sim = PolymarketSim(args.host, args.port, rate_hz=args.rate, tokens=tokens, seed=args.seed)
    await sim.start()
    print(f"polymarket sim listening on {sim.url} ({args.rate} Hz, tokens: {tokens or 'any'})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", default="", help="comma-separated token ids to pre-create (any id works)")
    parser.add_argument("--rate", type=float, default=20.0, help="random-walk rounds per second (0: none)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
