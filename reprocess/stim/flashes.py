"""Measuring each stim flash: its stim-minus-background, significance and time.

See the package notes (:mod:`reprocess.stim`) for the physics; :func:`stim_minus_background` is the
one entry point: it measures every flash, drops what is not a flash, treats the first flash, gives
every flash its sky-model background and fits the wander between flashes.
"""
from __future__ import annotations

import numpy as np

from .checks import FIRST_STIM_MODES, drop_odd_flashes, find_steps, first_flash, rescale_first
from .moving_sky import MovingSky, moving_sky_backgrounds
from .response import StimResponse, common_response
from .sky_model import regress_backgrounds
from .wander import Hits, fit_wander

__all__ = ["NoStimError", "same_sky", "stim_minus_background"]


class NoStimError(ValueError):
    """No usable stim flash: the responsivity cannot be tracked."""


def same_sky(positions: np.ndarray, tolerance_rad: float) -> np.ndarray:
    """(NDCE, NDCE) bool: DCEs whose reference points all lie within ``tolerance_rad`` of each other.

    ``positions`` is (NDCE, K, 3): unit vectors of K reference pixels (e.g. the
    array centre and a corner, so that a rotation counts too) per DCE.
    """
    cos = np.einsum("ikc,jkc->ijk", positions, positions)
    sep = np.arccos(np.clip(cos, -1.0, 1.0)).max(axis=-1)
    return sep <= tolerance_rad


def stim_minus_background(slopes: np.ndarray, errs: np.ndarray, is_stim: np.ndarray,
                          times: np.ndarray, match: np.ndarray, *, min_snr: float = 5.0,
                          min_pixel_fraction: float = 0.5, first_stim: str = "auto",
                          first_stim_sigma: float = 5.0, hits: Hits | None = None,
                          offsets: np.ndarray | None = None,
                          moving: MovingSky | None = None) -> StimResponse:
    """Stim-minus-background of every stim DCE, checked; see the module notes.

    Parameters
    ----------
    slopes, errs : (NDCE, NY, NX) arrays
        Slopes and their errors, DN/s (NaN where there is no slope).
    is_stim : (NDCE,) bool
    times : (NDCE,) float
        Mean time of the reads each DCE's slope used.
    match : (NDCE, NDCE) bool
        ``match[i, j]``: DCEs i and j saw the same sky (:func:`same_sky`).
    min_snr : float
        Per-pixel significance a stim-minus-background needs.
    min_pixel_fraction : float
        Fraction of pixels (of those with a background) a usable flash needs.
    first_stim : {"auto", "auto-drop", "drop", "keep"}
        Treatment of the first flash (module notes).
    first_stim_sigma : float
        Anomaly threshold in sigmas of the later flashes' scatter (``auto*`` modes).
    hits : Hits, optional
        The jumps the ramp fit flagged (times in the unit of ``times``): candidate
        responsivity steps for the wander model.
    offsets : (NDCE, 2) array, optional
        Each DCE's pointing as the (x, y) pixel position of its array centre in
        one common frame.  Given, a flash's background comes from a sky model
        fitted to every sky DCE at its pointing (module notes).
    moving : MovingSky, optional
        For flashes no sky DCE shares the pointing of (scan maps): where their
        pixels fell in the neighbouring sky DCEs; their background is then the
        sky those pixels saw there (:mod:`.moving_sky`), not the same pixels'.

    Returns
    -------
    StimResponse
        The usable flashes only, in time order, with the wander model fitted.
    """
    if first_stim not in FIRST_STIM_MODES:
        raise ValueError(f"first_stim must be one of {FIRST_STIM_MODES}, got {first_stim!r}")
    flashes = np.flatnonzero(is_stim)
    flashes = flashes[np.argsort(times[flashes], kind="stable")]
    sky = np.flatnonzero(~is_stim)
    report = {"n_flashes": int(len(flashes)), "dropped": [], "neighbour_background": []}
    kept_idx, kept_v, kept_e = [], [], []
    for n, i in enumerate(flashes):
        value, err = _one_flash(i, slopes, errs, sky[match[i, sky]], times)
        if not np.isfinite(value).any():     # no sky at its pointing: its neighbours in time
            value, err = _one_flash(i, slopes, errs, sky, times, mismatch=True)
            report["neighbour_background"].append(int(i))
        had_bkg = np.isfinite(value)
        good = had_bkg & (value > min_snr * err)
        frac = good.sum() / max(had_bkg.sum(), 1)
        if not had_bkg.any():
            report["dropped"].append((int(i), "no sky DCE on both sides of it for a background"))
        elif frac < min_pixel_fraction:
            report["dropped"].append((int(i), f"only {frac:.0%} of pixels show a significant "
                                              f"flash (>{min_snr:g} sigma): did it fire?"))
        else:
            kept_idx.append(int(i))
            kept_v.append(np.where(good, value, np.nan))
            kept_e.append(np.where(good, err, np.nan))
    shape = (len(kept_idx),) + slopes.shape[1:]
    stim = StimResponse(times[kept_idx].astype(float), np.asarray(kept_v).reshape(shape),
                        np.asarray(kept_e).reshape(shape), report=report)
    drop_odd_flashes(stim, kept_idx, first_stim_sigma)
    factor = first_flash(stim, kept_idx, first_stim, first_stim_sigma)
    stim.steps = find_steps(stim, first_stim_sigma)
    for lo, hi, size in stim.steps:
        report.setdefault("steps", []).append((lo, hi, size))
    if offsets is not None and len(stim.t) >= 2:
        for _ in range(2):           # the sky model uses the responsivity it refines
            remeasured = regress_backgrounds(stim, kept_idx, slopes, errs, times, match, sky,
                                              offsets, anomalous_first=factor != 1.0)
            if factor != 1.0 and 0 in remeasured:     # re-measured as it was: the anomaly back out
                rescale_first(stim, factor, report["first_stim_scatter"])
        report["sky_model_flashes"] = len(remeasured)
    if moving is not None and moving.coords and len(stim.t) >= 2:
        for _ in range(2):           # the neighbours are divided by the responsivity it refines
            moved = moving_sky_backgrounds(stim, kept_idx, slopes, errs, times, moving,
                                           anomalous_first=factor != 1.0)
            if factor != 1.0 and 0 in moved:
                rescale_first(stim, factor, report["first_stim_scatter"])
        report["moving_sky_flashes"] = len(moved)
    report["n_usable"] = int(len(stim.t))
    if not len(stim.t):
        raise NoStimError(f"no usable stim flash among {len(flashes)} stim DCE(s)"
                          + (f" ({report['dropped'][0][1]})" if report["dropped"] else ""))
    stim.common = common_response(stim.value)
    per_pixel = stim.common.reshape((-1,) + (1,) * (stim.value.ndim - 1))   # the common part is
    stim.wander = fit_wander(stim.t, stim.value / per_pixel, stim.err / per_pixel,  # interpolated
                             hits or Hits.none())                                   # on its own
    return stim


