"""One BCD resampled onto its rectangle of the output grid, and a disk store of them.

Geometry once per BCD.  Where every output pixel of the BCD's rectangle falls
on the BCD (:class:`PixelMap`, through the BCD's SIP distortion) is the
expensive part (the inverse SIP is iterative); it is computed once, stored,
and every later interpolation of that BCD -- the cutout the background matcher
reads, the detection image of the outlier reference, and the final resampling
with the outliers masked -- reuses it.  Coordinates follow reproject's
``reproject_interp``: pixel centres at integers, points in the outer half of a
border pixel moved onto its centre, points further out not covered.

Bilinear resampling.  MJy/sr is a surface brightness, so interpolated values
keep their meaning and no pixel-area factor is needed.  Each output value is
``sum_k w_k x_k`` over the (at most) four input pixels around it, so its
variance is ``sum_k w_k^2 sigma_k^2`` (interpolating ``sigma^2`` instead would
overstate it up to 4x between input pixel centres).  Masked and NaN input
pixels are left out by normalised interpolation: with ``v`` the valid-pixel
indicator, the value is ``sum w v x / W`` with ``W = sum w v``, its variance
``sum w^2 v sigma^2 / W^2``; an output pixel is kept where ``W >= MIN_WEIGHT``,
i.e. within half a pixel of valid data.  (Propagating NaN instead would lose
every output pixel next to a bad one: the whole 160 um array, whose two rows
sit either side of a blank one.)  The weights are computed once per BCD and
applied to each plane as four gathers, which is the same arithmetic as
``scipy.ndimage.map_coordinates(order=1)``.  Because the resampling is linear
in the BCD's pixels, an outlier masked in the BCD is removed from every output
pixel it touched -- the BCD-frame rejection of :mod:`.outliers`.

Detection image.  Bilinear interpolation of a point source sampled at 2.5"
(24 um, PSF FWHM 6") is wrong by tens of percent between pixel centres, and
differently in every BCD (each has its own sub-pixel phase), which hides
cosmic rays on sources from any comparison across BCDs.  The outlier
reference is therefore built from a cubic-spline resampling of each BCD
(``scipy.ndimage.map_coordinates(order=3)``, an interpolator of the fourth
order), whose phase errors on the same sources are a few times smaller (the
module notes of :mod:`.outliers` have the figures).  Where the spline's 4x4
support leaves the array or meets a masked pixel the bilinear value is used.

Cutouts are written once to a temporary folder (float32 ``.npy``) and read back
(whole, or memory-mapped slices) by the background matcher, the outlier
reference and the coadd: memory holds one or two cutouts at a time, whatever
the number of BCDs; the disk holds 5 planes per BCD.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from scipy import ndimage

from .grid import Box

__all__ = ["Cutout", "PixelMap", "pixel_map", "resample", "detection_image", "CutoutStore",
           "MIN_WEIGHT"]

MIN_WEIGHT = 0.5   # interpolation weight of valid input pixels an output pixel needs


@dataclass(frozen=True)
class PixelMap:
    """Where each output pixel of ``box`` falls on a BCD (0-based pixel coordinates).

    Attributes
    ----------
    box : Box
        The rectangle of the output grid.
    y, x : numpy.ndarray
        float32 (NY, NX) of the box: the BCD row and column of each output pixel
        centre, moved onto the border pixel's centre within its outer half; NaN
        off the BCD.
    """

    box: Box
    y: np.ndarray
    x: np.ndarray


@dataclass(frozen=True)
class Cutout:
    """A BCD on its rectangle of the output grid.

    Attributes
    ----------
    box : Box
        Where the rectangle sits on the output grid.
    data : numpy.ndarray
        Surface brightness, MJy/sr (NaN where the BCD does not contribute).
    var : numpy.ndarray or None
        Variance of ``data`` (``sum w^2 sigma^2``), (MJy/sr)^2 (not stored).
    var_smooth : numpy.ndarray
        Interpolated input variance (``sum w sigma^2``): the noise of one input pixel here.
    detection : numpy.ndarray or None
        Cubic-spline resampling (bilinear where the spline's support is not valid), MJy/sr.
    pixmap : PixelMap or None
        The geometry the cutout was made with.
    """

    box: Box
    data: np.ndarray
    var: np.ndarray | None
    var_smooth: np.ndarray
    detection: np.ndarray | None = None
    pixmap: PixelMap | None = None


def pixel_map(bcd_wcs: WCS, out_wcs: WCS, box: Box, bcd_shape: tuple[int, int]) -> PixelMap:
    """Positions on the BCD (``bcd_wcs``, array ``bcd_shape``) of the output pixels of ``box``."""
    ny, nx = box.shape
    yo, xo = np.indices((ny, nx), dtype=float)
    x, y = pixel_to_pixel(out_wcs[box.slices], bcd_wcs, xo.ravel(), yo.ravel())
    coords = []
    for c, n in ((y, bcd_shape[0]), (x, bcd_shape[1])):
        c = np.where((c < 0) & (c >= -0.5), 0.0, c)
        c = np.where((c > n - 1) & (c <= n - 0.5), n - 1.0, c)
        c = np.where((c >= 0) & (c <= n - 1), c, np.nan)
        coords.append(c.reshape(ny, nx).astype(np.float32))
    return PixelMap(box, *coords)


def _bilinear(pixmap: PixelMap, shape: tuple[int, int]):
    """Flat indices (4, M) and weights (4, M) of the four input pixels of each covered output
    pixel, and the covered output pixels (M of them) as a boolean map."""
    inside = np.isfinite(pixmap.y) & np.isfinite(pixmap.x)
    y = pixmap.y[inside].astype(np.float64)
    x = pixmap.x[inside].astype(np.float64)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    y1 = np.minimum(y0 + 1, shape[0] - 1)
    x1 = np.minimum(x0 + 1, shape[1] - 1)
    idx = np.stack([y0 * shape[1] + x0, y0 * shape[1] + x1, y1 * shape[1] + x0, y1 * shape[1] + x1])
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    return idx, w, inside


def _valid(ccd: CCDData) -> np.ndarray:
    data = np.asarray(ccd.data)
    unc = np.asarray(ccd.uncertainty.array)
    valid = np.isfinite(data) & np.isfinite(unc) & (unc > 0)
    if ccd.mask is not None:
        valid &= ~np.asarray(ccd.mask, dtype=bool)
    return valid


def resample(ccd: CCDData, pixmap: PixelMap, *, drop: np.ndarray | None = None) -> Cutout:
    """Normalised bilinear resampling of ``ccd`` (from ``load_bcd``; its mask is left out) onto
    the rectangle of ``pixmap``: data, variance ``sum w^2 sigma^2 / W^2`` and ``var_smooth``.

    ``drop`` (bool, the BCD's shape): pixels whose every output pixel is left out (NaN), not
    only the pixel itself -- no neighbour's value stands in for it.
    """
    valid = _valid(ccd)
    data = np.where(valid, np.asarray(ccd.data, np.float64), 0.0).ravel()
    var = np.where(valid, np.asarray(ccd.uncertainty.array, np.float64) ** 2, 0.0).ravel()
    idx, w, inside = _bilinear(pixmap, valid.shape)
    wv = w * valid.ravel()[idx]
    weight = wv.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        planes = [np.einsum("km,km->m", wv, data[idx]) / weight,
                  np.einsum("km,km->m", wv * wv, var[idx]) / weight ** 2,
                  np.einsum("km,km->m", wv, var[idx]) / weight]
    good = (weight >= MIN_WEIGHT) & np.isfinite(planes[0]) & np.isfinite(planes[1]) & (planes[1] > 0)
    if drop is not None and drop.any():
        good &= ~np.any((w > 0) & np.asarray(drop, bool).ravel()[idx], axis=0)
    out = []
    for plane in planes:
        full = np.full(pixmap.y.shape, np.nan, np.float32)
        full[inside] = np.where(good, plane, np.nan)
        out.append(full)
    return Cutout(pixmap.box, out[0], out[1], out[2], pixmap=pixmap)


def _spline_support_ok(valid: np.ndarray, pixmap: PixelMap, inside: np.ndarray) -> np.ndarray:
    """Covered output pixels whose cubic-spline support (4x4 input pixels) lies on valid pixels."""
    ny, nx = valid.shape
    # bad[i, j]: any invalid pixel in rows i-1..i+2, columns j-1..j+2 (the support of floor = (i, j))
    bad = ndimage.maximum_filter(~valid, size=4, origin=-1, mode="constant", cval=True)
    y0 = np.floor(pixmap.y[inside]).astype(np.int64)
    x0 = np.floor(pixmap.x[inside]).astype(np.int64)
    ok = (y0 >= 1) & (y0 <= ny - 3) & (x0 >= 1) & (x0 <= nx - 3)
    ok[ok] = ~bad[y0[ok], x0[ok]]
    return ok


def detection_image(ccd: CCDData, pixmap: PixelMap, bilinear: np.ndarray) -> np.ndarray:
    """Cubic-spline resampling of ``ccd`` onto the rectangle of ``pixmap`` (float32, MJy/sr),
    ``bilinear`` (the normalised bilinear cutout) where the spline's support is not all valid."""
    valid = _valid(ccd)
    data = np.asarray(ccd.data, np.float64)
    if not valid.any():
        return bilinear.copy()
    if not valid.all():      # the spline is global: fill invalid pixels with their nearest valid one
        nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
        data = data[tuple(nearest)]
    inside = np.isfinite(pixmap.y) & np.isfinite(pixmap.x)
    ok = _spline_support_ok(valid, pixmap, inside)
    values = ndimage.map_coordinates(data, [pixmap.y[inside][ok], pixmap.x[inside][ok]], order=3,
                                     mode="nearest")
    out = bilinear.copy()
    flat = out[inside]
    flat[ok] = np.where(np.isfinite(flat[ok]), values, np.nan)
    out[inside] = flat
    return out.astype(np.float32)


# plane order of a stored cutout
_PLANES = ("data", "var_smooth", "detection", "y", "x")


class CutoutStore:
    """Cutouts written to a temporary folder, read back on demand (a few cached).

    Use as a context manager; the folder is removed on exit.
    """

    def __init__(self, *, cache_size: int = 32):
        self._tmp = tempfile.TemporaryDirectory(prefix="mosaic_cutouts_")
        self._dir = Path(self._tmp.name)
        self.boxes: list[Box | None] = []
        self._get = lru_cache(maxsize=cache_size)(self._read)
        self._map = lru_cache(maxsize=128)(self._memory_map)

    def __enter__(self) -> "CutoutStore":
        return self

    def __exit__(self, *exc) -> None:
        self._get.cache_clear()
        self._map.cache_clear()
        self._tmp.cleanup()

    def __len__(self) -> int:
        return len(self.boxes)

    def add(self, cutout: Cutout | None) -> int:
        """Store ``cutout`` (with its detection image and pixel map; None: a BCD off the grid)
        and return its index."""
        index = len(self.boxes)
        self.boxes.append(None if cutout is None else cutout.box)
        if cutout is not None:
            np.save(self._dir / f"{index}.npy",
                    np.stack([cutout.data, cutout.var_smooth, cutout.detection,
                              cutout.pixmap.y, cutout.pixmap.x]).astype(np.float32))
        return index

    def get(self, index: int) -> Cutout | None:
        """The cutout stored at ``index`` (None if that BCD is off the grid; ``var`` is None)."""
        return self._get(index)

    def planes(self, index: int, names: tuple[str, ...], slices: tuple[slice, slice]) -> np.ndarray:
        """Planes ``names`` of cutout ``index`` over ``slices`` of its box, read through a memory map
        (the last 128 maps are kept open: a tile's neighbour reads the same cutouts)."""
        stored = self._map(index)
        return np.stack([stored[_PLANES.index(n)][slices] for n in names])

    def _memory_map(self, index: int) -> np.ndarray:
        return np.load(self._dir / f"{index}.npy", mmap_mode="r")

    def _read(self, index: int) -> Cutout | None:
        box = self.boxes[index]
        if box is None:
            return None
        data, var_smooth, detection, y, x = np.load(self._dir / f"{index}.npy")
        return Cutout(box, data, None, var_smooth, detection, PixelMap(box, y, x))
