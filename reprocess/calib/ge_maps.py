"""Ge (70, 160 um) calibration maps from calibration observations: read noise, reset level,
nonlinearity, permanent mask, dark and illumination correction.

Each derivation reads raw cubes or BCDs, never a simulator's truth, and
returns a value map with a 1-sigma error map.  The physics and the choices:

Read noise, excess noise and reset level (dark ramps)
    On the dark (scan mirror at its dark position) a ramp climbs only by the
    dark current.  Its first differences carry noise of two kinds: each
    read's noise appears in two neighbouring differences with opposite signs
    (variance ``2 sigma_r^2``, lag-1 covariance ``-sigma_r^2``), while the dark's
    shot noise (``mean / gain`` DN^2) and the excess current noise (``D dt``)
    are independent from one difference to the next.  So the lag-1
    autocovariance gives the read noise, and the variance minus twice it and
    minus the shot noise gives the excess density ``D``.  Both moments are
    taken about the pixel's mean difference over all ramps (a per-ramp mean
    would bias ``D`` low by ``1 / m`` for ``m`` differences: a quarter of its
    error).  Cosmic rays are clipped (5 sigma of the differences' MAD).  The
    reset level (``ENL_ZERO``, the raw level of zero integrated charge) is the
    ramp extrapolated back one read interval from its first reads (read ``k``
    holds ``k`` intervals of charge, counting from 1); its scatter between
    ramps is the reset (kTC) noise.  A hit among those first reads lifts
    every read after it: its step (a rejected difference) is taken out of the
    later reads before the extrapolation.  Clipping over ramps alone catches
    only hits early in those reads; one in the last few shifts the median of
    the reads by a fraction of their scatter, which biased the 160 um reset
    level high by 0.07 of its error over 40 campaigns (pull median +0.087 +-
    0.034, -0.002 with the steps taken out).
Electronic nonlinearity (stim flashes on the dark)
    A stim flash drives each ramp from zero to saturation at a constant
    photocurrent.  Under the law of :mod:`calibration.nonlinearity`
    (``u = q - beta q^2 / Q``) the charge steps of a ramp linearised with a
    trial ``beta'`` fall linearly with the charge, ``dq = b (1 - 2 (beta -
    beta') q / Q)``, so a line through ``(q, dq)`` per ramp corrects ``beta'``
    (iterated from 0).  Regressing on the measured charge, not the read index,
    keeps ramps hit by a cosmic ray right: the hit's charge (one outlying
    step, rejected) raises ``q`` for the rest of the ramp.  The hit's
    responsivity step, and the relaxation of earlier steps, also bend a ramp;
    they cancel on average over all ramps (steps up, relaxation down) in a
    detector under steady bombardment, so hit ramps are kept: keeping only
    unhit ones would select relaxing pixels and bias ``beta`` high.  The part
    of the responsivity change common to the array (drift, and the build-up
    of cosmic-ray responsivity after an anneal) is measured from flash to
    flash and taken out of each ramp's curvature.
Dark and illumination correction (stim-calibrated BCDs)
    Run through the ordinary pipeline with ``DARK = 0``, ``ILLUM = 1`` and
    ``FLUXCONV = 1``, a dark DCE becomes the dark in MIPS units and a sky DCE
    ``(G / S) * (flat / pattern) * sky``: normalised by its median over good
    pixels and combined over a dithered low-background field, sources
    rejected by clipping, it is the illumination correction ``IC = flat /
    pattern`` [HB 4.1.4 /43].
Errors
    BCDs between the same two stim flashes share those flashes' noise, so
    their errors are correlated in time.  Every error here is therefore the
    scatter of *batch means* over consecutive blocks of DCEs several stim
    cycles long, divided by the square root of the number of blocks: honest
    whatever the correlation within a block, at the price of a noisier error
    estimate (about ``1 / sqrt(2 n_blocks)``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from calibration.bitmask import PMASK, PMASK_FATAL
from calibration import nonlinearity
from calibration.nonlinearity import Q_FULL_DN

from ..sloper import saturated_reads

__all__ = ["MapEstimate", "batch_mean", "DarkRampMaps", "dark_ramp_maps", "nonlinearity_beta",
           "permanent_mask", "normalised_flat"]


@dataclass(frozen=True)
class MapEstimate:
    """A derived map and its 1-sigma error (same shape; NaN where not measured)."""

    value: np.ndarray
    error: np.ndarray
    n_used: np.ndarray        # samples (ramps, DCEs) per pixel that entered the value


def batch_mean(stack: np.ndarray, *, batch: int) -> MapEstimate:
    """Mean over axis 0 of ``stack`` (NaN = missing) with a batch-means error.

    ``stack`` is in time order; consecutive blocks of ``batch`` entries are
    averaged and the error is the scatter of the block means over the root of
    their number, so correlations shorter than a block are accounted for.  A
    short stack is cut into at least 5 blocks (shorter ones, which then miss
    part of the correlation); pixels with fewer than 3 usable blocks get a NaN
    error.
    """
    stack = np.asarray(stack, dtype=float)
    n = stack.shape[0]
    batch = max(1, min(batch, n // 5))
    nb = max(n // batch, 1)
    blocks = stack[: nb * batch].reshape((nb, -1) + stack.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(blocks, axis=1)
            value = np.nanmean(stack, axis=0)
            k = np.isfinite(means).sum(axis=0)
            err = np.nanstd(means, axis=0, ddof=1) / np.sqrt(k)
    return MapEstimate(value=value, error=np.where(k >= 3, err, np.nan),
                       n_used=np.isfinite(stack).sum(axis=0))


def _mad_clip(d: np.ndarray, axis: int, nsigma: float = 5.0) -> np.ndarray:
    """``d`` with values beyond ``nsigma`` robust sigmas of the median along ``axis`` set to NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN pixels (masked) stay NaN
        med = np.nanmedian(d, axis=axis, keepdims=True)
        sig = 1.4826 * np.nanmedian(np.abs(d - med), axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(d - med) <= nsigma * np.maximum(sig, 1e-9), d, np.nan)


