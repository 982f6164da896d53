"""Student's t widening of a standard deviation that was itself estimated from few degrees of freedom.

A self-estimated sd resting on nu residual degrees of freedom (a fit to 8 points with 6 coefficients has
nu = 2) is itself uncertain: mean +- 1.96 sd then covers far less than 95 % of new errors whenever the few
residuals happen to be small. The predictive interval of a Gaussian whose variance rests on nu degrees of
freedom is Student's t with nu degrees of freedom, so an sd meant to be read as "2 sd covers 95 %" is
multiplied by t_0.975(nu) / 1.96: x 2.20 at nu = 2, x 1.31 at 5, x 1.14 at 10, x 1.04 at 30.

No scipy here: the daemon loads profiles without it (40 MB). Exact quantiles up to nu = 30, the
Cornish-Fisher expansion beyond (within 1e-4 of scipy's there).
"""

from __future__ import annotations

__all__ = ["Z95", "t975", "widening"]

Z95 = 1.959964  # the normal distribution's two-sided 95 % point

# t_0.975(nu) for nu = 1..30 (scipy.stats.t.ppf(0.975, nu), 4 decimals; tests/core/test_widening.py checks them)
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t975(nu: float) -> float:
    """Student's t two-sided 95 % point for ``nu`` >= 1 degrees of freedom (fractional nu rounds down)."""
    if nu < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {nu}")
    if nu <= len(_T975):
        return _T975[int(nu) - 1]
    z = Z95
    return (z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3))


def widening(nu: float) -> float:
    """The factor t_0.975(nu) / 1.96 (>= 1) for an sd estimated from ``nu`` degrees of freedom; nu < 1 counts as 1."""
    return t975(max(nu, 1.0)) / Z95
