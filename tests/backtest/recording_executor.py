"""trading-executor with its strategy callbacks recorded (diagnostics for the fidelity run only).

Runs the real service (`polymm.executor.service.main`); the only change is that the strategy the
service builds is wrapped so that every callback and its answer is appended to $CALLBACK_LOG as
one JSON line: what the strategy saw, when, and what it asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polymm.executor.service as service
import polymm.executor.strategy_bridge as bridge


class Recorder:
    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.ctx = inner.ctx
        self._out = path.open("a", buffering=1)

    def _log(self, name: str, seen: dict[str, Any], desired: Any) -> Any:
        out = None if desired is None else {t[:2]: [q.price for q in qs] for t, qs in desired.items()}
        self._out.write(json.dumps({"cb": name, "now": self.ctx.now_ns, **seen, "desired": out}) + "\n")
        return desired

    def on_binance_bbo(self, bbo: Any) -> Any:
        d = self.inner.on_binance_bbo(bbo)
        return self._log("bbo", {"u": bbo.update_id, "arrival": bbo.arrival_ts, "bid": bbo.bid}, d)

    def on_polymarket_book(self, token_id: str, book: Any, recv_ts: int) -> Any:
        d = self.inner.on_polymarket_book(token_id, book, recv_ts)
        bid, ask = book.best_bid(), book.best_ask()
        return self._log("book", {"token": token_id[:2], "recv": recv_ts, "bid": bid and bid[0],
                                  "ask": ask and ask[0]}, d)  # fmt: skip

    def on_fill(self, fill: Any) -> Any:
        return self._log("fill", {"token": fill.token_id[:2]}, self.inner.on_fill(fill))

    def on_void(self, fill: Any) -> None:
        self.inner.on_void(fill)

    def on_timer(self, now_ns: int) -> Any:
        return self._log("timer", {}, self.inner.on_timer(now_ns))

    def on_tick_size_change(self, token_id: str, tick: float) -> Any:
        return self.inner.on_tick_size_change(token_id, tick)


def main() -> int:
    build = bridge.build_strategy

    def recorded(path: Path) -> Any:
        adapter, markets = build(path)
        return Recorder(adapter, Path(os.environ["CALLBACK_LOG"])), markets

    bridge.build_strategy = recorded
    return service.main([])


if __name__ == "__main__":
    raise SystemExit(main())