def _one_flash(i, slopes, errs, sky_dces, times, *, mismatch=False):
    """Stim-minus-background of stim DCE ``i`` from sky DCEs ``sky_dces`` (the nearest each side).

    ``mismatch``: the sky DCEs pointed elsewhere; both sides are then required
    and half their difference is added to the background's error (how much the
    sky changes from one pointing to the next).
    """
    before = sky_dces[times[sky_dces] < times[i]]
    after = sky_dces[times[sky_dces] >= times[i]]
    picks = ([before[np.argmax(times[before])]] if len(before) else []) + \
            ([after[np.argmin(times[after])]] if len(after) else [])
    if not picks or (mismatch and len(picks) < 2):
        nan = np.full(slopes.shape[1:], np.nan)
        return nan, nan.copy()
    if len(picks) == 2:
        a, b = picks
        w = (times[i] - times[a]) / (times[b] - times[a]) if times[b] > times[a] else 0.5
        bkg = (1 - w) * slopes[a] + w * slopes[b]
        bkg_var = ((1 - w) * errs[a]) ** 2 + (w * errs[b]) ** 2
        if mismatch:
            bkg_var = bkg_var + 0.25 * (slopes[a] - slopes[b]) ** 2
    else:
        bkg, bkg_var = slopes[picks[0]], errs[picks[0]] ** 2
    with np.errstate(invalid="ignore"):
        return slopes[i] - bkg, np.sqrt(errs[i] ** 2 + bkg_var)
