"""Probability that a price ends above a strike: a cash-or-nothing digital under a driftless lognormal.

Model: S_T = S * exp(sigma W_T - sigma^2 T / 2) (a martingale: no drift, no rates over minutes to
hours), so P(S_T > K) = N(d2) with d2 = (ln(S/K) - v/2) / sqrt(v), v = sigma^2 T + extra_var.
`extra_var` is extra log-variance, independent of the price path, for not knowing where the
resolution price (Chainlink) sits against Binance: (basis_uncertainty / S)^2.

Why lognormal and not normal: for the horizons quoted here (seconds to a day, sqrt(v) below a few
percent) the two differ by O(sqrt(v)) * phi(d) -- under half a probability point -- and the
lognormal costs the same, keeps S positive and gives the -v/2 term that puts P(S_T > S) just below
one half. The normal approximation would be N(ln(S/K) / sqrt(v)).

Limits: the total standard deviation is floored at MIN_SD (1e-6 in log terms, about 0.1 USD on
BTC), so at T = 0 or sigma = 0 the price is a step of width ~1e-6 around the strike: 1 above,
0 below, 0.5 at the strike, never a division by zero. strike <= 0 -> 1, spot <= 0 -> 0.
"""

from __future__ import annotations

import math

MIN_SD = 1e-6
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def norm_cdf(x: float) -> float:
    # erfc keeps relative precision in the lower tail, where 1 + erf(x) cancels.
    return 0.5 * math.erfc(-x * _INV_SQRT2)


def norm_pdf(x: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def prob_above(spot: float, strike: float, t_s: float, sigma: float, extra_var: float = 0.0) -> float:
    """P(S_T > strike). `sigma` per sqrt(second), `t_s` seconds, `extra_var` added log-variance."""
    if strike <= 0.0:
        return 1.0
    if spot <= 0.0:
        return 0.0
    var = sigma * sigma * t_s if t_s > 0.0 else 0.0
    if extra_var > 0.0:
        var += extra_var
    sd = math.sqrt(var) if var > MIN_SD * MIN_SD else MIN_SD
    return norm_cdf((math.log(spot / strike) - 0.5 * var) / sd)


def digital(
    spot: float, strike: float, t_s: float, sigma: float, extra_var: float = 0.0
) -> tuple[float, float, float]:
    """(P, dP/dln S, dP/dsigma) in one pass, for the quoting uncertainty.

    dP/dln S = phi(d2) / sd: how much a relative move of the spot (or of the basis) moves P.
    dP/dsigma: how much a wrong volatility moves P (zero at the money, largest off the money)."""
    if strike <= 0.0:
        return 1.0, 0.0, 0.0
    if spot <= 0.0:
        return 0.0, 0.0, 0.0
    var_t = sigma * sigma * t_s if t_s > 0.0 else 0.0
    var = var_t + extra_var if extra_var > 0.0 else var_t
    if var <= MIN_SD * MIN_SD:
        var, sd = 0.0, MIN_SD
    else:
        sd = math.sqrt(var)
    x = math.log(spot / strike)
    d2 = (x - 0.5 * var) / sd
    density = _INV_SQRT_2PI * math.exp(-0.5 * d2 * d2)  # norm_pdf(d2), inlined (hot path)
    p = 0.5 * math.erfc(-d2 * _INV_SQRT2)  # norm_cdf(d2)
    if var <= 0.0:
        return p, density / sd, 0.0
    # d(d2)/dv = -x / (2 v^1.5) - 1 / (4 sqrt v); dv/dsigma = 2 sigma t
    dd2_dv = -x / (2.0 * var * sd) - 0.25 / sd
    return p, density / sd, density * dd2_dv * 2.0 * sigma * max(t_s, 0.0)
