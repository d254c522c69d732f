"""Array kernels of the extra flat field: per-BCD background level, source masks, the clipped stack.

Pure functions on arrays; reading and writing BCDs is :mod:`reprocess.selfcal.flatfield`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["FlatAccumulator", "FlatEstimate", "background_level", "source_mask"]


@dataclass
class FlatEstimate:
    """An extra flat (median 1 over the pixels it was measured at) with its 1-sigma error."""

    value: np.ndarray          # (NY, NX), dimensionless; NaN where no BCD measured it
    error: np.ndarray          # (NY, NX), 1 sigma
    n_used: np.ndarray         # (NY, NX), BCDs that went into each pixel
    chi2_dof: np.ndarray       # (NY, NX), scatter of the block means about the flat over their errors


def background_level(image: np.ndarray, good: np.ndarray, *, nsigma: float = 3.0,
                     iterations: int = 5) -> tuple[float, float]:
    """Sigma-clipped median of the good pixels and their robust scatter (MAD x 1.4826), in image units."""
    v = image[good & np.isfinite(image)]
    if v.size < 16:
        return np.nan, np.nan
    med, scale = np.median(v), 1.4826 * np.median(np.abs(v - np.median(v)))
    for _ in range(iterations):
        keep = np.abs(v - med) <= nsigma * max(scale, np.finfo(float).tiny)
        med, scale = np.median(v[keep]), 1.4826 * np.median(np.abs(v[keep] - np.median(v[keep])))
    return float(med), float(scale)


def source_mask(image: np.ndarray, unc: np.ndarray, good: np.ndarray, level: float, scatter: float, *,
                nsigma: float = 3.0, grow_pix: int = 2) -> np.ndarray:
    """True on pixels ``nsigma`` above ``level``, grown by ``grow_pix``: sources.

    The threshold is ``nsigma`` times the larger of the pixel's error and the BCD's robust
    ``scatter`` about its level.  A flat error of a few per cent stands out of a 24 um BCD by
    ``error x level / unc``, several sigma of the noise (level/unc ~ 100-200): before the flat
    is known (first pass) the scatter, which holds it, keeps it from being masked; once the
    caller divides the previous estimate out, the scatter falls to the noise.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        hot = good & ((image - level) > nsigma * np.maximum(unc, scatter))
    if grow_pix > 0 and hot.any():
        hot = ndimage.binary_dilation(hot, structure=ndimage.generate_binary_structure(2, 1),
                                      iterations=grow_pix)
    return hot


class FlatAccumulator:
    """Streaming inverse-variance mean of normalised BCDs (``image / level``) per pixel.

    Add each BCD with :meth:`add` (values, errors and a use mask), in time
    order; :meth:`result` gives the flat, normalised to median 1, and its error.

    The error is that of *batch means*: the scatter of the means of blocks of
    ``block`` consecutive BCDs about the overall mean, over the square root of
    the number of blocks (weighted).  Consecutive BCDs of a scan map see
    overlapping sky, and a BCD's ``_bunc`` carries the calibration maps'
    errors (the same in every BCD, so they do not scatter): neither the
    scatter of single BCDs nor the formal ``1 / sqrt(sum w)`` is honest,
    the batch means are whatever the correlation within a block.  With fewer
    than ``EMPIRICAL_MIN`` blocks the scatter is itself too noisy and the
    formal error is a floor.  With ``centre`` and ``clip_sigma`` (a previous
    pass's flat), values more than ``clip_sigma`` of their own error from it
    are left out (cosmic rays, latents, unmasked source wings).
    """

    EMPIRICAL_MIN = 10

    def __init__(self, shape: tuple[int, int], *, block: int = 20, centre: np.ndarray | None = None,
                 clip_sigma: float | None = None):
        self.sw, self.swx = np.zeros(shape), np.zeros(shape)
        self.bw_m2 = np.zeros(shape)          # sum over blocks of W_b m_b^2
        self.blocks = np.zeros(shape, dtype=np.int64)
        self.n = np.zeros(shape, dtype=np.int64)
        self._bw, self._bwx, self._in_block = np.zeros(shape), np.zeros(shape), 0
        self.block, self.centre, self.clip_sigma = block, centre, clip_sigma

    def add(self, norm: np.ndarray, err: np.ndarray, use: np.ndarray) -> None:
        """One BCD: ``norm`` (image / its level), ``err`` (its error / level), ``use`` (bool)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = use & np.isfinite(norm) & np.isfinite(err) & (err > 0)
            if self.centre is not None and self.clip_sigma is not None:
                ok &= np.abs(norm - self.centre) <= self.clip_sigma * err
            w = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
        self._bw += w
        self._bwx += w * np.where(ok, norm, 0.0)
        self.n += ok
        self._in_block += 1
        if self._in_block == self.block:
            self._flush()

    def _flush(self) -> None:
        has = self._bw > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(has, self._bwx / self._bw, 0.0)
        self.sw += self._bw
        self.swx += self._bwx
        self.bw_m2 += self._bw * m * m
        self.blocks += has
        self._bw, self._bwx, self._in_block = np.zeros_like(self.sw), np.zeros_like(self.sw), 0

    def result(self, *, min_used: int = 3) -> FlatEstimate:
        """The flat (median 1 over pixels with ``min_used`` BCDs or more) and its error."""
        if self._in_block:
            self._flush()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.swx / self.sw
            chi2_dof = np.maximum(self.bw_m2 - self.sw * mean ** 2, 0.0) / np.maximum(self.blocks - 1, 1)
            err = np.sqrt(np.where(self.blocks >= self.EMPIRICAL_MIN, chi2_dof,
                                   np.maximum(chi2_dof, 1.0)) / self.sw)
        ok = self.n >= min_used
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            norm = np.nanmedian(np.where(ok, mean, np.nan))
        value = np.where(ok, mean / norm, np.nan)
        return FlatEstimate(value=value, error=np.where(ok, err / norm, np.nan), n_used=self.n.copy(),
                            chi2_dof=np.where(ok, chi2_dof, np.nan))
