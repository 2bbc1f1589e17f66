"""A local WebSocket server that speaks Binance's market-data formats, for tests, demo and bench.

Serves combined streams (`/stream?streams=...`, and the futures routes `/public/stream` and
`/market/stream`) with spot or USD-M payloads: bookTicker, trade, aggTrade. Every connection
subscribed to a stream receives the same messages with the same ids, as on Binance, so
make-before-break rotation can be tested. Test hooks: push exact events, drop every connection,
announce serverShutdown, freeze the data flow, blast N messages for benchmarks, send raw
(non-combined) payloads. `time_unit="us"` sends times in microseconds, as Binance spot does for
a stream opened with `timeUnit=MICROSECOND`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection

from polymm.sim.ws_sim import TickingWsSim

log = logging.getLogger("polymm.sim.binance")
_json = msgspec.json.Encoder()


class _Symbol:
    def __init__(self, name: str, mid: float, rng: random.Random) -> None:
        self.name = name
        self.mid = mid
        self.update_id = rng.randrange(10**9, 10**10)
        self.trade_id = rng.randrange(10**8, 10**9)
        self.agg_id = rng.randrange(10**8, 10**9)


class BinanceSim(TickingWsSim):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        market: str = "spot",
        rate_hz: float = 20.0,
        trade_every: int = 3,
        ping_interval_s: float | None = 20.0,
        seed: int = 7,
        autostart: bool = True,
        time_unit: str = "ms",
    ) -> None:
        super().__init__(host, port, rate_hz, ticking=autostart)
        self.serve_options = {"ping_interval": ping_interval_s, "ping_timeout": ping_interval_s}
        self.market = market
        if time_unit not in ("ms", "us"):
            raise ValueError(f"time_unit must be ms or us, not {time_unit!r}")
        self.time_unit = time_unit
        self.trade_every = trade_every
        self.ping_interval_s = ping_interval_s
        self._rng = random.Random(seed)
        self._symbols: dict[str, _Symbol] = {}
        self._subs: dict[ServerConnection, frozenset[str]] = {}
        self.connects = 0
        self.requested: list[tuple[str, tuple[str, ...]]] = []  # (path, streams) per connection
        self.sent = 0

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._subs)

    # -- connections ------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        split = urlsplit(ws.request.path if ws.request else "/")
        streams: tuple[str, ...] = ()
        if split.path.endswith("/stream"):
            raw = parse_qs(split.query).get("streams", [""])[0]
            streams = tuple(s for s in raw.split("/") if s)
        elif "/ws/" in split.path:
            streams = (split.path.rsplit("/ws/", 1)[1],)
        if not streams:
            await ws.close(1008, "no streams requested")
            return
        self.connects += 1
        self.requested.append((split.path, streams))
        for stream in streams:
            symbol = stream.split("@", 1)[0]
            self.symbol(symbol)
        self._subs[ws] = frozenset(streams)
        self._changed.set()
        try:
            async for message in ws:  # clients may send SUBSCRIBE etc.; answer like Binance does
                with contextlib.suppress(msgspec.DecodeError):
                    request = msgspec.json.decode(message)
                    if isinstance(request, dict) and "id" in request:
                        await ws.send(_json.encode({"result": None, "id": request["id"]}).decode())
        except Exception:  # a client vanishing is normal here
            pass
        finally:
            self._subs.pop(ws, None)
            self._changed.set()

    def symbol(self, name: str) -> _Symbol:
        name = name.lower()
        state = self._symbols.get(name)
        if state is None:
            mid = {"btcusdt": 97000.0, "ethusdt": 3600.0, "solusdt": 240.0}.get(name, 100.0)
            state = self._symbols[name] = _Symbol(name, mid, self._rng)
        return state

    # -- message formats ---------------------------------------------------------------------------

    def bbo_message(self, s: _Symbol, bid: float, bid_qty: float, ask: float, ask_qty: float) -> str:
        s.update_id += self._rng.randint(1, 3)  # ids advance but not contiguously, as on Binance
        stream = f"{s.name}@bookTicker"
        if self.market == "spot":
            data = {"u": s.update_id, "s": s.name.upper(), "b": f"{bid:.8f}", "B": f"{bid_qty:.8f}",
                    "a": f"{ask:.8f}", "A": f"{ask_qty:.8f}"}  # fmt: skip
        else:
            now = self._now()
            data = {"e": "bookTicker", "u": s.update_id, "E": now, "T": now - 1, "s": s.name.upper(),
                    "b": f"{bid:.2f}", "B": f"{bid_qty:.3f}",
                    "a": f"{ask:.2f}", "A": f"{ask_qty:.3f}"}  # fmt: skip
        return _json.encode({"stream": stream, "data": data}).decode()

    def _now(self) -> int:
        return time.time_ns() // (1000 if self.time_unit == "us" else 1_000_000)

    def trade_message(self, s: _Symbol, price: float, qty: float, buyer_is_maker: bool) -> str:
        now = self._now()
        if self.market == "spot":
            s.trade_id += 1
            stream = f"{s.name}@trade"
            data = {"e": "trade", "E": now, "s": s.name.upper(), "t": s.trade_id, "p": f"{price:.8f}",
                    "q": f"{qty:.8f}", "T": now, "m": buyer_is_maker, "M": True}  # fmt: skip
        else:
            s.agg_id += 1
            stream = f"{s.name}@aggTrade"
            data = {"e": "aggTrade", "E": now, "s": s.name.upper(), "a": s.agg_id, "p": f"{price:.2f}",
                    "q": f"{qty:.3f}", "nq": f"{qty:.3f}", "f": s.agg_id * 3, "l": s.agg_id * 3 + 2,
                    "T": now - 1, "m": buyer_is_maker}  # fmt: skip
        return _json.encode({"stream": stream, "data": data}).decode()

    def random_bbo(self, s: _Symbol) -> str:
        s.mid *= 1 + self._rng.gauss(0, 0.00005)
        half = max(0.01, s.mid * 0.000001)
        return self.bbo_message(
            s, s.mid - half, self._rng.uniform(0.01, 5), s.mid + half, self._rng.uniform(0.01, 5)
        )

    def random_trade(self, s: _Symbol) -> str:
        maker = self._rng.random() < 0.5
        return self.trade_message(s, s.mid, self._rng.uniform(0.0001, 1), maker)

    # -- sending -------------------------------------------------------------------------------------

    def _trade_stream(self, symbol: str) -> str:
        return f"{symbol}@{'trade' if self.market == 'spot' else 'aggTrade'}"

    async def send(self, stream: str, message: str) -> int:
        """Send `message` to every connection subscribed to `stream`; returns how many got it."""
        n = 0
        for ws, streams in list(self._subs.items()):
            if stream in streams:
                with contextlib.suppress(Exception):
                    await ws.send(message)
                    n += 1
        self.sent += n
        return n

    async def push_bbo(
        self, symbol: str, bid: float, ask: float, bid_qty: float = 1.0, ask_qty: float = 1.0
    ) -> int:
        s = self.symbol(symbol)
        return await self.send(f"{s.name}@bookTicker", self.bbo_message(s, bid, bid_qty, ask, ask_qty))

    async def push_trade(self, symbol: str, price: float, qty: float, buyer_is_maker: bool = False) -> int:
        s = self.symbol(symbol)
        return await self.send(self._trade_stream(s.name), self.trade_message(s, price, qty, buyer_is_maker))

    @staticmethod
    def unwrapped(message: str) -> str:
        """The payload of a combined-stream message alone, as a raw /ws/<stream> connection gets it."""
        return _json.encode(msgspec.json.decode(message)["data"]).decode()

    async def push_raw(self, text: str | bytes) -> None:
        for ws in list(self._subs):
            with contextlib.suppress(Exception):
                await ws.send(text)

    async def server_shutdown(self) -> None:
        """Binance's warning before a server goes away (combined streams wrap it as !serverShutdown)."""
        msg = _json.encode(
            {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": int(time.time() * 1000)}}
        )
        await self.push_raw(msg.decode())

    async def drop_all(self, code: int = 1001, reason: str = "server going away") -> None:
        for ws in list(self._subs):
            with contextlib.suppress(Exception):
                await ws.close(code, reason)

    def subscribed(self, symbols: Iterable[str] | None = None) -> list[str]:
        wanted = {s.lower() for s in symbols} if symbols else None
        out = []
        for streams in self._subs.values():
            out += [s for s in streams if wanted is None or s.split("@")[0] in wanted]
        return out

    async def tick(self) -> None:
        """One round of random activity on every subscribed symbol."""
        symbols = {stream.split("@", 1)[0] for streams in self._subs.values() for stream in streams}
        for name in sorted(symbols):
            s = self.symbol(name)
            await self.send(f"{name}@bookTicker", self.random_bbo(s))
            if self.trade_every and self._rng.randrange(self.trade_every) == 0:
                await self.send(self._trade_stream(name), self.random_trade(s))

    async def blast(self, count: int, rate_hz: float = 0.0, symbol: str = "btcusdt") -> float:
        """Send `count` BBO messages for `symbol` (as fast as possible, or evenly paced).
        Returns the seconds taken."""
        s = self.symbol(symbol)
        stream = f"{s.name}@bookTicker"
        start = time.perf_counter()
        slot = start
        for i in range(count):
            await self.send(stream, self.random_bbo(s))
            if rate_hz > 0:
                # Even spacing over an exact rate: after a late wake-up (a loaded machine), go on
                # half a period later rather than catching up with messages back to back.
                slot = max(slot + 1 / rate_hz, time.perf_counter() + 0.5 / rate_hz)
                await _sleep_until(slot)
            elif i % 64 == 63:
                await asyncio.sleep(0)  # let the socket drain
        return time.perf_counter() - start


async def _sleep_until(target: float) -> None:
    """Sleep until perf_counter() reaches `target`, to within the kernel's timer slack.

    Event-loop timers have 1 ms resolution: uvloop turns a sub-ms sleep into a busy loop (a core
    spun) and then sends two messages back to back. So the loop sleeps only the whole
    milliseconds, and the rest (under 2 ms) is a blocking sleep: a benchmark sender has nothing
    else to do in that time, and its writes are already on the socket."""
    delay = target - time.perf_counter()
    if delay > 0.002:
        await asyncio.sleep(delay - 0.0015)
    rest = target - time.perf_counter()
    if rest > 0:
        time.sleep(rest)  # noqa: ASYNC251  (deliberate: sub-ms precision, see above)


async def _main(args: argparse.Namespace) -> None:
    sim = BinanceSim(args.host, args.port, market=args.market, rate_hz=args.rate)
    await sim.start()
    print(f"binance sim listening on {sim.url} ({args.market}, {args.rate} Hz)", flush=True)
    if args.blast:
        await sim.wait_connections(args.wait_subscribers, timeout_s=60)
        await asyncio.sleep(args.settle)
        took = await sim.blast(args.blast, args.blast_rate)
        print(f"blasted {args.blast} messages in {took:.3f}s", flush=True)
        await asyncio.sleep(args.settle)
        await sim.stop()
        return
    await asyncio.Event().wait()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--market", choices=("spot", "futures"), default="spot")
    parser.add_argument("--rate", type=float, default=20.0, help="random-walk rounds per second (0: none)")
    parser.add_argument("--blast", type=int, default=0, help="send this many BBO messages, then exit")
    parser.add_argument("--blast-rate", type=float, default=0.0, help="messages/s for --blast (0: max)")
    parser.add_argument("--wait-subscribers", type=int, default=1)
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
