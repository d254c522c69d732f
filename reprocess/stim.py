"""Ge responsivity from stim flashes, and the slope -> surface-brightness calibration (CALER).

A stim DCE sees the sky plus the stim; the DCE before (and after) it at the
same scan-mirror position sees the sky alone.  Their difference, the
stim-minus-background ``D(t_k)``, is the pixel's responsivity times the stim
brightness at the flash time ``t_k`` [GeRT /4; HB 4.1.4 /43].  Following the
SSC rules since S17 [HB /96]:

* a non-positive (or undefined) stim-minus-background is discarded (NaN);
* between flashes ``D`` is interpolated linearly in time; before the first and
  after the last valid flash the nearest one is used, never extrapolated.

A slope then becomes a calibrated "MIPS" value ``slope / D(t) - dark``, is
divided by the illumination correction and multiplied by ``FLUXCONV``.
Everything here is a pure function of arrays; the pipeline module feeds it.

``constant`` mode (stim calibration off) divides by each pixel's median
``D`` over the observation instead: the pixel-to-pixel response is still
removed, but not its change with time -- what the time tracking buys.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.bitmask import BMASK

__all__ = ["StimResponse", "stim_minus_background", "interpolate_response", "constant_response",
           "calibrate"]


@dataclass
class StimResponse:
    """Stim-minus-background per flash: ``value``/``err`` (NFLASH, NY, NX) in DN/s at ``t`` (NFLASH,)."""

    t: np.ndarray
    value: np.ndarray
    err: np.ndarray


def stim_minus_background(slopes: np.ndarray, errs: np.ndarray, is_stim: np.ndarray,
                          times: np.ndarray, pointing: np.ndarray) -> StimResponse:
    """Stim-minus-background of every stim DCE.

    Parameters
    ----------
    slopes, errs : (NDCE, NY, NX) arrays
        Slopes and their errors, DN/s, in time order.
    is_stim : (NDCE,) bool
    times : (NDCE,) float
        DCE mid-times (any unit; the interpolation uses the same unit).
    pointing : (NDCE,) int
        Pointing label: DCEs with equal labels see the same sky.
    """
    sky_idx = np.flatnonzero(~is_stim)
    t_out, v_out, e_out = [], [], []
    for i in np.flatnonzero(is_stim):
        before = sky_idx[(sky_idx < i) & (pointing[sky_idx] == pointing[i])]
        after = sky_idx[(sky_idx > i) & (pointing[sky_idx] == pointing[i])]
        bkg = [j for j in (before[-1:].tolist() + after[:1].tolist())]
        if not bkg:
            value = np.full(slopes.shape[1:], np.nan)
            err = value.copy()
        else:
            b = np.mean(slopes[bkg], axis=0)
            b_var = np.sum(errs[bkg] ** 2, axis=0) / len(bkg) ** 2
            value = slopes[i] - b
            err = np.sqrt(errs[i] ** 2 + b_var)
        bad = ~(value > 0)
        value = np.where(bad, np.nan, value)
        err = np.where(bad, np.nan, err)
        t_out.append(times[i])
        v_out.append(value)
        e_out.append(err)
    shape = (len(t_out),) + slopes.shape[1:]
    return StimResponse(np.asarray(t_out, dtype=float), np.asarray(v_out).reshape(shape),
                        np.asarray(e_out).reshape(shape))


def interpolate_response(stim: StimResponse, t: float):
    """Responsivity (stim-minus-background, DN/s) of every pixel at time ``t``.

    Returns ``(value, err, flags)`` maps; flags carry ``STIM_NEAREST`` where no
    valid flash brackets ``t`` and ``NO_STIM`` where a pixel has no valid flash.
    """
    valid = np.isfinite(stim.value)
    nflash = len(stim.t)
    k = np.arange(nflash).reshape((-1,) + (1,) * (stim.value.ndim - 1))
    before = (stim.t < t).reshape(k.shape)
    prev = np.where(valid & before, k, -1).max(axis=0, initial=-1)
    nxt = np.where(valid & ~before, k, nflash).min(axis=0, initial=nflash)
    has_prev, has_next = prev >= 0, nxt < nflash
    v_prev, e_prev = _take(stim.value, prev), _take(stim.err, prev)
    v_next, e_next = _take(stim.value, nxt), _take(stim.err, nxt)
    t_prev, t_next = stim.t[np.clip(prev, 0, None)], stim.t[np.clip(nxt, 0, nflash - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(has_prev & has_next, (t - t_prev) / (t_next - t_prev), 0.0)
    w = np.where(~has_prev & has_next, 1.0, w)          # only a later flash: use it
    value = (1 - w) * v_prev + w * v_next
    err = np.hypot((1 - w) * e_prev, w * e_next)
    flags = np.zeros(stim.value.shape[1:], dtype=np.int32)
    flags[has_prev ^ has_next] |= BMASK["STIM_NEAREST"]
    none = ~has_prev & ~has_next
    flags[none] |= BMASK["NO_STIM"]
    value[none] = np.nan
    err[none] = np.nan
    return value, err, flags


def _take(cube, index):
    """cube[index[p], p] for every pixel p (0 where index is out of range)."""
    idx = np.clip(index, 0, max(cube.shape[0] - 1, 0))
    out = np.take_along_axis(cube, idx[None], axis=0)[0] if cube.shape[0] else np.zeros(index.shape)
    return np.where((index >= 0) & (index < cube.shape[0]), out, 0.0)


def constant_response(stim: StimResponse):
    """Per-pixel median stim-minus-background over the observation (stim tracking off)."""
    with np.errstate(invalid="ignore"):
        n = np.isfinite(stim.value).sum(0)
        value = np.nanmedian(stim.value, axis=0) if len(stim.t) else np.full(stim.value.shape[1:], np.nan)
        err = 1.2533 * np.nanmedian(stim.err, axis=0) / np.sqrt(np.maximum(n, 1))
    flags = np.where(np.isfinite(value), 0, BMASK["NO_STIM"]).astype(np.int32)
    return value, err, flags


def calibrate(slope, slope_err, response, response_err, *, dark, illum, fluxconv):
    """Surface brightness (MJy/sr) and its 1-sigma error from a slope and the responsivity.

    ``slope`` and ``response`` in DN/s, ``dark`` in MIPS units, ``illum``
    dimensionless, ``fluxconv`` in MJy/sr per MIPS unit.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mips = slope / response - dark
        scale = fluxconv / illum
        var = (slope_err / response) ** 2 + (slope * response_err / response ** 2) ** 2
        return scale * mips, scale * np.sqrt(var)
