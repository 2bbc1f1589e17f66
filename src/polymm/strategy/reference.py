"""ReferenceStrategy: quote crypto binaries around their Binance-implied fair value.

Per market, on every Binance BBO of its symbol, Polymarket book update, fill and timer tick:
- spot = Binance mid + basis; strike = configured, or for `up_down` the Binance mid (+ basis)
  captured at start_time. The market really resolves on Chainlink BTC/USD, so the captured open is
  an estimate: `basis` moves it, `basis_uncertainty` widens both the distribution and the spread.
  If no Binance mid lands within `strike_capture_tolerance_s` of start_time (e.g. a restart in the
  middle of a window) the market is not quoted unless the config gives the strike;
- fair = P(S_T > K) under a driftless lognormal with the symbol's EWMA volatility;
- uncertainty = dP/dlnS * basis_uncertainty/S, dP/dlnS * sigma * sqrt(adverse_horizon_s) (how far
  the spot can move before we react) and dP/dsigma * sigma * vol_rel_error, added in quadrature;
  half-spread = max(min_edge, k * uncertainty), so quotes widen by themselves near expiry;
- quotes from `quoting.make_quotes` (skew, limits, post-only against the YES book and the
  mirrored NO book), re-sent only when `needs_requote` says so or after a fill.
Quotes are pulled (each token mapped to []) `stop_before_expiry_s` before expiry, when the
Binance mid is older than `stale_after_s`, when the caller flags staleness in the context, and
when fair value is more than `max_fair_deviation` away from the Polymarket mid (a wrong strike or
swapped tokens look like that).

Positions come from the StrategyContext: the caller books a fill into it (ctx.apply_fill) before
calling on_fill. Time is ctx.now_ns (on_timer: its argument); the volatility grid uses the
sender's Binance receive stamp (bbo.recv_ts) so relay jitter does not add variance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from polymm.relay.events import Bbo
from polymm.strategy.fair_value import digital
from polymm.strategy.interface import BookLevels, Desired, DesiredQuote, Fill, Side, StrategyContext
from polymm.strategy.markets import MarketConfig
from polymm.strategy.quoting import QuoteParams, TwoSided, make_quotes, needs_requote, ticks_per_unit
from polymm.strategy.volatility import EwmaVolatility

log = logging.getLogger("polymm.strategy")

_INF = math.inf
_FAR = "fair value far from the Polymarket mid"


@dataclass(frozen=True, slots=True)
class StrategyParams:
    vol_halflife_s: float = 300.0
    vol_bucket_s: float = 1.0
    vol_floor_annual: float = 0.05
    vol_cap_annual: float = 5.0
    vol_warmup: int = 60  # buckets before the estimate may go below the prior
    uncertainty_k: float = 1.0
    adverse_horizon_s: float = 1.0
    vol_rel_error: float = 0.25
    stale_after_s: float = 3.0
    strike_capture_tolerance_s: float = 2.0
    max_fair_deviation: float | None = 0.25  # None: no check against the Polymarket mid


class _Symbol:
    __slots__ = ("markets", "mid", "mid_ns", "prev_mid", "prev_ns", "vol")

    def __init__(self, vol: EwmaVolatility) -> None:
        self.vol = vol
        self.mid = 0.0
        self.mid_ns = 0  # ctx time the mid arrived
        self.prev_mid = 0.0
        self.prev_ns = 0
        self.markets: list[_Market] = []


class _Market:
    __slots__ = (
        "book",
        "config",
        "done",
        "expiry_ns",
        "fair",
        "live",
        "no",
        "params",
        "reason",
        "start_ns",
        "stop_ns",
        "strike",
        "strike_failed",
        "sym",
        "threshold",
        "yes",
    )

    def __init__(self, config: MarketConfig, sym: _Symbol, params: StrategyParams) -> None:
        self.config = config
        self.sym = sym
        self.yes, self.no = config.yes_token, config.no_token
        self.expiry_ns = int(config.expiry_s * 1e9)
        start = config.start_s
        self.start_ns = None if start is None else int(start * 1e9)
        self.stop_ns = self.expiry_ns - int(config.stop_before_expiry_s * 1e9)
        self.strike = config.strike
        self.strike_failed = False
        self.threshold = config.requote_threshold
        self.params = QuoteParams(
            ticks_per_unit=ticks_per_unit(config.tick_size), min_edge=config.min_edge,
            quote_size=config.quote_size, min_size=config.min_order_size, max_position=config.max_position,
            max_net=config.net_limit, max_notional=config.max_notional, skew=config.skew,
            uncertainty_k=params.uncertainty_k, yes_only=config.quote_mode == "yes_only",
        )  # fmt: skip
        self.book: list[float | None] = [None, None, None, None]  # YES bid, YES ask, NO bid, NO ask
        self.live: TwoSided | None = None  # what we last asked for; None = never told the caller
        self.fair: float | None = None
        self.done = False
        self.reason = ""


class ReferenceStrategy:
    """Implements interface.Strategy. `ctx` is shared with the caller, who keeps it current."""

    def __init__(
        self,
        markets: Sequence[MarketConfig],
        ctx: StrategyContext | None = None,
        params: StrategyParams | None = None,
    ) -> None:
        self.ctx = ctx if ctx is not None else StrategyContext()
        self.params = p = params if params is not None else StrategyParams()
        self._symbols: dict[str, _Symbol] = {}
        self._tokens: dict[str, _Market] = {}
        self.markets: list[_Market] = []
        for config in markets:
            key = config.binance_symbol.upper()
            sym = self._symbols.get(key)
            prior = max([m.vol_prior_annual for m in markets if m.binance_symbol.upper() == key])
            if sym is None:
                sym = self._symbols[key] = _Symbol(
                    EwmaVolatility(
                        prior, halflife_s=p.vol_halflife_s, bucket_s=p.vol_bucket_s,
                        floor_annual=p.vol_floor_annual, cap_annual=p.vol_cap_annual, warmup=p.vol_warmup,
                    )
                )  # fmt: skip
            state = _Market(config, sym, p)
            sym.markets.append(state)
            self.markets.append(state)
            self._tokens[config.yes_token] = state
            self._tokens[config.no_token] = state
        self._stale_ns = int(p.stale_after_s * 1e9)
        self._capture_ns = int(p.strike_capture_tolerance_s * 1e9)
        self._move = math.sqrt(p.adverse_horizon_s)

    # -- callbacks ------------------------------------------------------------------------------------

    def on_binance_bbo(self, bbo: Bbo) -> Desired:
        sym = self._symbols.get(bbo.symbol)
        bid, ask = bbo.bid, bbo.ask
        if sym is None or not (0.0 < bid <= ask < _INF):
            return {}
        now = self.ctx.now_ns
        mid = 0.5 * (bid + ask)
        sym.prev_mid, sym.prev_ns = sym.mid, sym.mid_ns
        sym.mid, sym.mid_ns = mid, now
        sym.vol.update(bbo.recv_ts or now, mid)
        out: Desired = {}
        for state in sym.markets:
            if state.strike is None and not state.strike_failed:
                self._capture(state, now)
            self._decide(state, now, out, False)
        return out

    def on_polymarket_book(
        self,
        token_id: str,
        best_bid: float | None,
        best_ask: float | None,
        book_levels: BookLevels | None,
        ts: int,
    ) -> Desired:
        state = self._tokens.get(token_id)
        if state is None:
            return {}
        i = 0 if token_id == state.yes else 2
        state.book[i], state.book[i + 1] = best_bid, best_ask
        out: Desired = {}
        self._decide(state, self.ctx.now_ns, out, False)
        return out

    def on_fill(self, fill: Fill) -> Desired:
        state = self._tokens.get(fill.token_id)
        if state is None:
            return {}
        out: Desired = {}
        self._decide(state, self.ctx.now_ns, out, True)
        return out

    def on_timer(self, now_ns: int) -> Desired:
        out: Desired = {}
        for state in self.markets:
            if (
                state.strike is None
                and not state.strike_failed
                and state.start_ns is not None
                and now_ns > state.start_ns + self._capture_ns
            ):
                self._capture_failed(state, "no Binance mid near start_time")
            self._decide(state, now_ns, out, False)
        return out

    def on_tick_size_change(self, token_id: str, tick_size: float) -> Desired:
        """Polymarket moved the market to a new tick (near 0 or 1): re-grid both tokens' quotes."""
        state = self._tokens.get(token_id)
        if state is None:
            return {}
        n = ticks_per_unit(tick_size)
        if n == state.params.ticks_per_unit:
            return {}
        log.info("market %s: tick size now %g", state.config.name, tick_size)
        state.params = replace(state.params, ticks_per_unit=n)
        out: Desired = {}
        self._decide(state, self.ctx.now_ns, out, True)  # the old grid's quotes may be off-grid now
        return out

    # -- views (for logs, tests, a backtester) --------------------------------------------------------

    def market(self, name: str) -> _Market:
        return next(m for m in self.markets if m.config.name == name)

    def sigma(self, symbol: str) -> float:
        return self._symbols[symbol.upper()].vol.sigma

    def fair_value(self, token_id: str) -> float | None:
        """P(YES) of the market `token_id` belongs to (YES or NO token), as last computed; None
        before the first computation or for an unknown token."""
        state = self._tokens.get(token_id)
        return None if state is None else state.fair

    # -- internals ------------------------------------------------------------------------------------

    def _capture(self, state: _Market, now: int) -> None:
        start = state.start_ns
        if start is None or now < start:
            return
        sym = state.sym
        best_ns, best_mid = now, sym.mid
        if sym.prev_ns and start - sym.prev_ns < now - start:  # the last mid before the open is closer
            best_ns, best_mid = sym.prev_ns, sym.prev_mid
        if abs(best_ns - start) > self._capture_ns:
            self._capture_failed(state, f"nearest Binance mid {abs(best_ns - start) / 1e9:.1f}s from start")
            return
        state.strike = best_mid + state.config.basis_usd(best_mid)
        log.info("market %s: opening price captured at %.2f (Binance+basis)", state.config.name, state.strike)

    def _capture_failed(self, state: _Market, why: str) -> None:
        state.strike_failed = True
        log.error(
            "market %s: cannot capture the opening price (%s); not quoting it. Set `strike` to the "
            "Chainlink open to quote it.",
            state.config.name,
            why,
        )

    def _decide(self, state: _Market, now: int, out: Desired, filled: bool) -> None:
        target = self._target(state, now)
        live = state.live
        if target is None:
            if live is None or not live.empty:
                state.live = TwoSided(state.params.ticks_per_unit)
                out[state.yes] = []
                out[state.no] = []
            return
        if state.reason:
            log.info("market %s: quoting (was: %s)", state.config.name, state.reason)
            state.reason = ""
        if not needs_requote(live, target, state.threshold, filled):
            return
        state.live = target
        yes, no = state.yes, state.no
        bids: list[DesiredQuote] = []
        asks: list[DesiredQuote] = []
        if target.bid_ticks:
            bids.append(DesiredQuote(yes, Side.BUY, target.bid_ticks / target.n, target.bid_size))
        if target.ask_ticks:
            if state.params.yes_only:
                bids.append(DesiredQuote(yes, Side.SELL, target.ask_ticks / target.n, target.ask_size))
            else:
                price = (target.n - target.ask_ticks) / target.n
                asks.append(DesiredQuote(no, Side.BUY, price, target.ask_size))
        out[yes] = bids
        out[no] = asks

    def _off(self, state: _Market, reason: str) -> None:
        if state.reason != reason:
            log.info("market %s: not quoting (%s)", state.config.name, reason)
            state.reason = reason

    def _target(self, state: _Market, now: int) -> TwoSided | None:
        if state.done:
            return None
        if now >= state.stop_ns:
            state.done = True
            self._off(state, "too close to expiry")
            return None
        ctx = self.ctx
        if ctx.binance_stale or ctx.polymarket_stale:
            self._off(state, "caller reports stale data")
            return None
        if ctx.halted:
            self._off(state, "executor halted")
            return None
        sym = state.sym
        if sym.mid_ns == 0 or now - sym.mid_ns > self._stale_ns:
            self._off(state, "no fresh Binance mid")
            return None
        strike = state.strike
        if strike is None:
            self._off(state, "no strike yet")
            return None
        m = state.config
        mid = sym.mid
        # m.basis_usd(mid) and m.basis_uncertainty_usd(mid), inlined (the same arithmetic): this
        # runs once per market per Binance BBO.
        if m.basis_unit == "usd":
            spot = mid + m.basis
            basis_unc = m.basis_uncertainty
        else:
            spot = mid + mid * m.basis * 1e-4
            basis_unc = mid * m.basis_uncertainty * 1e-4
        rel_basis = basis_unc / spot if spot > 0.0 else 0.0
        sigma = sym.vol.sigma
        t_s = (state.expiry_ns - now) * 1e-9
        fair, d_lns, d_sigma = digital(spot, strike, t_s, sigma, rel_basis * rel_basis)
        state.fair = fair
        u_move = d_lns * sigma * self._move
        u_basis = d_lns * rel_basis
        u_vol = d_sigma * sigma * self.params.vol_rel_error
        uncertainty = math.sqrt(u_move * u_move + u_basis * u_basis + u_vol * u_vol)

        # The YES book and the mirrored NO book (NO ask at q = YES bid at 1 - q): respect both.
        yes_bid, yes_ask, no_bid, no_ask = state.book
        best_bid = yes_bid
        if no_ask is not None and (best_bid is None or 1.0 - no_ask > best_bid):
            best_bid = 1.0 - no_ask
        best_ask = yes_ask
        if no_bid is not None and (best_ask is None or 1.0 - no_bid < best_ask):
            best_ask = 1.0 - no_bid
        limit = self.params.max_fair_deviation
        if (
            limit is not None
            and best_bid is not None
            and best_ask is not None
            and abs(fair - 0.5 * (best_bid + best_ask)) > limit
        ):
            if state.reason != _FAR:
                log.warning("market %s: fair %.3f vs Polymarket %.3f/%.3f", m.name, fair, best_bid, best_ask)
            self._off(state, _FAR)
            return None

        positions = ctx.positions
        yes_pos, no_pos = positions.get(state.yes), positions.get(state.no)
        yes_shares = yes_pos.shares if yes_pos is not None else 0.0
        no_shares = no_pos.shares if no_pos is not None else 0.0
        spent = 0.0
        if yes_pos is not None and yes_pos.cost > 0.0:
            spent += yes_pos.cost
        if no_pos is not None and no_pos.cost > 0.0:
            spent += no_pos.cost
        return make_quotes(
            fair, state.params, uncertainty=uncertainty, yes_shares=yes_shares, no_shares=no_shares,
            spent=spent, best_bid=best_bid, best_ask=best_ask,
        )  # fmt: skip
