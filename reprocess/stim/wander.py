"""How far a Ge pixel's responsivity wanders between stim flashes: the error of the interpolation.

The physics
-----------
Linear interpolation between two flashes is exact only for a responsivity that
changes linearly.  Two things break that, and no flash sees them:

* **Cosmic-ray steps.** A hit raises the pixel's responsivity by a random
  fraction that then relaxes over minutes [IOC-2015].  Hits are frequent (one
  per ~35 s per pixel [HB 2.4.3]) and the ramp fit *sees* them: every jump it
  flags is a candidate step.  For a target time ``t`` at fractional position
  ``w`` between flashes at ``a`` and ``b``, a step ``s`` at ``t_h`` in ``(a, b)``
  makes the interpolation wrong by ``s (w - [t_h <= t])``: by ``s (1 - w)`` after
  the hit, ``s w`` before it.  So each flagged jump adds ``sigma_s^2 (w - [t_h <=
  t])^2`` to the relative variance, where ``sigma_s^2`` is the mean square
  relative step per flagged jump.
* **Smooth wander** (undetected small hits, relaxation, drift curvature): a
  random walk of relative variance ``kappa`` per unit time, whose
  interpolation error is a Brownian bridge, ``kappa g w (1 - w)`` for flashes
  ``g`` apart, and ``kappa |t - t_k|`` from a single (nearest) flash.

Both parameters are estimated from the data: each interior flash is predicted
from its two neighbours, and the same formulas give the variance of that
prediction (with ``t = t_k``, ``w = u``).  ``kappa`` comes from the residuals of
pixels with fewer jumps between the neighbours than the median pixel,
``sigma_s^2`` from those with more, each by matching the median of residual^2 /
predicted variance (both terms included) to the chi-square(1) median, and
alternating until both hold.  Matching the median rather than the mean keeps the core
of the pull distribution at unit width: step errors are heavy-tailed (most
intervals see small steps, a few large ones).

Design trade-off: hits are kept as one flat table (time, pixel) sorted in
time, so the variance at any time costs a ``searchsorted`` and a ``bincount``
over the hits between the bracketing flashes, never a loop over DCEs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Hits", "WanderModel", "step_coefficients", "fit_wander"]

_CHI2_1_MEDIAN = float(stats.chi2.ppf(0.5, 1))   # 0.4549
_MIN_SAMPLES = 20                                   # residuals needed to estimate a parameter


@dataclass
class Hits:
    """Flagged jumps of an observation: times ``t`` (sorted) and flat pixel indices ``pix``."""

    t: np.ndarray
    pix: np.ndarray

    @classmethod
    def from_jumps(cls, starts, read_time, jumps) -> Hits:
        """From each DCE's start time, read interval (same unit) and (NREADS, NY, NX) jump flags."""
        ts, ps = [], []
        for t0, dt, jmp in zip(starts, read_time, jumps):
            k, pix = np.nonzero(jmp.reshape(jmp.shape[0], -1))
            ts.append(t0 + k * dt)
            ps.append(pix)
        t = np.concatenate(ts) if ts else np.zeros(0)
        pix = np.concatenate(ps) if ps else np.zeros(0, dtype=np.intp)
        order = np.argsort(t, kind="stable")
        return cls(t[order], pix[order])

    @classmethod
    def none(cls) -> Hits:
        return cls(np.zeros(0), np.zeros(0, dtype=np.intp))


@dataclass
class WanderModel:
    """Relative variance of the interpolated responsivity beyond the flashes' noise.

    Attributes
    ----------
    kappa : float
        Smooth random walk, relative variance per unit time.
    step_var : float
        Mean square relative responsivity step per flagged jump.
    hits : Hits
    """

    kappa: float = 0.0
    step_var: float = 0.0
    hits: Hits | None = None

    def relative_variance(self, t, lo, hi, w, lever) -> np.ndarray:
        """Per-pixel relative variance of the linear interpolation at time ``t``.

        ``lo, hi``: the span whose jumps count (the bracketing flashes, or the
        nearest flash and ``t``); ``w``: interpolation weight of the later flash;
        ``lever``: the random walk's time lever (``g w (1 - w)`` between flashes,
        ``|t - t_k|`` from the nearest one).  Maps of any shape, ``t`` a scalar.
        """
        var = self.kappa * lever
        if self.step_var and self.hits is not None:
            var = var + self.step_var * step_coefficients(self.hits, t, lo, hi, w)
        return var


