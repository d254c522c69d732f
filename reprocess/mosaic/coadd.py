"""Streaming inverse-variance coadd of BCDs with their outliers masked.

One pass over the BCDs, in input order: each is read again, its outliers are
found against the reference sky (:mod:`.outliers`; skipped without
rejection), masked, and the BCD is resampled through its stored pixel map
(:mod:`.cutout`) -- so a rejected BCD pixel leaves every output pixel it
touched -- and accumulated: ``sum w``, ``sum w x`` and the count per output
pixel, with ``w = 1 / (sigma^2 + sigma_offset^2)`` (a BCD's background offset
is as uncertain for all its pixels).  The mosaic is ``sum w x / sum w``, its
1-sigma uncertainty ``1 / sqrt(sum w)`` (independent BCDs), the coverage the
number of BCDs used per pixel.  Memory is a fixed number of output-sized
arrays plus one BCD, whatever the number of BCDs; the sums are taken in input
order, so the result does not depend on how the work is split.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy.nddata import CCDData

from .cutout import CutoutStore, resample
from .outliers import Reference, blot, find_outliers

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
        BCD pixels rejected as outliers in each BCD.
    """

    mosaic: np.ndarray
    uncertainty: np.ndarray
    coverage: np.ndarray
    rejected: np.ndarray


def _valid(ccd: CCDData) -> np.ndarray:
    valid = np.isfinite(ccd.data) & np.isfinite(ccd.uncertainty.array) & (ccd.uncertainty.array > 0)
    return valid if ccd.mask is None else valid & ~np.asarray(ccd.mask, bool)


def coadd(store: CutoutStore, shape: tuple[int, int], load: Callable[[int], CCDData], *,
          offsets: np.ndarray | None = None, offset_var: np.ndarray | None = None,
          reference: Reference | None = None,
          grid_position: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
          reject_sigma: float | None = 5.0, min_coverage: int = 3, radhit: bool = False,
          on_flags: Callable[[int, np.ndarray], None] | None = None) -> CoaddResult:
    """Inverse-variance weighted coadd of the BCDs of ``store``, outliers masked.

    Parameters
    ----------
    store : CutoutStore
        The BCDs' cutouts (their pixel maps are used).
    shape : tuple of int
        (NY, NX) of the output grid.
    load : callable
        ``load(k)`` -> the k-th BCD as ``CCDData`` (from ``load_bcd``).
    offsets, offset_var : numpy.ndarray, optional
        Additive background offset of each BCD (subtracted) and its variance, (MJy/sr)^2.
    reference : Reference, optional
        Outlier reference (:func:`.outliers.reference_sky`); None: no rejection.
    grid_position : callable, optional
        ``grid_position(k)`` -> (y, x) output-grid positions of the k-th BCD's pixel centres;
        needed with ``reference``.
    reject_sigma : float or None
        Outlier threshold, sigmas (None: no rejection).
    min_coverage : int
        Least coverage for the temporal (median) test; below it, the dual-outlier test.
    radhit : bool
        Also reject single-frame radiation hits where only one BCD covers the sky.
    on_flags : callable, optional
        ``on_flags(k, flags)`` with each BCD's RMask bits (uint8, the BCD's shape).

    Returns
    -------
    CoaddResult
    """
    n = len(store)
    offsets = np.zeros(n) if offsets is None else np.asarray(offsets, float)
    offset_var = np.zeros(n) if offset_var is None else np.asarray(offset_var, float)
    rejecting = reference is not None and reject_sigma is not None
    sw, swx = np.zeros(shape), np.zeros(shape)
    cov = np.zeros(shape, np.int32)
    rejected = np.zeros(n, np.int64)
    for k in range(n):
        cut = store.get(k)
        if cut is None:
            continue
        ccd = load(k)
        if rejecting:
            flags = _flags(ccd, offsets[k], offset_var[k], reference, grid_position(k),
                           reject_sigma=reject_sigma, min_coverage=min_coverage, radhit=radhit)
            rejected[k] = int(np.count_nonzero(flags))
            if on_flags is not None:
                on_flags(k, flags)
            drop = flags != 0
        else:
            drop = None
        resampled = resample(ccd, cut.pixmap, drop=drop)
        _accumulate(sw, swx, cov, resampled, offsets[k], offset_var[k])
    with np.errstate(invalid="ignore", divide="ignore"):
        mosaic = np.where(sw > 0, swx / sw, np.nan)
        unc = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    return CoaddResult(mosaic, unc, cov, rejected)


def _flags(ccd: CCDData, offset: float, offset_var: float, reference: Reference, position, *,
           reject_sigma: float, min_coverage: int, radhit: bool) -> np.ndarray:
    centre, variance, coverage, signal = blot(reference, *position)
    return find_outliers(np.asarray(ccd.data, np.float64) - offset, ccd.uncertainty.array,
                         _valid(ccd), centre, variance + offset_var, coverage, signal,
                         k=reject_sigma, min_coverage=min_coverage, radhit=radhit)


def _accumulate(sw, swx, cov, cut, offset: float, offset_var: float) -> None:
    sl = cut.box.slices
    valid = np.isfinite(cut.data) & np.isfinite(cut.var) & (cut.var > 0)
    w = np.where(valid, 1.0 / np.where(valid, cut.var.astype(np.float64) + offset_var, 1.0), 0.0)
    sw[sl] += w
    swx[sl] += np.where(valid, w * (cut.data.astype(np.float64) - offset), 0.0)
    cov[sl] += valid
