"""Ge responsivity from stim flashes, and the slope -> surface-brightness calibration (CALER).

The physics
-----------
A Ge:Ga pixel's responsivity ``R(t)`` drifts (radiation, cosmic-ray steps that
relax over minutes) by percents within an AOR.  The stim flash, a lamp of
(nearly) constant brightness ``S``, is turned on every few DCEs; a stim DCE
sees ``R (sky + S)``, the sky DCEs around it at the same sky position see ``R
sky``.  Their difference, the stim-minus-background ``D(t_k) = R(t_k) S``, is
the responsivity at the flash time ``t_k`` [GeRT /4; HB 4.1.4 /43].  Between
flashes ``D`` is interpolated linearly in time; before the first and after the
last usable flash the nearest one is used, never extrapolated, and a
non-positive stim-minus-background is discarded [HB S17 notes /96].

How each flash is measured here
-------------------------------
* **Background at the flash's sky.** The sky DCEs that pointed within
  ``tolerance`` of the flash's pointing (reconstructed pointings are never
  identical, so positions are matched to a fraction of a pixel, never compared
  for equality) give the background; the nearest such DCE before and the
  nearest after are interpolated linearly to the flash time (the background
  drifts with ``R`` too).  With only one side, that DCE is used.  When no sky
  DCE saw the flash's pointing, the sky DCEs just before and after it in time
  are used (the archive's way), half their difference added to the error.
* **Flash time.** A stim ramp often saturates before the DCE ends, so its
  slope describes the reads it used, not the whole DCE: every DCE is
  time-stamped at the mean time of the reads its slope used (the caller passes
  those times).
* **Is it a flash?** A stim-minus-background below ``min_snr`` times its noise
  is not a measurement of the responsivity (a flash that did not fire, a
  pixel on a bright source whose background moved): that pixel's flash is
  discarded.  A flash with usable values in fewer than ``min_pixel_fraction``
  of the pixels that had a background is unusable as a whole; when no usable
  flash remains the observation cannot be calibrated and :class:`NoStimError`
  is raised.
* **Odd flashes.** A flash whose array-median brightness is off the trend
  of the flashes before it *and* of those after it, the same way (a partial or
  misfired flash), is dropped; a real responsivity step between two flashes
  puts each on its own side's trend and is kept.
* **The first flash.** The first flash of an AOR is often anomalously bright
  or faint (the "first stim bad" effect [HB 6.5 /68; IOC-247/248]).  The
  array-median relative second difference of the flashes follows the drift's
  curvature smoothly, and an anomaly of the first flash shows up in its first
  value only: compared with the extrapolation of the later ones, it measures
  the anomaly to a fraction of a percent.  ``first_stim="auto"`` rescales an
  anomalous first flash by that measurement (its error added to the flash's);
  ``"auto-drop"`` drops it instead, ``"drop"`` always drops the first flash,
  ``"keep"`` never touches it.  Dropping costs more: the DCEs before the second
  flash then fall back on the nearest flash across twice the time.

Uncertainty of the interpolated responsivity
---------------------------------------------
Two terms: the measurement noise of the two flashes (propagated), and the
responsivity's own wander between them, which no flash sees: cosmic-ray
steps at the jumps the ramp fit flagged, and a smooth random walk; both are
estimated from the flashes themselves (:mod:`.wander`).

A slope then becomes a calibrated "MIPS" value ``slope / D(t) - dark``, is
divided by the illumination correction and multiplied by ``FLUXCONV``.
Everything here is a pure function of arrays; the pipeline module feeds it.

``constant`` mode (stim calibration off) divides by each pixel's median ``D``
over the observation instead: the pixel-to-pixel response is still removed,
but not its change with time -- what the time tracking buys.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from calibration.bitmask import BMASK

from .wander import Hits, WanderModel, fit_wander

FIRST_STIM_MODES = ("auto", "auto-drop", "drop", "keep")

__all__ = ["FIRST_STIM_MODES", "StimResponse", "NoStimError", "stim_minus_background", "interpolate_response",
           "constant_response", "calibrate", "same_sky"]


class NoStimError(ValueError):
    """No usable stim flash: the responsivity cannot be tracked."""


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
    """

    t: np.ndarray
    value: np.ndarray
    err: np.ndarray
    common: np.ndarray | None = None
    wander: WanderModel = field(default_factory=WanderModel)
    report: dict = field(default_factory=dict)


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
                          offsets: np.ndarray | None = None) -> StimResponse:
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
    _drop_odd_flashes(stim, kept_idx, first_stim_sigma)
    factor = _first_flash(stim, kept_idx, first_stim, first_stim_sigma)
    if offsets is not None and len(stim.t) >= 2:
        for _ in range(2):           # the sky model uses the responsivity it refines
            remeasured = _regress_backgrounds(stim, kept_idx, slopes, errs, times, match, sky,
                                              offsets, anomalous_first=factor != 1.0)
            if factor != 1.0 and 0 in remeasured:     # re-measured as it was: the anomaly back out
                stim.value[0] /= factor
                stim.err[0] = np.hypot(stim.err[0] / factor, report["first_stim_scatter"] * stim.value[0])
        report["sky_model_flashes"] = len(remeasured)
    report["n_usable"] = int(len(stim.t))
    if not len(stim.t):
        raise NoStimError(f"no usable stim flash among {len(flashes)} stim DCE(s)"
                          + (f" ({report['dropped'][0][1]})" if report["dropped"] else ""))
    stim.common = common_response(stim.value)
    stim.wander = fit_wander(stim.t, stim.value, stim.err, hits or Hits.none())
    return stim


