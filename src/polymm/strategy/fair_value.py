"""Probability that a price ends above a strike: a digital option under a driftless lognormal.

Horizons here are seconds to hours, where drift is negligible next to volatility; the lognormal
keeps the price positive and gives the -sigma^2 t / 2 term that makes P(S_T > S_0) slightly below
one half. Uncertainty about the resolution price (Binance vs Chainlink basis) adds variance.
"""

from __future__ import annotations

import math

_SQRT2 = math.sqrt(2.0)


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def prob_above(
    spot: float, strike: float, t_s: float, sigma_per_sqrt_s: float, extra_var: float = 0.0
) -> float:
    """P(S_T > K) with S_T = spot * exp(sigma W_T - sigma^2 T / 2); `extra_var` is added log-variance
    (e.g. (basis_uncertainty / spot)^2). At expiry or zero variance: 1, 0, or 0.5 at the strike."""
    if strike <= 0:
        return 1.0
    if spot <= 0:
        return 0.0
    var = max(0.0, sigma_per_sqrt_s) ** 2 * max(0.0, t_s) + max(0.0, extra_var)
    log_moneyness = math.log(spot / strike)
    if var <= 1e-18:
        return 1.0 if log_moneyness > 0 else 0.0 if log_moneyness < 0 else 0.5
    sd = math.sqrt(var)
    return norm_cdf((log_moneyness - 0.5 * var) / sd)
