"""One BCD resampled onto its rectangle of the output grid, and a disk store of them.

Resampling is reproject's bilinear ``reproject_interp``: MJy/sr is a surface
brightness, so interpolated values keep their meaning and no pixel-area
factor is needed.  Each output value is ``sum_k w_k x_k`` over (at most) four
input pixels, so its variance is ``sum_k w_k^2 sigma_k^2``, not the
interpolated variance ``sum_k w_k sigma_k^2``.  The four neighbours of a
bilinear interpolation have the four different (row, column) parities, so
with ``P_ab`` the indicator of input pixels of parity ``(a, b)``,
``sum_ab interp(P_ab sigma^2) * interp(P_ab)`` is exactly ``sum_k w_k^2
sigma_k^2``.  All planes go through one call (reproject broadcasts a stack
over one WCS, so the SIP coordinate transform is done once per BCD).
Masked and NaN input pixels are left out by normalised interpolation: every
plane is multiplied by the valid-pixel indicator ``v`` and the result divided
by ``W = interp(v)``, the interpolation weight the valid neighbours carry
(the variance by ``W^2``); an output pixel is kept where ``W >= MIN_WEIGHT``,
i.e. within half a pixel of valid data.  (Propagating NaN instead would lose
every output pixel next to a bad one: the whole 160 um array, whose two rows
sit either side of a blank one.)

Cutouts are written once to a temporary folder (float32 ``.npy``) and read
back by the background matcher and both coadd passes: memory holds only one
or two cutouts at a time, whatever the number of BCDs.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData
from astropy.wcs import WCS
from reproject import reproject_interp

from .grid import Box

__all__ = ["Cutout", "resample_bcd", "CutoutStore"]


@dataclass(frozen=True)
class Cutout:
    """A BCD on its rectangle of the output grid.

    Attributes
    ----------
    box : Box
        Where the rectangle sits on the output grid.
    data : numpy.ndarray
        Surface brightness, MJy/sr (NaN where the BCD does not contribute).
    var : numpy.ndarray
        Variance of ``data`` (``sum w^2 sigma^2``), (MJy/sr)^2.
    var_smooth : numpy.ndarray
        Interpolated input variance (``sum w sigma^2``): the noise of one input pixel here.
    """

    box: Box
    data: np.ndarray
    var: np.ndarray
    var_smooth: np.ndarray


MIN_WEIGHT = 0.5   # interpolation weight of valid input pixels an output pixel needs


def _planes(ccd: CCDData) -> np.ndarray:
    """Stack, each plane times the valid-pixel indicator v: data, var, 4 parity-masked variances,
    4 parity indicators, and v itself."""
    data = np.asarray(ccd.data, dtype=np.float64)
    var = np.asarray(ccd.uncertainty.array, dtype=np.float64) ** 2
    bad = ~np.isfinite(data) | ~np.isfinite(var) | (var <= 0)
    if ccd.mask is not None:
        bad |= np.asarray(ccd.mask, dtype=bool)
    valid = ~bad
    yy, xx = np.indices(data.shape)
    parity = [((yy % 2) == a) & ((xx % 2) == b) for a in (0, 1) for b in (0, 1)]
    stack = np.empty((11,) + data.shape)
    stack[0], stack[1] = np.where(valid, data, 0.0), np.where(valid, var, 0.0)
    for k, p in enumerate(parity):
        stack[2 + k] = np.where(p & valid, var, 0.0)
        stack[6 + k] = p & valid
    stack[10] = valid
    return stack


def resample_bcd(ccd: CCDData, out_wcs: WCS, box: Box) -> Cutout:
    """Resample ``ccd`` (from ``load_bcd``) onto ``box`` of the grid ``out_wcs``."""
    cut_wcs = out_wcs[box.slices]
    planes, _ = reproject_interp((_planes(ccd), ccd.wcs), cut_wcs, shape_out=box.shape,
                                 order="bilinear", roundtrip_coords=False)
    weight = planes[10]
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(weight) & (weight >= MIN_WEIGHT)
        data = planes[0] / weight
        var = np.einsum("kyx,kyx->yx", planes[2:6], planes[6:10]) / weight ** 2
        var_smooth = planes[1] / weight
    good &= np.isfinite(data) & np.isfinite(var) & (var > 0)
    nan = np.float32(np.nan)
    return Cutout(box,
                  np.where(good, data, nan).astype(np.float32),
                  np.where(good, var, nan).astype(np.float32),
                  np.where(good, var_smooth, nan).astype(np.float32))


class CutoutStore:
    """Cutouts written to a temporary folder, read back on demand (a few cached).

    Use as a context manager; the folder is removed on exit.
    """

    def __init__(self, *, cache_size: int = 32):
        self._tmp = tempfile.TemporaryDirectory(prefix="mosaic_cutouts_")
        self._dir = Path(self._tmp.name)
        self.boxes: list[Box | None] = []
        self._get = lru_cache(maxsize=cache_size)(self._read)

    def __enter__(self) -> "CutoutStore":
        return self

    def __exit__(self, *exc) -> None:
        self._get.cache_clear()
        self._tmp.cleanup()

    def __len__(self) -> int:
        return len(self.boxes)

    def add(self, cutout: Cutout | None) -> int:
        """Store ``cutout`` (None: a BCD off the grid) and return its index."""
        index = len(self.boxes)
        self.boxes.append(None if cutout is None else cutout.box)
        if cutout is not None:
            np.save(self._dir / f"{index}.npy",
                    np.stack([cutout.data, cutout.var, cutout.var_smooth]))
        return index

    def get(self, index: int) -> Cutout | None:
        """The cutout stored at ``index`` (None if that BCD is off the grid)."""
        return self._get(index)

    def _read(self, index: int) -> Cutout | None:
        box = self.boxes[index]
        if box is None:
            return None
        data, var, var_smooth = np.load(self._dir / f"{index}.npy")
        return Cutout(box, data, var, var_smooth)
