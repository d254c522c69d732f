"""Streaming inverse-variance coadd with two-pass outlier rejection.

Pass 1 streams every cutout once and accumulates, per output pixel, the
inverse-variance sums ``sum w`` and ``sum w x``, the count and the largest and
smallest input with its weight.  From them comes a robust mean: the weighted
mean without the largest and smallest input where 3 or more inputs cover the
pixel (a cosmic ray is the largest input).  The per-pixel scale is each
input's own sigma plus, in quadrature, an excess ``s`` for what resampling
cannot make agree (a steep profile sampled at different sub-pixel phases
or slightly different pointings): ``s = slope * (input/output pixel size) *``
the largest step of the pass-1 mean to a neighbouring output pixel (the
"deriv" term of jwst/stcal's outlier detection).  It is 0 on smooth sky, so
the threshold there is ``k sigma_i``, and grows on sources, so they are not
clipped.  (A scatter-based scale, the trimmed chi^2 of the inputs, was tried
first: two cosmic rays on one pixel inflate it enough to hide both.)
Pass 2 streams the cutouts again and re-accumulates only inputs within
``k sqrt(sigma_i^2 + s^2)`` of the pass-1 mean; a further pass does the same
against pass 2's mean (``rejection_passes``): an outlier pass 1's trimmed mean
kept raises that mean's local slope and so the tolerance around it.  Memory is a fixed number of output-sized float64 arrays,
whatever the number of BCDs.  Where fewer than ``min_reject_coverage`` inputs
cover a pixel nothing is rejected (a median of two cannot tell which is bad;
MOPEX's dual/box outlier for low coverage is not implemented).

The result is ``sum w x / sum w`` with 1-sigma uncertainty
``1 / sqrt(sum w)`` (independent BCDs), the coverage (inputs used per pixel)
and the number of output pixels rejected in each BCD.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cutout import CutoutStore

__all__ = ["CoaddResult", "coadd"]


@dataclass(frozen=True)
class CoaddResult:
    """A coadded mosaic.

    Attributes
    ----------
    mosaic : numpy.ndarray
        Surface brightness, MJy/sr (NaN where nothing contributed).
    uncertainty : numpy.ndarray
        1-sigma uncertainty of ``mosaic``, MJy/sr.
    coverage : numpy.ndarray of int
        Number of BCDs that contributed per output pixel.
    rejected : numpy.ndarray of int
        Output pixels rejected as outliers in each BCD.
    """

    mosaic: np.ndarray
    uncertainty: np.ndarray
    coverage: np.ndarray
    rejected: np.ndarray


def _inputs(store: CutoutStore, offsets: np.ndarray, offset_var: np.ndarray):
    """(index, slices, background-corrected data, weight, valid) of each stored cutout; the
    weight counts the offset's own error (a small array's offset is as noisy as its pixels)."""
    for k in range(len(store)):
        cut = store.get(k)
        if cut is None:
            continue
        valid = np.isfinite(cut.data) & np.isfinite(cut.var) & (cut.var > 0)
        x = np.where(valid, cut.data.astype(np.float64) - offsets[k], 0.0)
        w = np.where(valid, 1.0 / np.where(valid, cut.var + offset_var[k], 1.0), 0.0)
        yield k, cut.box.slices, x, w, valid


def _pass1(store: CutoutStore, shape: tuple[int, int], offsets: np.ndarray, offset_var: np.ndarray):
    acc = {name: np.zeros(shape) for name in ("sw", "swx", "xmax_w", "xmin_w")}
    acc["n"] = np.zeros(shape, np.int32)
    acc["xmax"] = np.full(shape, -np.inf)
    acc["xmin"] = np.full(shape, np.inf)
    for _, sl, x, w, valid in _inputs(store, offsets, offset_var):
        acc["sw"][sl] += w
        acc["swx"][sl] += w * x
        acc["n"][sl] += valid
        _track(acc["xmax"][sl], acc["xmax_w"][sl], np.where(valid, x, -np.inf), w, np.greater)
        _track(acc["xmin"][sl], acc["xmin_w"][sl], np.where(valid, x, np.inf), w, np.less)
    return acc


def _track(best: np.ndarray, best_w: np.ndarray, x: np.ndarray, w: np.ndarray, better) -> None:
    """Keep the extreme value (and its weight) in place."""
    take = better(x, best)
    best[take] = x[take]
    best_w[take] = w[take]


def _robust_centre(acc: dict, min_reject_coverage: int, pixel_ratio: float, slope: float):
    """Trimmed weighted mean, the excess scale s (MJy/sr) per pixel, and where rejection applies."""
    n = acc["n"]
    trim = n >= max(min_reject_coverage, 3)
    xmax = np.where(trim, acc["xmax"], 0.0)
    xmin = np.where(trim, acc["xmin"], 0.0)
    wmax, wmin = np.where(trim, acc["xmax_w"], 0.0), np.where(trim, acc["xmin_w"], 0.0)
    sw = acc["sw"] - wmax - wmin
    swx = acc["swx"] - wmax * xmax - wmin * xmin
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sw > 0, swx / sw, np.nan)
    return mean, slope * pixel_ratio * _max_step(mean), trim


def _max_step(image: np.ndarray) -> np.ndarray:
    """Largest absolute difference of each pixel to its 4 neighbours (NaN-safe, 0 if none)."""
    steps = np.zeros(image.shape)
    for axis in (0, 1):
        d = np.abs(np.diff(image, axis=axis))
        d = np.where(np.isfinite(d), d, 0.0)
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        steps[tuple(lo)] = np.maximum(steps[tuple(lo)], d)
        steps[tuple(hi)] = np.maximum(steps[tuple(hi)], d)
    return steps


def _pass2(store: CutoutStore, shape, offsets, offset_var, mean, excess, trim, k: float):
    sw, swx = np.zeros(shape), np.zeros(shape)
    cov = np.zeros(shape, np.int32)
    rejected = np.zeros(len(store), np.int64)
    for idx, sl, x, w, valid in _inputs(store, offsets, offset_var):
        var = np.where(valid, 1.0 / np.where(valid, w, 1.0), np.inf)
        bad = valid & trim[sl] & (np.abs(x - mean[sl]) > k * np.sqrt(var + excess[sl] ** 2))
        use = valid & ~bad
        rejected[idx] = int(bad.sum())
        sw[sl] += np.where(use, w, 0.0)
        swx[sl] += np.where(use, w * x, 0.0)
        cov[sl] += use
    return sw, swx, cov, rejected


def coadd(store: CutoutStore, shape: tuple[int, int], *, offsets: np.ndarray | None = None,
          offset_var: np.ndarray | None = None,
          reject_sigma: float | None = 5.0, min_reject_coverage: int = 3,
          pixel_ratio: float = 1.0, slope: float = 0.5, rejection_passes: int = 2) -> CoaddResult:
    """Inverse-variance weighted, outlier-rejecting coadd of the cutouts in ``store``.

    Parameters
    ----------
    store : CutoutStore
        BCDs resampled onto the output grid.
    shape : tuple of int
        (NY, NX) of the output grid.
    offsets : numpy.ndarray, optional
        Additive background offset of each BCD, subtracted before coadding.
    offset_var : numpy.ndarray, optional
        Variance of each offset, (MJy/sr)^2, added to every pixel's of that BCD.
    reject_sigma : float or None
        Inputs more than this many (scaled) sigmas from the pass-1 robust mean
        are rejected; None: no rejection (one pass).
    min_reject_coverage : int
        No rejection where fewer inputs cover a pixel.
    pixel_ratio : float
        Input pixel size over output pixel size.
    slope : float
        The excess scale is ``slope * pixel_ratio`` times the largest step of the
        pass-1 mean to a neighbouring output pixel (the interpolation tolerance).
    rejection_passes : int
        Rejecting passes; each after the first judges against the previous
        pass's mean (cleaner than pass 1's trimmed mean where two outliers hit
        one pixel, so its slope term no longer widens the tolerance there).

    Returns
    -------
    CoaddResult
    """
    offsets = np.zeros(len(store)) if offsets is None else np.asarray(offsets, float)
    offset_var = np.zeros(len(store)) if offset_var is None else np.asarray(offset_var, float)
    acc = _pass1(store, shape, offsets, offset_var)
    if reject_sigma is None:
        sw, swx, cov, rejected = acc["sw"], acc["swx"], acc["n"], np.zeros(len(store), np.int64)
    else:
        mean, excess, trim = _robust_centre(acc, min_reject_coverage, pixel_ratio, slope)
        del acc
        for _ in range(rejection_passes):
            sw, swx, cov, rejected = _pass2(store, shape, offsets, offset_var, mean, excess, trim,
                                            reject_sigma)
            with np.errstate(invalid="ignore", divide="ignore"):   # the cleaner mean sets the next pass
                mean = np.where(sw > 0, swx / sw, np.nan)
            excess = slope * pixel_ratio * _max_step(mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        mosaic = np.where(sw > 0, swx / sw, np.nan)
        unc = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    return CoaddResult(mosaic, unc, cov.astype(np.int32), rejected)