def common_response(value: np.ndarray) -> np.ndarray:
    """(NFLASH,) median over pixels of each flash relative to the pixel's median flash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN pixels and flashes
        rel = value / np.nanmedian(value, axis=0)
        common = np.array([np.nanmedian(r) for r in rel.reshape(len(rel), -1)])
    return np.where(np.isfinite(common), common, 1.0)


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


def _first_flash(stim: StimResponse, kept_idx: list, mode: str, nsigma: float) -> float:
    """Treat the first usable flash as ``mode`` says (in place); record what was done and why.

    Returns the factor the first flash was divided by (1.0 when it was not rescaled).
    """
    if mode == "keep" or not len(stim.t):
        return 1.0
    if mode == "drop":
        _drop_first(stim, kept_idx, "first flash dropped (first_stim='drop')")
        return 1.0
    if len(stim.t) < 5:
        stim.report["first_stim"] = "kept (fewer than 5 flashes: cannot judge)"
        return 1.0
    size, scatter = _first_flash_anomaly(stim)
    stim.report["first_stim_deviation"] = float(size)
    if not abs(size) > max(nsigma * scatter, 1e-3):
        stim.report["first_stim"] = f"kept (deviation {size:+.2%}, scatter {scatter:.2%})"
        return 1.0
    why = f"anomalous first flash: {size:+.2%} off the later flashes' trend (scatter {scatter:.2%})"
    if mode == "auto-drop":
        _drop_first(stim, kept_idx, why + "; dropped")
        return 1.0
    stim.value[0] = stim.value[0] / (1.0 + size)
    stim.err[0] = np.hypot(stim.err[0] / (1.0 + size), scatter * stim.value[0])
    stim.report["first_stim"] = why + "; rescaled"
    stim.report["first_stim_scatter"] = scatter
    stim.report["rescaled"] = [(kept_idx[0], why)]
    return 1.0 + size


def _drop_first(stim: StimResponse, kept_idx: list, why: str) -> None:
    stim.report["first_stim"] = why
    stim.report["dropped"].append((kept_idx.pop(0), why))
    stim.t, stim.value, stim.err = stim.t[1:], stim.value[1:], stim.err[1:]


def _first_flash_anomaly(stim: StimResponse) -> tuple[float, float]:
    """Relative brightness excess of the first flash and its 1-sigma scatter.

    ``s_k``, the array-median relative second difference at flash ``k``, follows
    the drift's curvature smoothly; an anomaly ``a`` of the first flash adds
    ``(1 - u_0) a`` to ``s_0`` only.  ``s_0`` is compared with the linear
    extrapolation ``2 s_1 - s_2``; the scatter is that of the same prediction
    one flash later on (``s_k`` against ``2 s_{k+1} - s_{k+2}``).
    """
    s = _second_differences(stim)
    u0 = (stim.t[1] - stim.t[0]) / (stim.t[2] - stim.t[0])
    resid = s[:-2] - (2 * s[1:-1] - s[2:])
    later = resid[1:]
    later = later[np.isfinite(later)]
    scatter = 1.4826 * np.median(np.abs(later - np.median(later))) if later.size else np.inf
    return float(resid[0] / (1.0 - u0)), float(scatter / (1.0 - u0))


def _regress_backgrounds(stim: StimResponse, kept_idx: list, slopes, errs, times, match, sky,
                         offsets, *, anomalous_first: bool, min_dces: int = 5) -> set:
    """Re-measure every flash against a sky model at its pointing (in place); returns which (k).

    For flash ``i``, each sky DCE ``j`` that pointed within the tolerance gives,
    per pixel, ``y_j = slope_j / D(t_j)``: the sky in units of the stim, free of
    the responsivity (``D`` interpolated from the current flashes; the common
    part of its error divided out, :func:`_common_normalised`).  A weighted
    plane ``y = a + g . (xy_j - xy_i)`` over those DCEs' pointing offsets (the
    jitter acts as a micro-dither) gives the sky at the flash's own pointing,
    ``a``.  The stim DCE saw ``R (S + sky) = D_i (1 + a)``, so ``D_i = slope_i /
    (1 + a)``: no other flash enters (which would correlate neighbouring
    flashes).  An anomalous first flash is not ``R S``: its background is ``D(t_0)
    a`` with ``D`` from the other flashes.  Flashes with fewer than ``min_dces``
    such DCEs, or none on one side of them, keep their two-DCE background;
    values discarded before stay discarded.
    """
    d_sky = {j: interpolate_response(stim, times[j])[:2] for j in sky}
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
        done.add(k)
    return done


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


def _drop_odd_flashes(stim: StimResponse, kept_idx: list, nsigma: float) -> None:
    """Drop interior flashes that are off the others' trend on *both* sides (in place).

    Each flash ``j`` is compared, by the array median of the ratio, with the
    linear extrapolations from its two neighbours on the left and from its two
    neighbours on the right.  A misfired flash is off both the same way; a real
    responsivity step between two flashes leaves each of them on the trend of
    its own side, so it is kept.  The worst flash off by more than ``nsigma``
    robust sigmas of the left deviations (and 0.5 %) is dropped, and the test
    repeated.  The first flash, which has no left side, is :func:`_first_flash`'s.
    """
    while len(stim.t) >= 7:
        left = _extrapolation_deviation(stim.t, stim.value, side=-1)
        right = _extrapolation_deviation(stim.t, stim.value, side=+1)
        finite = left[np.isfinite(left)]
        if finite.size < 5:
            return
        scatter = 1.4826 * np.median(np.abs(finite - np.median(finite)))
        limit = max(nsigma * scatter, 5e-3)
        both = (np.sign(left) == np.sign(right)) & (np.abs(left) > limit) & (np.abs(right) > limit)
        if not both.any():
            return
        j = int(np.nanargmax(np.where(both, np.minimum(np.abs(left), np.abs(right)), -1.0)))
        why = (f"brightness {left[j]:+.2%} / {right[j]:+.2%} off the trend of the flashes before / "
               f"after it (scatter {scatter:.2%}): misfired?")
        stim.report["dropped"].append((kept_idx[j], why))
        del kept_idx[j]
        stim.t, stim.value, stim.err = (np.delete(a, j, axis=0) for a in (stim.t, stim.value, stim.err))


def _extrapolation_deviation(t: np.ndarray, value: np.ndarray, *, side: int) -> np.ndarray:
    """(NFLASH,) array median of D_j / (line through the two flashes on ``side`` of j, at t_j) - 1."""
    n = len(t)
    out = np.full(n, np.nan)
    for j in range(2, n - 2):
        a, b = (j - 1, j - 2) if side < 0 else (j + 1, j + 2)
        pred = value[a] + (value[a] - value[b]) * (t[j] - t[a]) / (t[a] - t[b])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = value[j] / pred - 1
        if np.isfinite(rel).any():
            out[j] = np.nanmedian(rel)
    return out


def _second_differences(stim: StimResponse) -> np.ndarray:
    """Array median of (D_{k-1} - 2 D_k + D_{k+1}) / D_k for k = 1..n-2, time-weighted (NFLASH-2,)."""
    t, v = stim.t, stim.value
    u = ((t[1:-1] - t[:-2]) / (t[2:] - t[:-2])).reshape((-1,) + (1,) * (v.ndim - 1))
    pred = (1 - u) * v[:-2] + u * v[2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (pred - v[1:-1]) / v[1:-1]
    return np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in rel])


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
    common = np.interp(t, stim.t, stim.common) if nflash else np.nan   # nearest at the ends
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
    err = common * np.sqrt(((1 - w) * n_prev) ** 2 + (w * n_next) ** 2 + wander * x ** 2)
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
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # all-NaN pixels: NO_STIM below
        n = np.isfinite(stim.value).sum(0)
        value = np.nanmedian(stim.value, axis=0) if len(stim.t) else np.full(stim.value.shape[1:], np.nan)
        err = 1.2533 * np.nanmedian(stim.err, axis=0) / np.sqrt(np.maximum(n, 1))
    flags = np.where(np.isfinite(value), 0, BMASK["NO_STIM"]).astype(np.int32)
    return value, err, flags


def calibrate(slope, slope_err, response, response_err, *, dark, illum, fluxconv,
              dark_err=0.0, illum_err=0.0, fluxconv_err=0.0):
    """Surface brightness (MJy/sr) and its 1-sigma error from a slope and the responsivity.

    ``slope`` and ``response`` in DN/s, ``dark`` in MIPS units, ``illum``
    dimensionless, ``fluxconv`` in MJy/sr per MIPS unit; the ``*_err`` are the
    products' 1-sigma uncertainties (0 where a product set gives none).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mips = slope / response - dark
        scale = fluxconv / illum
        var = ((slope_err / response) ** 2 + (slope * response_err / response ** 2) ** 2
               + np.square(dark_err))
        rel_var = np.square(np.divide(illum_err, illum)) + (fluxconv_err / fluxconv) ** 2
        image = scale * mips
        return image, np.sqrt(scale ** 2 * var + image ** 2 * rel_var)
