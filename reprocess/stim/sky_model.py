"""A flash's background at its own pointing: a sky model over every sky DCE at that position.

Reconstructed pointings jitter by a fraction of an arcsecond from DCE to DCE, which on the flank of
a bright source changes what a pixel sees by percents: the two sky DCEs next to a flash in time do
not see the flash's sky.  The jitter also samples the sky around the flash's pointing, so a plane
fitted over the pointing offsets of all the sky DCEs at that position gives the sky at the flash's
own pointing, with the noise of many DCEs instead of two (:func:`regress_backgrounds`).
"""
from __future__ import annotations

import warnings

import numpy as np

from .response import StimResponse, interpolate_response

__all__ = ["flash_from_background", "regress_backgrounds"]


def regress_backgrounds(stim: StimResponse, kept_idx: list, slopes, errs, times, match, sky,
                         offsets, *, anomalous_first: bool, min_dces: int = 5) -> set:
    """Re-measure every flash against a sky model at its pointing (in place); returns which (k).

    For flash ``i``, each sky DCE ``j`` that pointed within the tolerance gives,
    per pixel, ``y_j = slope_j / D(t_j)``: the sky in units of the stim, free of
    the responsivity (``D`` interpolated from the current flashes; the common
    part of its error divided out, :func:`_common_normalised`).  A weighted
    plane ``y = a + g . (xy_j - xy_i)`` over those DCEs' pointing offsets (the
    jitter acts as a micro-dither) gives the sky at the flash's own pointing,
    ``a``, and the flash follows from it (:func:`flash_from_background`): no
    other flash enters (which would correlate neighbouring flashes).  Flashes
    with fewer than ``min_dces`` such DCEs, or none on one side of them, keep
    their two-DCE background.
    """
    needed = {int(j) for i in kept_idx for j in sky[match[i, sky]]}
    d_sky = {j: interpolate_response(stim, times[j])[:2] for j in sorted(needed)}
    done = set()
    for k, i in enumerate(kept_idx):
        same = sky[match[i, sky]]
        if len(same) < min_dces or not (times[same] < times[i]).any() or not (times[same] > times[i]).any():
            continue
        y = np.stack([slopes[j] / d_sky[j][0] for j in same])
        y_var = np.stack([(errs[j] / d_sky[j][0]) ** 2 + (y[n] * d_sky[j][1] / d_sky[j][0]) ** 2
                          for n, j in enumerate(same)])
        y, y_var = _common_normalised(y, y_var)
        a, a_var = _plane_intercept(y, y_var, offsets[same] - offsets[i])
        if flash_from_background(stim, k, i, a, a_var, slopes, errs, times,
                                 anomalous_first=anomalous_first):
            done.add(k)
    return done


def flash_from_background(stim: StimResponse, k: int, i: int, a, a_var, slopes, errs, times, *,
                          anomalous_first: bool) -> bool:
    """Set flash ``k`` (DCE ``i``) of ``stim`` from its background ``a`` (sky + dark in the pixel's
    stim units, variance ``a_var``; (NY, NX) maps), in place; True if any pixel changed.

    The stim DCE saw ``R (S + sky) = D_i (1 + a)``, so ``D_i = slope_i / (1 + a)``.  An
    anomalous first flash is not ``R S``: its background is ``D(t_0) a`` with ``D`` from the
    other flashes.  Values discarded before stay discarded.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if k == 0 and anomalous_first and len(stim.t) > 1:
            others = StimResponse(stim.t[1:], stim.value[1:], stim.err[1:], wander=stim.wander)
            d_0, d_err, _ = interpolate_response(others, times[i])
            value = slopes[i] - d_0 * a
            err = np.sqrt(errs[i] ** 2 + d_0 ** 2 * a_var + (a * d_err) ** 2)
        else:
            value = slopes[i] / (1 + a)
            err = np.hypot(errs[i], value * np.sqrt(a_var)) / (1 + a)
    ok = np.isfinite(stim.value[k]) & np.isfinite(value) & np.isfinite(err)
    stim.value[k] = np.where(ok, value, stim.value[k])
    stim.err[k] = np.where(ok, err, stim.err[k])
    return bool(ok.any())


def _common_normalised(y, y_var):
    """``y`` (N, NY, NX) with each plane's array-median ratio to the typical plane divided out.

    The responsivity a sky DCE is divided by carries the interpolation's error
    between flashes, and its common part (the drift's curvature) is shared by
    every pixel: left in, the plane fit would lever it onto the intercept.  The
    sky itself does not change by a common factor from one pointing to the
    next, so that factor is removed (its mean kept).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.nanmedian(y, axis=0)
        ratio = np.array([np.nanmedian(r) for r in (y / typical).reshape(len(y), -1)])
    ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
    ratio = ratio / np.exp(np.mean(np.log(ratio)))
    scale = ratio.reshape((-1,) + (1,) * (y.ndim - 1))
    return y / scale, y_var / scale ** 2


def _plane_intercept(y, y_var, dxy):
    """Per pixel, the weighted least-squares plane ``y = a + g . dxy``: its ``a`` and var(a).

    ``y, y_var``: (N, NY, NX); ``dxy``: (N, 2) offsets (pixels).  Without a spread
    of offsets (no jitter) the plane degenerates to the weighted mean.
    """
    w = np.where(np.isfinite(y) & np.isfinite(y_var) & (y_var > 0), 1.0 / y_var, 0.0)
    y0 = np.where(w > 0, y, 0.0)
    if np.ptp(dxy, axis=0).max() < 1e-3:
        sw = w.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w * y0).sum(0) / sw, 1.0 / sw
    x = np.column_stack([np.ones(len(dxy)), dxy])               # (N, 3)
    a_mat = np.einsum("npq,ni,nj->pqij", w, x, x)                 # (NY, NX, 3, 3)
    b = np.einsum("npq,ni,npq->pqi", w, x, y0)
    ok = np.linalg.det(a_mat) > 0
    a_mat[~ok] = np.eye(3)
    cov = np.linalg.inv(a_mat)
    coef = np.einsum("pqij,pqj->pqi", cov, b)
    a, a_var = coef[..., 0], cov[..., 0, 0]
    return np.where(ok, a, np.nan), np.where(ok, a_var, np.nan)
