"""ReferenceStrategy: quote a crypto binary around its Binance-implied fair value.

For each market: spot = Binance mid + basis; strike = configured (`above`) or the Binance price
captured at the window start (`up_down`); fair = P(spot ends above strike) under an online EWMA
volatility; quotes = fair -/+ half-spread (at least min_edge, wider with basis uncertainty),
skewed against inventory, on the tick grid, never crossing the Polymarket book. The YES ask is
sent as a NO bid at 1 - ask, so the strategy never needs to hold YES to sell it. Re-quotes only
when a price moves by requote_threshold, on a fill, or when a side appears or vanishes; stops
quoting stop_before_expiry_s before expiry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from polymm.executor.types import Fill, Quote, Side
from polymm.polymarket.book import OrderBook
from polymm.relay.events import Bbo
from polymm.strategy.fair_value import prob_above
from polymm.strategy.markets import MarketConfig
from polymm.strategy.quoting import TwoSided, needs_requote, two_sided
from polymm.strategy.volatility import EwmaVolatility

log = logging.getLogger("polymm.strategy")

Desired = Mapping[str, Sequence[Quote]]


class _MarketState:
    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.strike = config.strike
        self.fair: float | None = None
        self.quoted: TwoSided | None = None
        self.quoted_fair = 0.0  # fair value when the live quotes were set
        self.position = 0.0  # net YES shares: YES fills add, NO fills subtract
        self.yes_book: tuple[float | None, float | None] = (None, None)
        self.expired = False


class ReferenceStrategy:
    def __init__(self, markets: Sequence[MarketConfig], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.markets = [_MarketState(m) for m in markets]
        self._by_symbol: dict[str, list[_MarketState]] = {}
        self._by_token: dict[str, tuple[_MarketState, bool]] = {}
        self.vol: dict[str, EwmaVolatility] = {}
        self.mid: dict[str, float] = {}
        for state in self.markets:
            m = state.config
            self._by_symbol.setdefault(m.binance_symbol.upper(), []).append(state)
            self._by_token[m.yes_token] = (state, True)
            self._by_token[m.no_token] = (state, False)
            self.vol.setdefault(m.binance_symbol.upper(), EwmaVolatility(m.vol_prior_per_sqrt_s))

    # -- callbacks ------------------------------------------------------------------------------------

    def on_binance_bbo(self, bbo: Bbo) -> Desired | None:
        states = self._by_symbol.get(bbo.symbol)
        if states is None or bbo.bid <= 0 or bbo.ask <= 0:
            return None
        mid = (bbo.bid + bbo.ask) / 2
        self.mid[bbo.symbol] = mid
        self.vol[bbo.symbol].update(bbo.recv_ts, mid)
        now = self._clock()
        out: dict[str, list[Quote]] = {}
        for state in states:
            self._capture_strike(state, mid, now)
            self._requote(state, now, out)
        return out or None

    def on_polymarket_book(self, token_id: str, book: OrderBook, recv_ts: int) -> Desired | None:
        entry = self._by_token.get(token_id)
        if entry is None or not entry[1]:
            return None  # the YES book is enough: NO mirrors it
        state = entry[0]
        bid, ask = book.best_bid(), book.best_ask()
        state.yes_book = (bid[0] if bid else None, ask[0] if ask else None)
        out: dict[str, list[Quote]] = {}
        self._requote(state, self._clock(), out)
        return out or None

    def on_fill(self, fill: Fill) -> Desired | None:
        entry = self._by_token.get(fill.token_id)
        if entry is None:
            return None
        state, is_yes = entry
        signed = fill.size if fill.side is Side.BUY else -fill.size
        state.position += signed if is_yes else -signed
        out: dict[str, list[Quote]] = {}
        self._requote(state, self._clock(), out, force=True)
        return out or None

    def on_timer(self, now_ns: int) -> Desired | None:
        now = now_ns / 1e9
        out: dict[str, list[Quote]] = {}
        for state in self.markets:
            if not state.expired and now >= state.config.expiry_s - state.config.stop_before_expiry_s:
                state.expired = True
                log.info(
                    "market %s: %.0fs to expiry, quotes pulled",
                    state.config.name,
                    state.config.expiry_s - now,
                )
                self._set(state, TwoSided(None, None, 0.0), out)
        return out or None

    # -- internals ------------------------------------------------------------------------------------

    def _capture_strike(self, state: _MarketState, mid: float, now: float) -> None:
        start = state.config.start_s
        if state.strike is None and start is not None and now >= start:
            # The market resolves on Chainlink's open, which we approximate by Binance + basis.
            state.strike = mid + state.config.basis
            log.info("market %s: opening price captured at %.2f", state.config.name, state.strike)

    def fair_value(self, state: _MarketState, now: float) -> float | None:
        m = state.config
        mid = self.mid.get(m.binance_symbol.upper())
        if mid is None or state.strike is None:
            return None
        spot = mid + m.basis
        t = max(0.0, m.expiry_s - now)
        extra = (m.basis_uncertainty / spot) ** 2 if spot > 0 else 0.0
        return prob_above(spot, state.strike, t, self.vol[m.binance_symbol.upper()].sigma_per_sqrt_s, extra)

    def _requote(
        self, state: _MarketState, now: float, out: dict[str, list[Quote]], force: bool = False
    ) -> None:
        m = state.config
        if state.expired or now >= m.expiry_s - m.stop_before_expiry_s:
            return
        fair = self.fair_value(state, now)
        if fair is None:
            return
        state.fair = fair
        # Uncertainty about where the resolution price sits widens the spread near expiry.
        basis_sens = (
            fair * (1 - fair) * 4 * (m.basis_uncertainty / max(1e-9, self.mid[m.binance_symbol.upper()]))
        )
        target = two_sided(
            fair, tick=m.tick_size, half_spread=max(m.min_edge, m.min_edge + basis_sens),
            position=state.position, max_position=m.max_position, size=m.quote_size, skew_per_max=m.skew,
            best_bid=state.yes_book[0], best_ask=state.yes_book[1], min_size=m.min_order_size,
        )  # fmt: skip
        bid, ask = state.yes_book
        if force or needs_requote(
            state.quoted, target, fair - state.quoted_fair, m.requote_threshold, bid, ask
        ):
            state.quoted_fair = fair
            self._set(state, target, out)

    def _set(self, state: _MarketState, target: TwoSided, out: dict[str, list[Quote]]) -> None:
        m = state.config
        state.quoted = target
        out[m.yes_token] = (
            [Quote(m.yes_token, Side.BUY, target.bid, target.size)] if target.bid is not None else []
        )
        no_price = round(1 - target.ask, 6) if target.ask is not None else None
        out[m.no_token] = [Quote(m.no_token, Side.BUY, no_price, target.size)] if no_price is not None else []