def _ramps(cube: np.ndarray, nramps: int) -> np.ndarray:
    """(nramps, reads per ramp, NY, NX) view of a raw cube."""
    cube = np.asarray(cube, dtype=float)
    return cube.reshape((nramps, cube.shape[0] // nramps) + cube.shape[1:])


@dataclass(frozen=True)
class DarkRampMaps:
    """What dark ramps give: read noise (DN per read), excess-noise density (DN^2/s) and reset
    level ``ENL_ZERO`` (DN)."""

    read_noise: MapEstimate
    excess_noise: MapEstimate
    enl_zero: MapEstimate


def dark_ramp_maps(cubes: list[np.ndarray], *, nramps: int, gain: float, read_time: float,
                   n_zero_reads: int = 8) -> DarkRampMaps:
    """Read noise, excess noise and reset level from dark ramps (see the module notes).

    Parameters
    ----------
    cubes : list of (NREADS, NY, NX) arrays
        Raw dark DCEs (no sky, no stim), in time order.
    nramps : int
        Ramps per DCE (resets within a DCE).
    gain : float
        e-/DN, for the dark's own shot noise in the differences.
    read_time : float
        Time between reads, s.
    n_zero_reads : int
        Reads at the start of a ramp used to extrapolate the reset level.

    Ramps are independent for all three (no flash is involved), so the errors
    are the plain scatter over ramps.
    """
    diffs = [_mad_clip(np.diff(ramp, axis=0), axis=0) for cube in cubes for ramp in _ramps(cube, nramps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # masked (all-NaN) pixels stay NaN
        step = np.nanmean(np.concatenate(diffs, axis=0), axis=0)
        lag0, lag1 = [], []
        for d in diffs:
            r = d - step
            lag0.append(np.nanmean(r * r, axis=0))
            lag1.append(np.nanmean(r[1:] * r[:-1], axis=0))
    lag0, lag1 = np.array(lag0), np.array(lag1)
    var = batch_mean(-lag1, batch=1)
    sigma = np.sqrt(np.clip(var.value, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        rn = MapEstimate(value=sigma, error=var.error / (2 * sigma), n_used=var.n_used)
    excess = batch_mean((lag0 + 2 * lag1 - np.maximum(step, 0) / gain) / read_time, batch=1)
    zero = _reset_level([ramp for cube in cubes for ramp in _ramps(cube, nramps)], n_zero_reads)
    return DarkRampMaps(read_noise=rn, excess_noise=excess, enl_zero=zero)


def _reset_level(ramps, n_zero_reads: int) -> MapEstimate:
    """``ENL_ZERO``: each ramp, its hits' steps taken out, extrapolated back from its first reads
    (read ``k`` holds ``k`` intervals of charge), clipped over ramps (a hit the clipping of
    differences missed, or one before the first read)."""
    per_ramp = []
    k = np.arange(1, n_zero_reads + 1)[:, None, None]
    for ramp in ramps:
        d = _mad_clip(np.diff(ramp, axis=0), axis=0)
        step = np.nanmean(d, axis=0)
        # the reads with every rejected step (a hit) replaced by the mean step: a hit's charge
        # no longer lifts the reads after it
        jumps = np.where(np.isfinite(d), 0.0, np.diff(ramp, axis=0) - step)
        clean = ramp - np.concatenate([np.zeros((1,) + ramp.shape[1:]), np.cumsum(jumps, axis=0)])
        per_ramp.append(np.nanmedian(clean[:n_zero_reads] - step * k, axis=0))
    zeros = _mad_clip(np.array(per_ramp), axis=0)
    n = np.isfinite(zeros).sum(0)
    return MapEstimate(value=np.nanmean(zeros, axis=0),
                       error=np.nanstd(zeros, axis=0, ddof=1) / np.sqrt(n), n_used=n)


def nonlinearity_beta(cubes: list[np.ndarray], times_s: np.ndarray, *, nramps: int,
                      read_time: float, enl_zero: np.ndarray, saturation_dn: float,
                      min_reads: int = 12, jump_sigma: float = 5.0,
                      iterations: int = 3) -> MapEstimate:
    """Nonlinearity coefficient ``beta`` per pixel from ramps that climb towards saturation.

    Parameters
    ----------
    cubes : list of (NREADS, NY, NX) arrays
        Raw stim-flash DCEs taken on the dark, in time order.
    times_s : (N,) array
        Start time of each DCE, s (any origin).
    nramps : int
        Ramps per DCE.
    read_time : float
        Time between reads, s.
    enl_zero : (NY, NX) array
        Reset level, DN (e.g. from :func:`dark_ramp_maps`).
    saturation_dn : float
        Raw level at and above which reads are not used.
    min_reads : int
        Fewest usable reads for a ramp to count.
    jump_sigma : float
        Differences this many robust sigmas off the fit are cosmic rays (rejected).
    iterations : int
        Linearise-and-refit passes (each divides the error of ``beta`` by ~``beta q / Q``).

    Returns
    -------
    MapEstimate (dimensionless; error from the scatter over ramps)

    Notes
    -----
    A responsivity that changes while a ramp climbs bends it as the
    nonlinearity does.  Its part common to the array (drift; the build-up of
    cosmic-ray responsivity after an anneal) is seen from flash to flash: the
    rate of change of the array-median photocurrent, a robust (Theil-Sen) slope
    over the neighbouring flashes, is taken out of each ramp's curvature.
    """
    if len(cubes) < 3:
        raise ValueError(f"{len(cubes)} stim flashes on the dark: the nonlinearity needs at least 3")
    per = cubes[0].shape[0] // nramps
    ramps = [r - enl_zero for c in cubes for r in _ramps(c, nramps)]
    usable = [~saturated_reads(c, saturation_dn, nramps).reshape(_ramps(c, nramps).shape)[i]
              for c in cubes for i in range(nramps)]
    t = (np.asarray(times_s, dtype=float)[:, None] + read_time * per * np.arange(nramps)).ravel()
    beta = np.zeros((len(ramps),) + ramps[0].shape[1:])
    drift = np.zeros(len(ramps))         # fractional photocurrent change per read, common
    for it in range(iterations):
        fits_ = [_beta_residual(u, ok, b, d, min_reads, jump_sigma)
                 for u, ok, b, d in zip(ramps, usable, beta, drift)]
        beta = beta + np.array([f[0] for f in fits_])
        if it == 0:
            level = np.array([np.nanmedian(f[1]) for f in fits_])
            drift = _common_rate(t, level) * read_time
        if it < iterations - 1:
            beta = np.where(np.isfinite(beta), beta, 0.0)
    n = np.isfinite(beta).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = np.nanmean(beta, axis=0)
            err = np.nanstd(beta, axis=0, ddof=1) / np.sqrt(n)
    return MapEstimate(value=value, error=np.where(n >= 3, err, np.nan), n_used=n)


def _common_rate(t: np.ndarray, level: np.ndarray, half_window: int = 3) -> np.ndarray:
    """d ln(level) / dt at each time: Theil-Sen slope over the ``2 half_window + 1`` nearest points
    (robust to one anomalous flash such as the first of an AOR)."""
    y = np.log(level)
    out = np.zeros(len(t))
    for j in range(len(t)):
        lo, hi = max(0, j - half_window), min(len(t), j + half_window + 1)
        out[j] = stats.theilslopes(y[lo:hi], t[lo:hi])[0] if hi - lo >= 3 else 0.0
    return out


def _beta_residual(u: np.ndarray, usable: np.ndarray, beta: np.ndarray, drift: float,
                   min_reads: int, jump_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Correction to ``beta`` for one ramp, and its charge step per read ``b`` (DN).

    Linearised with ``beta'``, a ramp's charge steps are ``dq_k = b (1 - 2 (beta - beta') q_k / Q)``
    to first order, with ``q_k`` the charge at the step (cosmic-ray charge included), so a line
    through ``(q_k, dq_k)`` gives ``beta - beta' = -slope Q / (2 b)``, once the slope ``drift``
    (fractional change of the photocurrent per read) that a changing responsivity adds is taken
    out.  The level is read one step back, ``q_{k-1}`` (a constant ``1.5 b`` below the step's
    middle, which leaves the slope alone): the step's middle shares the step's own shot and
    excess noise (covariance ``var(step) / 2``) and the level at its start its read noise
    (``-var(read)``), and either biases the slope of a short ramp by a few tenths of its error
    (at 160 um); the level before does not share the step's noise.  The difference holding a
    cosmic ray's charge is rejected; the ramp is kept (see module notes).
    """
    q = nonlinearity.inverse(np.where(usable, u, np.nan), beta)
    dq = np.diff(q, axis=0)[1:]
    mid = q[:-2]
    for _ in range(2):
        a, c, resid = _line_fit(dq, mid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            robust = 1.4826 * np.nanmedian(np.abs(resid), axis=0)
        with np.errstate(invalid="ignore"):
            dq = np.where(np.abs(resid) <= jump_sigma * robust, dq, np.nan)
            mid = np.where(np.isfinite(dq), mid, np.nan)
    a, c, _ = _line_fit(dq, mid)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = -(c - drift) * Q_FULL_DN / (2 * a)
        keep = (np.isfinite(dq).sum(axis=0) >= min_reads) & (a > 0)
    return np.where(keep, corr, np.nan), np.where(keep, a, np.nan)


def _line_fit(y: np.ndarray, x: np.ndarray):
    """Ordinary least squares ``y = a + c x`` along axis 0 ignoring NaN; returns a, c, residuals."""
    m = np.isfinite(y)
    n = m.sum(axis=0)
    xm = np.where(m, x, 0.0)
    ym = np.where(m, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xm.sum(0) / n, ym.sum(0) / n
        sxx = (np.where(m, (x - mx) ** 2, 0)).sum(0)
        sxy = (np.where(m, (x - mx) * (y - my), 0)).sum(0)
        c = sxy / sxx
        a = my - c * mx
    return a, c, np.where(m, y - a - c * x, np.nan)


def permanent_mask(read_noise: np.ndarray, stim_response: np.ndarray, *,
                   noisy_factor: float = 3.0, dead_fraction: float = 0.2,
                   halves: tuple[slice, slice] | None = None) -> np.ndarray:
    """Permanent mask bits from the data: noisy, dead, and (70 um) a bad readout half.

    Parameters
    ----------
    read_noise : (NY, NX) array
        DN per read.
    stim_response : (NY, NX) array
        Stim-minus-dark response, DN/s (any common scale).
    noisy_factor : float
        Read noise above this multiple of the array median: ``NOISY``.
    dead_fraction : float
        Stim response below this fraction of the array median: ``BAD_PIXEL``.
    halves : pair of column slices, optional
        The two readout halves (70 um): a half whose median read noise exceeds
        ``noisy_factor`` times the other's is ``BAD_HALF | BAD_PIXEL``
        [HB 6.5 /68].
    """
    pmask = np.zeros(read_noise.shape, dtype=np.int32)
    if halves is not None:
        med = [np.nanmedian(read_noise[:, h]) for h in halves]
        for h, mine, other in ((halves[0], med[0], med[1]), (halves[1], med[1], med[0])):
            if mine > noisy_factor * other:
                pmask[:, h] |= PMASK["BAD_HALF"] | PMASK["BAD_PIXEL"]
    live = (pmask & PMASK_FATAL) == 0
    rn_med = np.nanmedian(read_noise[live])
    pmask[~(read_noise <= noisy_factor * rn_med)] |= PMASK["NOISY"]
    stim_med = np.nanmedian(stim_response[live])
    pmask[~(stim_response >= dead_fraction * stim_med)] |= PMASK["BAD_PIXEL"]
    return pmask


def normalised_flat(stack: np.ndarray, good: np.ndarray, *, batch: int, dark_err=0.0,
                    clip_sigma: float = 4.0) -> MapEstimate:
    """Illumination correction from stim-calibrated sky BCDs (MIPS units, ``ILLUM = 1``).

    Parameters
    ----------
    stack : (N, NY, NX) array
        BCDs of a dithered low-background field in time order (NaN = unusable).
    good : (NY, NX) bool
        Pixels whose median defines the normalisation (median 1).
    batch : int
        DCEs per batch of :func:`batch_mean` (a few stim cycles).
    dark_err : float or (NY, NX) array
        Error of the dark subtracted from the BCDs (MIPS units): the same in
        every DCE, so it adds ``dark_err / level`` to the flat's error.
    clip_sigma : float
        Per pixel, values beyond this many robust sigmas of the pixel's median
        over the stack (sources passing over it, residual cosmic rays) are rejected.
    """
    stack = np.asarray(stack, dtype=float)
    level = np.nanmedian(stack[:, good], axis=1)
    rel = _mad_clip(stack / level[:, None, None], axis=0, nsigma=clip_sigma)
    est = batch_mean(rel, batch=batch)
    norm = np.nanmedian(est.value[good])
    err = np.hypot(est.error, np.asarray(dark_err) * np.nanmean(1.0 / level))
    return MapEstimate(value=est.value / norm, error=err / norm, n_used=est.n_used)
