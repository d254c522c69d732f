"""Outlier rejection in the BCD frame: a robust reference sky, blotted back onto every BCD.

Cosmic rays at 24 um reach the BCDs: the on-board slope cannot reject them
(70 and 160 um ramps are fitted read by read, and the jumps are cut there).
Each leaves charge in one BCD pixel, which bilinear resampling spreads over
every output pixel within one input pixel of it with weights down to zero, so
a test on the output grid sees the hit only where its weight is large and
leaves the tails.  Here the test is made on the BCD pixel itself, and a
rejected pixel is masked in the BCD before the final resampling, which takes
it out of every output pixel it touched (MOPEX's RMask back-projection and
"reinterpolation of affected pixels", without the area threshold).

Reference (:func:`reference_sky`).  Per output pixel, the median over the
BCDs covering it of their background-corrected *detection images* (cubic
spline resamplings, :func:`.cutout.detection_image`), with

* ``var_median = (pi/2) / sum(1/sigma_i^2)``, the variance of a median of
  inputs of noise ``sigma_i`` (one input pixel's, ``var_smooth``), and
* an excess scale ``s^2 = max(0, (1.4826 MAD)^2 - median sigma_i^2)``: what
  the inputs disagree by beyond their noise -- on a source, the different
  sub-pixel phases at which the BCDs sampled it.

The median takes the whole stack of a pixel at once, so it is computed in
tiles of the output grid: a tile's stack holds the parts of the cutouts that
overlap it, read through memory maps, and the tile is made smaller until
(number of overlapping BCDs) x (tile area) fits a fixed memory budget; memory
therefore does not grow with the number of BCDs (only with the depth of a
pile of BCDs on one spot, which the smaller tile absorbs).

Test (:func:`find_outliers`).  The reference is blotted onto each BCD pixel
through the BCD's distortion (cubic spline of the reference; its variance
bilinearly) and a pixel is an outlier where

    |x - offset - reference| > k sqrt(sigma_x^2 + var_median + s^2) + eta |S|

with ``S`` the reference's brightness above its local minimum over 3 PSF FWHM
(a source's brightness) and ``eta = SOURCE_TOLERANCE`` (0.1).  Where the
nearest output pixel has at least ``min_coverage`` (3) BCDs this is a
temporal outlier (RMask bit 1; MOPEX's multiframe outlier with a pull that
counts each input's own uncertainty, and the scatter only where it exceeds the
noise).  Where 2 BCDs cover a pixel the median is their mean and cannot say
which one is hit: a pixel is a *dual* outlier (bit 2) if it is both above the
other BCD (``2 (x - reference)`` beyond the same threshold, with the
difference's noise) and a spike in its own BCD (above the median of its 8
neighbours by ``k`` of its noise) -- MOPEX's dual outlier, spatial and
temporal.  Where one BCD covers a pixel, only the spatial test is possible; a
spike whose neighbours are not spikes themselves (a cosmic ray is a pixel, a
source a PSF) is a single-frame radiation hit (bit 0), flagged only with
``radhit=True``.

Why a cubic spline, and why ``eta``.  Bilinear resampling of a 24 um point
source (PSF FWHM 6" on 2.55" pixels) under-reads its core by a different
amount in every BCD (each has its own sub-pixel phase); the median of such
resamplings, blotted back, predicts the core pixels of each BCD to 6 sigma
RMS (robust; within 8" of the 25 sources of a 24 um photometry stack, 29
BCDs) and the old test on the output grid needed a tolerance of 0.5 x (input /
output pixel) x the local step of the mosaic, which let cosmic rays of tens of
sigma through on sources and, through the interpolation's tails, around them
(89.5 % removed on the unit test's data).  The cubic spline's prediction is
good to 1.5 sigma within 8" and to the noise beyond.  What remains is what no
interpolation of the samples reproduces: on noise-free BCDs of the same stack
(the truth sky) the prediction misses source pixels by up to 6-8 % of the
source's brightness (99th percentile) and 17 sigma at most; after ``eta =
0.1`` of the brightness at most 3.6 sigma is left, below ``k``.  The cost: on
a source, a cosmic ray must exceed 10 % of the source's brightness (plus
``k`` sigma) to be found.  Pixels within the spline's reach of a BCD's edge or
of a masked pixel keep the bilinear value (the spline would extrapolate), and
the reference is filled beyond the covered area with its nearest value before
its spline is taken (a step to zero there rings across the edge pixels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .cutout import CutoutStore

__all__ = ["RMASK", "Reference", "blot", "find_outliers", "reference_sky"]

# MOPEX RMask bits [mips-facts 6.2]: 0 single-frame radhit, 1 multiframe (temporal), 2 dual, 3 box
RMASK = {"RADHIT": 1 << 0, "TEMPORAL": 1 << 1, "DUAL": 1 << 2}

# PSF FWHM, arcsec: 24 um measured, 70 and 160 um the pre-launch 0.27"/um scaling [mips-facts 1.4]
PSF_FWHM_ARCSEC = {24: 5.9, 70: 18.9, 160: 43.2}
# the reference predicts a source's BCD pixels to this fraction of the source's brightness
SOURCE_TOLERANCE = 0.1

_MAD_TO_SIGMA = 1.4826
_MAD_SIGMA_ERROR = 0.78           # relative standard error of a MAD-based sigma, times sqrt(n)
_MEDIAN_VARIANCE = np.pi / 2      # variance of a median of n Gaussian values, in sigma^2 / n


@dataclass(frozen=True)
class Reference:
    """The outlier reference on the output grid.

    Attributes
    ----------
    centre : numpy.ndarray
        Median of the detection images, MJy/sr (NaN where no BCD covers).
    variance : numpy.ndarray
        ``var_median + s^2``, (MJy/sr)^2 (0 where no BCD covers).
    coverage : numpy.ndarray of int
        BCDs per output pixel in the detection stack.
    background : numpy.ndarray
        Local minimum of ``centre`` over ``background_box`` output pixels (about 3 PSF
        FWHM): the sky under a source, so that ``centre - background`` is its brightness.
    coefficients : numpy.ndarray
        Cubic-spline coefficients of ``centre`` filled with its nearest covered value.
    """

    centre: np.ndarray
    variance: np.ndarray
    coverage: np.ndarray
    background: np.ndarray
    coefficients: np.ndarray


def _box_array(store: CutoutStore) -> np.ndarray:
    return np.array([(b.y0, b.y1, b.x0, b.x1) if b is not None else (0, 0, 0, 0)
                     for b in store.boxes], dtype=np.int64).reshape(-1, 4)


def _tiles(shape: tuple[int, int], size: int):
    for y0 in range(0, shape[0], size):
        for x0 in range(0, shape[1], size):
            yield y0, min(y0 + size, shape[0]), x0, min(x0 + size, shape[1])


def _members(boxes: np.ndarray, tile) -> np.ndarray:
    y0, y1, x0, x1 = tile
    return np.flatnonzero((boxes[:, 0] < y1) & (boxes[:, 1] > y0) & (boxes[:, 2] < x1)
                          & (boxes[:, 3] > x0) & (boxes[:, 1] > boxes[:, 0]))


def tile_size(boxes: np.ndarray, shape: tuple[int, int], *, memory_bytes: float,
              largest: int = 64) -> int:
    """Largest power-of-two tile edge (<= ``largest``, >= 8) whose stacks fit ``memory_bytes``."""
    size = largest
    while size > 8:
        deepest = max((len(_members(boxes, t)) for t in _tiles(shape, size)), default=0)
        if deepest * size * size * 4 * _BYTES_PER_VALUE <= memory_bytes:
            break
        size //= 2
    return size


_BYTES_PER_VALUE = 6   # two float32 stacks plus sorting work, per value and 4 bytes


def _sorted_median(sorted_stack: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median along axis 0 of a stack sorted with NaN last, ``n`` finite values per pixel."""
    lo = np.clip((n - 1) // 2, 0, None)[None]
    hi = np.clip(n // 2, 0, None)[None]
    a = np.take_along_axis(sorted_stack, lo, axis=0)[0]
    b = np.take_along_axis(sorted_stack, hi, axis=0)[0]
    return np.where(n > 0, 0.5 * (a.astype(np.float64) + b), np.nan)


def stack_statistics(values: np.ndarray, variances: np.ndarray, *, min_scatter: int = 3):
    """Median, ``var_median + s^2`` and count along axis 0 of a (K, NY, NX) stack (NaN = absent).

    Parameters
    ----------
    values : numpy.ndarray
        Detection values, MJy/sr.
    variances : numpy.ndarray
        Each value's single-input-pixel variance, (MJy/sr)^2.
    min_scatter : int
        The excess scale ``s`` is measured only where at least this many values are present.

    Notes
    -----
    ``s^2`` is the part of the MAD-based variance beyond the noise that the MAD's own
    sampling error (relative standard error ``0.78 / sqrt(n)`` of a MAD-based sigma)
    cannot make at 2 of its sigmas: ``max(0, (1.4826 MAD)^2 - sigma^2 (1 + 1.56 /
    sqrt(n))^2)``.  With few values, a MAD inflated by chance or by a cosmic ray in
    the stack would otherwise hide the very outliers it is there to judge.

    Returns
    -------
    centre, variance : numpy.ndarray
        float64 (NY, NX); NaN and 0 where nothing is present.
    n : numpy.ndarray of int
    """
    n = np.isfinite(values).sum(axis=0)
    centre = _sorted_median(np.sort(values, axis=0), n)
    deviation = np.abs(values - centre[None].astype(np.float32))
    mad = _sorted_median(np.sort(deviation, axis=0), n)
    present = np.isfinite(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise2 = np.where(present, variances, 0.0).sum(axis=0, dtype=np.float64) / n
        allowed = noise2 * (1 + 2 * _MAD_SIGMA_ERROR / np.sqrt(n)) ** 2
        excess2 = np.where(n >= min_scatter, np.maximum((_MAD_TO_SIGMA * mad) ** 2 - allowed, 0.0), 0.0)
        inverse = np.where(present, 1.0 / variances.astype(np.float64), 0.0).sum(axis=0)
        var_median = np.where(inverse > 0, _MEDIAN_VARIANCE / inverse, 0.0)
    return centre, np.where(n > 0, var_median + excess2, 0.0), n


def background_box(band: int, pixel_arcsec: float) -> int:
    """Odd box size, output pixels, spanning 3 PSF FWHM of ``band``."""
    size = int(np.ceil(3 * PSF_FWHM_ARCSEC[band] / pixel_arcsec))
    return size + 1 - size % 2


def reference_sky(store: CutoutStore, shape: tuple[int, int], offsets: np.ndarray, *,
                  background_box: int = 9, memory_bytes: float = 256e6) -> Reference:
    """The outlier reference of the cutouts in ``store`` (see the module notes).

    Parameters
    ----------
    store : CutoutStore
        BCDs resampled onto the output grid, with their detection images.
    shape : tuple of int
        (NY, NX) of the output grid.
    offsets : numpy.ndarray
        Background offset of each BCD, MJy/sr (subtracted).
    background_box : int
        Box (output pixels) of the local minimum taken as the sky under a source
        (:func:`background_box`).
    memory_bytes : float
        Budget for one tile's stacks.

    Returns
    -------
    Reference
    """
    boxes = _box_array(store)
    size = tile_size(boxes, shape, memory_bytes=memory_bytes)
    centre = np.full(shape, np.nan)
    variance = np.zeros(shape)
    coverage = np.zeros(shape, np.int32)
    for tile in _tiles(shape, size):
        y0, y1, x0, x1 = tile
        members = _members(boxes, tile)
        if not len(members):
            continue
        values = np.full((len(members), y1 - y0, x1 - x0), np.nan, np.float32)
        variances = np.full_like(values, np.nan)
        for j, k in enumerate(members):
            by0, by1, bx0, bx1 = boxes[k]
            oy0, oy1, ox0, ox1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
            det, var = store.planes(int(k), ("detection", "var_smooth"),
                                    (slice(oy0 - by0, oy1 - by0), slice(ox0 - bx0, ox1 - bx0)))
            values[j, oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] = det - np.float32(offsets[k])
            variances[j, oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] = var
        c, v, n = stack_statistics(values, variances)
        centre[y0:y1, x0:x1], variance[y0:y1, x0:x1], coverage[y0:y1, x0:x1] = c, v, n
    filled = _filled(centre)
    background = ndimage.minimum_filter(filled, size=background_box, mode="nearest")
    return Reference(centre, variance, coverage, background,
                     ndimage.spline_filter(filled, order=3, mode="nearest"))


def _filled(centre: np.ndarray) -> np.ndarray:
    """``centre`` with every uncovered pixel given its nearest covered one's value (0 if none)."""
    covered = np.isfinite(centre)
    if not covered.any():
        return np.zeros(centre.shape)
    if covered.all():
        return centre
    nearest = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
    return centre[tuple(nearest)]


def blot(reference: Reference, y: np.ndarray, x: np.ndarray):
    """The reference at output-grid positions ``(y, x)`` (e.g. a BCD's pixel centres).

    Returns
    -------
    centre : numpy.ndarray
        Cubic-spline value of the reference, MJy/sr.
    variance : numpy.ndarray
        Bilinear value of its ``variance``, (MJy/sr)^2.
    coverage : numpy.ndarray of int
        Coverage of the nearest output pixel (0 off the grid).
    signal : numpy.ndarray
        ``centre`` minus the bilinear value of the reference's ``background``, MJy/sr.
    """
    shape = reference.centre.shape
    coords = np.array([y.ravel(), x.ravel()], dtype=np.float64)
    on_grid = np.all(np.isfinite(coords), axis=0)
    coords = np.where(on_grid, coords, -10.0)
    centre = ndimage.map_coordinates(reference.coefficients, coords, order=3, mode="nearest",
                                     prefilter=False)
    variance = ndimage.map_coordinates(reference.variance, coords, order=1, mode="nearest")
    signal = centre - ndimage.map_coordinates(reference.background, coords, order=1, mode="nearest")
    iy = np.floor(coords[0] + 0.5).astype(np.int64)
    ix = np.floor(coords[1] + 0.5).astype(np.int64)
    inside = on_grid & (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
    coverage = np.zeros(iy.shape, np.int32)
    coverage[inside] = reference.coverage[iy[inside], ix[inside]]
    return (centre.reshape(y.shape), variance.reshape(y.shape), coverage.reshape(y.shape),
            signal.reshape(y.shape))


def _neighbour_median(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of the valid ones among each pixel's 8 neighbours (NaN if none)."""
    padded = np.pad(np.where(valid, image, np.nan), 1, constant_values=np.nan)
    ny, nx = image.shape
    shifts = [padded[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    stack = np.sort(np.stack(shifts), axis=0)
    return _sorted_median(stack, np.isfinite(stack).sum(axis=0))


def find_outliers(data: np.ndarray, unc: np.ndarray, valid: np.ndarray, centre: np.ndarray,
                  variance: np.ndarray, coverage: np.ndarray, signal: np.ndarray, *, k: float,
                  tolerance: float = SOURCE_TOLERANCE, min_coverage: int = 3,
                  radhit: bool = False) -> np.ndarray:
    """RMask bits of one BCD's pixels against the blotted reference.

    A pixel is an outlier where ``|x - centre| > k sqrt(sigma^2 + variance) +
    tolerance |signal|`` (see the module notes for the tests by coverage).

    Parameters
    ----------
    data, unc : numpy.ndarray
        The BCD (background offset subtracted) and its 1-sigma uncertainty, MJy/sr.
    valid : numpy.ndarray of bool
        Pixels that are used at all (not masked, finite).
    centre, variance, coverage, signal : numpy.ndarray
        :func:`blot` of the reference at the BCD's pixel centres.
    k : float
        Threshold, sigmas.
    tolerance : float
        Fraction of a source's brightness the reference may miss its pixels by.
    min_coverage : int
        Least coverage for the temporal (median) test.
    radhit : bool
        Also flag single-frame radiation hits where only this BCD covers the sky.

    Returns
    -------
    numpy.ndarray of uint8
        :data:`RMASK` bits (0: kept).
    """
    data = np.asarray(data, np.float64)
    var = np.asarray(unc, np.float64) ** 2
    flags = np.zeros(data.shape, np.uint8)
    allowed = tolerance * np.abs(signal)
    with np.errstate(invalid="ignore"):
        off = np.abs(data - centre) > k * np.sqrt(var + variance) + allowed
    flags[valid & (coverage >= min_coverage) & off] |= RMASK["TEMPORAL"]
    few = valid & (coverage < min_coverage) & (coverage >= 1)
    if not few.any():
        return flags
    spike = _spike_significance(data, var, valid)
    # two BCDs: the median is their mean, so x - (the other) = 2 (x - centre)
    with np.errstate(invalid="ignore"):
        above = 2.0 * (data - centre) > k * np.sqrt(2.0 * var) + allowed
    flags[few & (coverage == 2) & above & (spike > k)] |= RMASK["DUAL"]
    if radhit:
        flags[few & (coverage == 1) & (spike > k) & _compact(spike)] |= RMASK["RADHIT"]
    return flags


def _spike_significance(data: np.ndarray, var: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(x - median of its 8 neighbours) / its noise (the median's noise included)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (data - _neighbour_median(data, valid)) / np.sqrt(var * (1 + _MEDIAN_VARIANCE / 8))


def _compact(spike: np.ndarray, ratio: float = 0.25) -> np.ndarray:
    """Spikes whose 8 neighbours are no spikes themselves (under 3 sigma or ``ratio`` of it)."""
    padded = np.pad(np.nan_to_num(spike, nan=0.0), 1)
    ny, nx = spike.shape
    most = np.max([padded[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], axis=0)
    return most < np.maximum(3.0, ratio * spike)
