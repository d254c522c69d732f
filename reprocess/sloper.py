"""SLOPER for Ge DCEs: raw reads -> saturation flags -> nonlinearity -> jumps -> slope.

The steps of the SSC's Ge SLOPER [GeRT /4], on plain arrays:

1. saturation: reads at or above the products' level, and every later read of
   the same ramp, are not used (a saturated CTIA does not recover in-ramp, but
   a reset restores it: the second ramp of a 160 um DCE stays usable); nor is
   the last read before the first saturated one, which is kept only because its
   noise happened to hold it below the level (a truncation that biases the
   slope low by a few hundredths of its error when kept);
2. electronic nonlinearity: each read is linearised with the per-pixel law of
   :mod:`calibration.nonlinearity` around the reset level ``ENL_ZERO``; reads
   where the law cannot be inverted are dropped;
3. jump detection and slope fitting with :func:`reprocess.ramps.fit_ramps`,
   one ramp at a time when the DCE holds several (160 um 10 s DCEs), the ramps'
   slopes then fused with inverse-variance weights, which is the GLS of the
   whole DCE because the ramps' noises are independent.

The read noise passed to the fit is scaled by the nonlinearity's ``dq/du`` at
the middle of the ramp, so the error bars stay right for bright pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration import nonlinearity
from calibration.bitmask import BMASK

from .ramps import DEFAULT_THRESHOLD, fit_ramps

__all__ = ["DCESlope", "saturated_reads", "slope_dce", "slope_dces"]


@dataclass
class DCESlope:
    """Slope of one DCE (maps (NY, NX); ``jumps`` (NREADS, NY, NX))."""

    slope: np.ndarray        # DN/s
    slope_err: np.ndarray    # DN/s
    jumps: np.ndarray        # bool
    first_unusable: np.ndarray   # first read not usable (saturated/ENL), NREADS if none
    flags: np.ndarray        # BMASK bits


def slope_dce(reads: np.ndarray, *, read_time: float, nramps: int, gain, read_noise,
              excess_noise=0.0, saturation_dn: float, enl_beta, enl_zero, apply_nonlinearity: bool = True,
              threshold: float = DEFAULT_THRESHOLD, min_segment_reads: int = 4,
              enl_beta_err=0.0) -> DCESlope:
    """Slope of a raw DCE cube ``reads`` (NREADS, NY, NX) in DN; see the module notes.

    ``excess_noise`` (DN^2/s, a map or a number) is the white current noise the
    fit's error model adds (:func:`reprocess.ramps.fit_ramps`); it lives in the
    charge domain, so unlike the read noise it needs no nonlinearity scaling.

    ``enl_beta_err`` (the nonlinearity coefficient's 1-sigma error, a map or 0)
    adds its effect on the slope to the error: linearised with ``beta + d``,
    reads gain ``d q^2 / Q``, which tilts a ramp climbing to ``q_end`` by
    ``slope * q_end / Q * d``.
    """
    raw = np.asarray(reads, dtype=float)
    nreads = raw.shape[0]
    if nramps < 1 or nreads % nramps:
        raise ValueError(f"nramps={nramps} does not divide {nreads} reads")
    per = nreads // nramps
    saturated = saturated_reads(raw, saturation_dn, nramps)
    signal = raw - enl_zero
    if apply_nonlinearity:
        lin = nonlinearity.inverse(signal, enl_beta)
    else:
        lin = signal
    enl_bad = ~np.isfinite(lin) & ~saturated
    usable = _within_ramps(np.minimum.accumulate, ~saturated & ~enl_bad, nramps)
    first_unusable = np.where(usable.all(0), nreads, np.argmin(usable, axis=0))

    nums = np.zeros(raw.shape[1:])
    dens = np.zeros(raw.shape[1:])
    jumps = np.zeros(raw.shape, dtype=bool)
    for r in range(nramps):
        sl = slice(r * per, (r + 1) * per)
        ok = usable[sl]
        rn = read_noise
        if apply_nonlinearity:
            # read-noise scale dq/du at the middle of the usable part of the ramp
            n_ok = ok.sum(axis=0)
            mid = np.take_along_axis(signal[sl], (n_ok // 2)[None], axis=0)[0]
            scale = nonlinearity.inverse_derivative(mid, enl_beta)
            rn = read_noise * np.nan_to_num(scale, nan=1.0)
        fit = fit_ramps(lin[sl], read_time=read_time, gain=gain, read_noise=rn,
                        excess_noise=excess_noise, good=ok,
                        threshold=threshold, min_segment_reads=min_segment_reads)
        jumps[sl] = fit.jumps
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(np.isfinite(fit.slope), 1.0 / fit.slope_err ** 2, 0.0)
        nums += w * np.nan_to_num(fit.slope)
        dens += w
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(dens > 0, nums / dens, np.nan)
        err = np.where(dens > 0, 1.0 / np.sqrt(dens), np.nan)
    if apply_nonlinearity and np.any(enl_beta_err):
        q_end = np.nanmax(np.where(usable, lin, np.nan), axis=0, initial=0.0)
        err = np.hypot(err, slope * q_end / nonlinearity.Q_FULL_DN * enl_beta_err)
    flags = np.zeros(raw.shape[1:], dtype=np.int32)
    flags[saturated.any(0)] |= BMASK["SATURATED"]
    flags[jumps.any(0)] |= BMASK["JUMP"]
    flags[enl_bad.any(0)] |= BMASK["ENL_FAILED"]
    flags[~np.isfinite(slope)] |= BMASK["NO_SLOPE"]
    flags[first_unusable < nreads] |= BMASK["SHORT_RAMP"]
    return DCESlope(slope=slope, slope_err=err, jumps=jumps, first_unusable=first_unusable,
                    flags=flags)


def saturated_reads(raw: np.ndarray, saturation_dn: float, nramps: int) -> np.ndarray:
    """Reads not to use for saturation: at or after the first read at ``saturation_dn`` in
    each ramp, and the read just before it (see the module notes)."""
    over = _within_ramps(np.maximum.accumulate, np.asarray(raw) >= saturation_dn, nramps)
    per = over.reshape((nramps, over.shape[0] // nramps) + over.shape[1:])
    before = np.zeros_like(per)
    before[:, :-1] = per[:, 1:]
    return (per | before).reshape(over.shape)


def _within_ramps(accumulate, a: np.ndarray, nramps: int) -> np.ndarray:
    """``accumulate`` (a ufunc's ``.accumulate``) along reads, restarting at each of ``nramps`` ramps."""
    per_ramp = a.reshape((nramps, a.shape[0] // nramps) + a.shape[1:])
    return accumulate(per_ramp, axis=1).reshape(a.shape)


def slope_dces(cubes: list[np.ndarray], *, batch: int = 32, **kwargs) -> list[DCESlope]:
    """:func:`slope_dce` of many equal-shape DCEs, stacked ``batch`` at a time into one tall frame.

    Pixels are independent, so fitting DCEs side by side gives the same numbers as
    one at a time while amortising the per-call overhead over many small frames.
    Per-pixel maps in ``kwargs`` (gain, read_noise, excess_noise, enl_beta, enl_zero) are tiled.
    """
    out: list[DCESlope] = []
    for b0 in range(0, len(cubes), batch):
        group = cubes[b0:b0 + batch]
        ny = group[0].shape[1]
        tall = np.concatenate(group, axis=1)
        tiled = {k: (np.tile(v, (len(group), 1)) if np.ndim(v) == 2 else v) for k, v in kwargs.items()}
        res = slope_dce(tall, **tiled)
        for i in range(len(group)):
            rows = slice(i * ny, (i + 1) * ny)
            out.append(DCESlope(slope=res.slope[rows], slope_err=res.slope_err[rows],
                                jumps=res.jumps[:, rows], first_unusable=res.first_unusable[rows],
                                flags=res.flags[rows]))
    return out
