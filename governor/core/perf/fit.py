"""Fitting one candidate model: least squares on relative error, robust to sensor outliers.

Theory of operation
-------------------
The figure of merit is relative error (MAPE), so every fit minimises relative residuals
``(model - y) / y``: linear forms scale each row by ``1 / y``; ``logpoly`` fits ``log y`` (whose
residuals are relative errors to first order). Real sensor grids hold outliers (a TX2 power grid
has rows 20-40 % off their neighbours), so fits are iteratively reweighted with Huber weights on a
robust (MAD) residual scale once there are a few more points than parameters.

``roofline`` coefficients are times and must not be negative: scipy's NNLS. ``saturated`` is
non-linear in p: scipy's bounded trust-region least squares, started from the roofline solution.
A tiny ridge (relative to each column's norm) keeps under-determined fits finite; cross-validation,
not the ridge, decides whether such a fit is any good.

Parameters are flat float vectors; :func:`evaluate` takes a stack of them (m x P) and returns an
(n x m) prediction matrix, so ensembles and jackknife folds are predicted in one vectorised call.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from governor.core.perf.features import CandidateSpec, FloatArray, kron_columns

__all__ = ["evaluate", "fit", "leverage", "n_params"]

IntArray = npt.NDArray[np.int64]

_RIDGE = 1e-9  # relative to column norms: only conditions, never shapes the fit
_HUBER = 2.0  # residuals beyond this many robust sigmas get down-weighted
_SCALE_FLOOR = 1e-4  # relative; below this the data is treated as exact
_P_BOUNDS = (1.0, 32.0)


def n_params(spec: CandidateSpec, n_domains: int, kmax: int) -> int:
    width = int(spec.kbasis.columns(np.array([1.0]), kmax).shape[1])
    if spec.form in ("saturated", "layered"):
        return (2 * n_domains + 1) * width + 1
    return int(spec.base_columns(np.ones((1, n_domains))).shape[1]) * width


def _solve(a: FloatArray, b: FloatArray, nonneg: bool) -> FloatArray:
    from scipy.optimize import nnls  # here, not at import: a daemon serving a profile only evaluates (40 MB)

    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    a_aug = np.vstack([a, np.diag(np.sqrt(_RIDGE) * norms)])
    b_aug = np.concatenate([b, np.zeros(a.shape[1])])
    if nonneg:
        return np.asarray(nnls(a_aug, b_aug, maxiter=50 * a.shape[1])[0])
    return np.asarray(np.linalg.lstsq(a_aug, b_aug, rcond=None)[0])


def _robust_weights(resid: FloatArray) -> FloatArray:
    scale = max(1.4826 * float(np.median(np.abs(resid))), _SCALE_FLOOR)
    return np.sqrt(np.minimum(1.0, _HUBER * scale / np.maximum(np.abs(resid), 1e-300)))


def _irls(a: FloatArray, b: FloatArray, nonneg: bool, robust: bool) -> FloatArray:
    weights = np.ones(len(b))
    coef = _solve(a, b, nonneg)
    for _ in range(10 if robust else 0):
        new = _robust_weights(a @ coef - b)
        if np.allclose(new, weights, atol=1e-3):
            break
        weights = new
        coef = _solve(a * weights[:, None], b * weights, nonneg)
    return coef


def _split(params: FloatArray, d: int, nb: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Saturated parameters (m x P) -> T0 (m, nb), additive B (m, d, nb), overlapping A (m, d, nb), p (m).
    For ``layered`` B is the second class's overlapping times."""
    m = params.shape[0]
    t0 = params[:, :nb]
    additive = params[:, nb:nb * (d + 1)].reshape(m, d, nb)
    overlap = params[:, nb * (d + 1):nb * (2 * d + 1)].reshape(m, d, nb)
    return t0, additive, overlap, params[:, -1]