def step_coefficients(hits: Hits, t, lo, hi, w) -> np.ndarray:
    """Sum over hits in ``(lo, hi)`` of ``(w - [t_h <= t])^2`` per pixel (maps, any shape)."""
    lo, hi, w = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(lo, hi, w))
    out = np.zeros(lo.size)
    if not hits.t.size:
        return out.reshape(lo.shape)
    finite = np.isfinite(lo) & np.isfinite(hi)
    if not finite.any():
        return out.reshape(lo.shape)
    i0, i1 = np.searchsorted(hits.t, [lo[finite].min(), hi[finite].max()], side="right")
    th, pix = hits.t[i0:i1], hits.pix[i0:i1]
    t = np.broadcast_to(np.asarray(t, dtype=float), lo.shape).ravel()
    lo_f, hi_f, w_f = lo.ravel(), hi.ravel(), w.ravel()
    inside = (th > lo_f[pix]) & (th < hi_f[pix])
    coef = (w_f[pix] - (th <= t[pix])) ** 2
    out += np.bincount(pix[inside], weights=coef[inside], minlength=lo.size)
    return out.reshape(lo.shape)


def fit_wander(t: np.ndarray, value: np.ndarray, err: np.ndarray, hits: Hits) -> WanderModel:
    """Estimate ``kappa`` and ``step_var`` from flashes ``value`` +- ``err`` (NFLASH, NY, NX) at ``t``."""
    model = WanderModel(hits=hits)
    if len(t) < 3:
        return model
    shape = (-1,) + (1,) * (value.ndim - 1)
    gap = (t[2:] - t[:-2]).reshape(shape)
    u = ((t[1:-1] - t[:-2]) / (t[2:] - t[:-2])).reshape(shape)
    resid = value[1:-1] - ((1 - u) * value[:-2] + u * value[2:])
    noise = err[1:-1] ** 2 + ((1 - u) * err[:-2]) ** 2 + (u * err[2:]) ** 2
    d2 = value[1:-1] ** 2
    bridge = d2 * gap * u * (1 - u)
    lo = np.broadcast_to(t[:-2].reshape(shape), resid.shape)
    hi = np.broadcast_to(t[2:].reshape(shape), resid.shape)
    steps = np.stack([step_coefficients(hits, t[k + 1], lo[k], hi[k],
                                        np.broadcast_to(u[k], resid.shape[1:]))
                      for k in range(len(t) - 2)]) * d2
    ok = np.isfinite(resid) & np.isfinite(noise)
    if ok.sum() < 2 * _MIN_SAMPLES:
        return model
    r2, nv, bv, sv = resid[ok] ** 2, noise[ok], bridge[ok], steps[ok]
    # two groups, few and many steps: each pins one parameter; alternate to the joint solution
    many = sv > np.median(sv)
    if many.sum() < _MIN_SAMPLES:           # (almost) no jumps: the random walk alone
        model.kappa = _match_median(r2, nv, bv)
        return model
    few = ~many
    for _ in range(20):
        kappa = _match_median(r2[few], nv[few] + model.step_var * sv[few], bv[few])
        step_var = _match_median(r2[many], nv[many] + kappa * bv[many], sv[many])
        converged = np.isclose(kappa, model.kappa, rtol=1e-3, atol=0) and \
            np.isclose(step_var, model.step_var, rtol=1e-3, atol=0)
        model.kappa, model.step_var = kappa, step_var
        if converged:
            break
    return model


def _match_median(r2, base, per_unit) -> float:
    """x >= 0 with median(r2 / (base + x per_unit)) = the chi-square(1) median (0 if base explains r2)."""
    def excess(x):
        return np.median(r2 / (base + x * per_unit)) - _CHI2_1_MEDIAN

    if excess(0.0) <= 0 or not np.any(per_unit > 0):
        return 0.0
    hi = float(np.median(r2 / np.where(per_unit > 0, per_unit, np.inf))) or 1.0
    while excess(hi) > 0:
        hi *= 4.0
    lo = 0.0
    for _ in range(60):          # bisection: 2^-60 of the bracket
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)
