"""The responsivity at any time from the usable flashes, and the slope -> MJy/sr calibration.

A pixel's responsivity is the array's common responsivity (the median over pixels of each flash
relative to the pixel's median flash, interpolated by a piecewise cubic, :func:`common_at`) times the
pixel's own part,
interpolated linearly between its valid flashes; before the first and after the last one the nearest
is used, never extrapolated [HB S17 notes /96].  The uncertainty holds the flashes' noise and the
wander between them (:mod:`.wander`).  A slope then becomes ``slope / D(t) - dark`` in MIPS units,
divided by the illumination correction and multiplied by ``FLUXCONV``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import Akima1DInterpolator

from calibration.bitmask import BMASK

from .wander import WanderModel

__all__ = ["StimResponse", "common_response", "common_at", "interpolate_response", "constant_response",
           "calibrate"]


@dataclass
class StimResponse:
    """Usable stim-minus-background flashes.

    Attributes
    ----------
    t : (NFLASH,) float
        Flash times (the unit of the caller's times; the pipeline uses MJD).
    value, err : (NFLASH, NY, NX) float
        Stim-minus-background and its 1-sigma noise, DN/s (NaN where discarded).
    common : (NFLASH,) float
        The array's common responsivity at each flash (median over pixels of the
        flash relative to the pixel's median flash): interpolated linearly in time.
    wander : WanderModel
        The responsivity's wander between flashes (:mod:`.wander`), fitted to them.
    report : dict
        What happened to each flash: ``n_flashes``, ``n_usable``, and
        ``dropped`` (list of (index, reason)).
    steps : list of (t_before, t_after, size)
        Common responsivity steps found between two consecutive flashes
        (:func:`.checks.find_steps`).
    """

    t: np.ndarray
    value: np.ndarray
    err: np.ndarray
    common: np.ndarray | None = None
    wander: WanderModel = field(default_factory=WanderModel)
    report: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)


def common_response(value: np.ndarray) -> np.ndarray:
    """(NFLASH,) median over pixels of each flash relative to the pixel's median flash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN pixels and flashes
        rel = value / np.nanmedian(value, axis=0)
        common = np.array([np.nanmedian(r) for r in rel.reshape(len(rel), -1)])
    return np.where(np.isfinite(common), common, 1.0)


def common_at(stim: StimResponse, t: float) -> float:
    """The common responsivity at ``t``: a modified-Akima piecewise cubic through the flashes
    inside, the nearest flash outside (never extrapolated).

    The common part is measured to ~0.01 % per flash (a median over the array), so its
    curvature between flashes -- the drift's, up to tenths of a percent over a 70 s gap -- is
    resolved, and a cubic follows it where linear interpolation cuts the chord; modified Akima,
    unlike a spline, does not ring across a step (an anneal, a large common jump), and unlike
    PCHIP it does not flatten at the drift's turning points.
    """
    if not len(stim.t):
        return np.nan
    if len(stim.t) < 3 or t <= stim.t[0] or t >= stim.t[-1]:
        return float(np.interp(t, stim.t, stim.common))
    return float(Akima1DInterpolator(stim.t, stim.common, method="makima")(t))


def interpolate_response(stim: StimResponse, t: float):
    """Responsivity (stim-minus-background, DN/s) of every pixel at time ``t``.

    Returns ``(value, err, flags)`` maps.  ``err`` holds the flashes' noise and
    the wander between them (:mod:`.wander`).  Flags carry
    ``STIM_NEAREST`` where no valid flash brackets ``t`` and ``NO_STIM`` where a
    pixel has no valid flash.
    """
    valid = np.isfinite(stim.value)
    nflash = len(stim.t)
    if stim.common is None:
        stim.common = common_response(stim.value)
    k = np.arange(nflash).reshape((-1,) + (1,) * (stim.value.ndim - 1))
    before = (stim.t < t).reshape(k.shape)
    prev = np.where(valid & before, k, -1).max(axis=0, initial=-1)
    nxt = np.where(valid & ~before, k, nflash).min(axis=0, initial=nflash)
    has_prev, has_next = prev >= 0, nxt < nflash
    t_prev, t_next = stim.t[np.clip(prev, 0, None)], stim.t[np.clip(nxt, 0, nflash - 1)]
    both = has_prev & has_next
    common = common_at(stim, t)
    rho = stim.value / stim.common.reshape(k.shape)
    rho_err = stim.err / stim.common.reshape(k.shape)
    x_prev, n_prev = _take(rho, prev), _take(rho_err, prev)
    x_next, n_next = _take(rho, nxt), _take(rho_err, nxt)
    # the pixel's own part, linearly in time; its wander (module wander): a Brownian bridge with
    # steps at its flagged jumps between two flashes, a random walk from the nearest one
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.clip((t - t_prev) / (t_next - t_prev), 0.0, 1.0)
    w = np.where(both, np.nan_to_num(w, nan=0.5), np.where(has_next, 1.0, 0.0))
    lever = np.where(both, (t_next - t_prev) * w * (1 - w),
                     np.where(has_prev, np.abs(t - t_prev), np.abs(t_next - t)))
    lo = np.where(has_prev, t_prev, t)
    hi = np.where(has_next, t_next, t)
    wander = stim.wander.relative_variance(t, lo, hi, w, lever)
    x = (1 - w) * x_prev + w * x_next
    value = common * x
    step = _step_variance(stim, t)
    err = common * np.sqrt(((1 - w) * n_prev) ** 2 + (w * n_next) ** 2 + (wander + step) * x ** 2)
    flags = np.zeros(stim.value.shape[1:], dtype=np.int32)
    if step:
        flags |= BMASK["RESP_STEP"]
    flags[has_prev ^ has_next] |= BMASK["STIM_NEAREST"]
    none = ~has_prev & ~has_next
    flags[none] |= BMASK["NO_STIM"]
    value[none] = np.nan
    err[none] = np.nan
    return value, err, flags


def _step_variance(stim: StimResponse, t: float) -> float:
    """Relative variance a step between the flashes around ``t`` leaves in the straight line
    across it: for a step of size ``s`` at an unknown (uniform) time, ``s^2 / 6`` on average over
    the interval (module :func:`.checks.find_steps`)."""
    return float(sum(size ** 2 / 6.0 for lo, hi, size in stim.steps if lo < t < hi))


def _take(cube, index):
    """cube[index[p], p] for every pixel p (0 where index is out of range)."""
    idx = np.clip(index, 0, max(cube.shape[0] - 1, 0))
    out = np.take_along_axis(cube, idx[None], axis=0)[0] if cube.shape[0] else np.zeros(index.shape)
    return np.where((index >= 0) & (index < cube.shape[0]), out, 0.0)


def constant_response(stim: StimResponse):
    """Per-pixel median stim-minus-background over the observation (stim tracking off)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # all-NaN pixels: NO_STIM below
        n = np.isfinite(stim.value).sum(0)
        value = np.nanmedian(stim.value, axis=0) if len(stim.t) else np.full(stim.value.shape[1:], np.nan)
        err = 1.2533 * np.nanmedian(stim.err, axis=0) / np.sqrt(np.maximum(n, 1))
    flags = np.where(np.isfinite(value), 0, BMASK["NO_STIM"]).astype(np.int32)
    return value, err, flags


def calibrate(slope, slope_err, response, response_err, *, dark, illum, fluxconv,
              dark_err=0.0, illum_err=0.0):
    """Surface brightness (MJy/sr) and its 1-sigma error from a slope and the responsivity.

    ``slope`` and ``response`` in DN/s, ``dark`` in MIPS units, ``illum``
    dimensionless, ``fluxconv`` in MJy/sr per MIPS unit; the ``*_err`` are the
    maps' 1-sigma uncertainties (0 where a product set gives none).  The
    error of ``fluxconv`` is not included: it is one number for every pixel
    of every BCD, a systematic the header records apart (``FLUXERR``).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mips = slope / response - dark
        scale = fluxconv / illum
        var = ((slope_err / response) ** 2 + (slope * response_err / response ** 2) ** 2
               + np.square(dark_err))
        rel_var = np.square(np.divide(illum_err, illum))
        image = scale * mips
        return image, np.sqrt(scale ** 2 * var + image ** 2 * rel_var)