def _pnorm(terms: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(sum_d terms^p)^(1/p) over the last axis, overflow-safe; also the terms scaled by their max."""
    top = terms.max(axis=-1)
    safe = np.where(top > 0, top, 1.0)
    ratio = terms / safe[..., None]
    return np.where(top > 0, safe * np.sum(ratio ** p[..., None], axis=-1) ** (1.0 / p), 0.0), ratio


def _saturated(params: FloatArray, g: FloatArray, kcols: FloatArray, layered: bool = False) -> FloatArray:
    t0, additive, overlap, p = _split(params, g.shape[1], kcols.shape[1])
    inv = 1.0 / g
    fixed = kcols @ t0.T
    terms = np.einsum("nb,mdb->nmd", kcols, overlap) * inv[:, None, :]
    if layered:
        second = np.einsum("nb,mdb->nmd", kcols, additive) * inv[:, None, :]
        return np.asarray(fixed + _pnorm(second, p[None, :])[0] + _pnorm(terms, p[None, :])[0])
    linear = np.einsum("nb,mdb,nd->nm", kcols, additive, inv)
    return np.asarray(fixed + linear + _pnorm(terms, p[None, :])[0])


def _norm_derivatives(terms: FloatArray, p: float) -> tuple[FloatArray, FloatArray]:
    """For the p-norm N of each row of ``terms`` (n, d): dN/dterm_d (n, d) and dN/dp (n)."""
    norm, ratio = _pnorm(terms, np.array([p]))
    safe_norm = np.where(norm > 0, norm, 1.0)[:, None]
    share = np.where(norm[:, None] > 0, (terms / safe_norm) ** (p - 1.0), 0.0)
    weights = ratio ** p / np.maximum(np.sum(ratio ** p, axis=1, keepdims=True), 1e-300)
    logs = np.log(np.where(terms > 0, terms, 1.0))
    d_p = norm / p * (np.sum(weights * logs, axis=1) - np.log(np.where(norm > 0, norm, 1.0)))
    return share, d_p


def _saturated_jacobian(x: FloatArray, g: FloatArray, kcols: FloatArray, y: FloatArray,
                        layered: bool = False) -> FloatArray:
    """d(model / y) / dx for one parameter vector x, analytic (numeric differences are 20x dearer)."""
    _, additive, overlap, p = _split(x[None, :], g.shape[1], kcols.shape[1])
    inv = 1.0 / g
    share, d_p = _norm_derivatives((kcols @ overlap[0].T) * inv, float(p[0]))  # (n, d), (n)
    if layered:
        share2, d_p2 = _norm_derivatives((kcols @ additive[0].T) * inv, float(p[0]))
        first, d_p = kron_columns(inv * share2, kcols), d_p + d_p2
    else:
        first = kron_columns(inv, kcols)
    columns = [kcols, first, kron_columns(inv * share, kcols), d_p[:, None]]
    return np.hstack(columns) / y[:, None]


def _saturated_starts(g: FloatArray, kcols: FloatArray, y: FloatArray, robust: bool,
                      layered: bool = False) -> list[FloatArray]:
    """Starting points from the roofline fit. Saturated: mostly additive (p = 2), mostly overlapping
    (p = 6). Layered: the per-domain times split unevenly between the two classes (one weighted to the
    first domains, one to the last), at p = 2 and p = 4: an even split is a saddle the search stays on."""
    nb = kcols.shape[1]
    base = CandidateSpec("roofline").base_columns(g)
    theta = _irls(kron_columns(base, kcols) / y[:, None], np.ones(len(y)), nonneg=True, robust=robust)
    fixed, per_domain = theta[:nb], theta[nb:]
    if layered:
        lean = np.repeat(np.linspace(0.85, 0.15, g.shape[1]), nb)
        return [np.concatenate([fixed, (1 - lean) * per_domain, lean * per_domain, [p]]) for p in (2.0, 4.0)]
    return [np.concatenate([fixed, 0.3 * per_domain, 0.8 * per_domain, [2.0]]),
            np.concatenate([fixed, 0.05 * per_domain, 1.0 * per_domain, [6.0]])]


def _fit_saturated(g: FloatArray, kcols: FloatArray, y: FloatArray, robust: bool,
                   start: FloatArray | None, layered: bool = False) -> FloatArray:
    from scipy.optimize import least_squares

    d, nb = g.shape[1], kcols.shape[1]
    starts = [start] if start is not None else _saturated_starts(g, kcols, y, robust, layered)
    lower = np.concatenate([np.zeros(nb * (2 * d + 1)), [_P_BOUNDS[0]]])
    upper = np.concatenate([np.full(nb * (2 * d + 1), np.inf), [_P_BOUNDS[1]]])

    def residual(x: FloatArray) -> FloatArray:
        return _saturated(x[None, :], g, kcols, layered)[:, 0] / y - 1.0

    def jacobian(x: FloatArray) -> FloatArray:
        return _saturated_jacobian(x, g, kcols, y, layered)

    scale = max(1.4826 * float(np.median(np.abs(residual(starts[0])))), _SCALE_FLOOR)
    results = [least_squares(residual, np.clip(x0, lower, upper), jac=jacobian, bounds=(lower, upper),
                             loss="huber" if robust else "linear", f_scale=scale, max_nfev=100)
               for x0 in starts]
    return np.asarray(min(results, key=lambda r: float(r.cost)).x)


def fit(spec: CandidateSpec, g: FloatArray, k: FloatArray, kmax: int, y: FloatArray,
        start: FloatArray | None = None) -> FloatArray:
    """Fit one candidate to targets y > 0 (any unit); returns its flat parameter vector.

    ``start`` (non-linear forms only) warm-starts the search, e.g. a fold fit from the full-data fit.
    """
    y = np.asarray(y, dtype=np.float64)
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("targets must be finite and positive")
    robust = len(y) >= n_params(spec, g.shape[1], kmax) + 3
    kcols = spec.kbasis.columns(k, kmax)
    if spec.form in ("saturated", "layered"):
        return _fit_saturated(g, kcols, y, robust, start, layered=spec.form == "layered")
    a = spec.columns(g, k, kmax)
    if spec.form == "logpoly":
        return _irls(a, np.log(y), nonneg=False, robust=robust)
    return _irls(a / y[:, None], np.ones(len(y)), nonneg=spec.form == "roofline", robust=robust)


def evaluate(spec: CandidateSpec, params: FloatArray, g: FloatArray, k: FloatArray, kmax: int) -> FloatArray:
    """Predictions (n x m) of m parameter vectors (m x P) of one candidate at n points."""
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if spec.form in ("saturated", "layered"):
        return _saturated(params, g, spec.kbasis.columns(k, kmax), layered=spec.form == "layered")
    out = spec.columns(g, k, kmax) @ params.T
    return np.asarray(np.exp(np.clip(out, -700, 700)) if spec.form == "logpoly" else out)


def leverage(spec: CandidateSpec, params: FloatArray, g: FloatArray, k: FloatArray, kmax: int,
             y: FloatArray) -> FloatArray:
    """Each fitted point's leverage h_i in [0, 1): the diagonal of the hat matrix of the fit linearised at
    ``params`` (relative residuals, numeric Jacobian). A coefficient held at its bound (a time of 0 in a
    roofline, p at 1 or 32) is not free and is left out. The jackknife's fold deviations scale with
    1 / (1 - h) where the unbiased (HC2) estimate has 1 / sqrt(1 - h): with 8 points and 6 coefficients
    (mean h 0.75) the bare jackknife is 2x too wide on the points that decide it.
    """
    x = np.asarray(params, dtype=np.float64)
    base = evaluate(spec, x, g, k, kmax)[:, 0] / y
    bounded = spec.form in ("roofline", "saturated", "layered")
    floor = 1e-9 * float(np.max(np.abs(x)))  # NNLS and the bounded search leave a held time at 0 or just above
    columns = []
    for j in range(len(x)):
        at_p_bound = spec.form in ("saturated", "layered") and j == len(x) - 1 and not (
            _P_BOUNDS[0] + 1e-4 < x[j] < _P_BOUNDS[1] - 1e-4)
        if at_p_bound or (bounded and j < len(x) - (spec.form != "roofline") and x[j] <= floor):
            continue
        step = 1e-6 * max(abs(float(x[j])), 1e-9)
        moved = x.copy()
        moved[j] += step
        columns.append((evaluate(spec, moved, g, k, kmax)[:, 0] / y - base) / step)
    if not columns:
        return np.zeros(len(y))
    jac = np.column_stack(columns)
    norms = np.linalg.norm(jac, axis=0)
    jac = jac[:, norms > 0] / norms[norms > 0]  # the hat matrix does not depend on column scales; the rank cut does
    hat = np.einsum("ij,ji->i", jac, np.linalg.pinv(jac, rcond=1e-6))  # above the differences' own error
    return np.asarray(np.clip(hat, 0.0, 0.99))
