"""The output grid of a mosaic and each BCD's place on it.

A BCD is first *inspected* from its header alone (:func:`inspect_bcd`): its
band (CHNLNUM), its array shape against the band's (``band_spec(band).shape``)
and a usable celestial WCS (finite sky positions along its edges, a
non-singular pixel scale).  :func:`mosaic_grid` then chooses one north-up TAN
grid covering every BCD (reproject's ``find_optimal_celestial_wcs``) with the
band's default pixel (2.45", 4", 8" at 24/70/160 um), and :func:`footprint_box`
gives the rectangle of that grid a BCD touches, so each BCD is resampled onto
a cutout rather than onto the whole grid.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from reproject.mosaicking import find_optimal_celestial_wcs

from calibration.instrument import band_spec

from ..io import InputError

__all__ = ["BcdInfo", "Box", "DEFAULT_PIXEL_ARCSEC", "inspect_bcd", "choose_band", "mosaic_grid",
           "grid_for", "footprint_box"]

DEFAULT_PIXEL_ARCSEC = {24: 2.45, 70: 4.0, 160: 8.0}
_BAND_OF_CHNLNUM = {1: 24, 2: 70, 3: 160}
_EDGE_SAMPLES = 11


@dataclass(frozen=True)
class BcdInfo:
    """What the header of one BCD says: its file, band, array shape and celestial WCS."""

    path: Path
    band: int
    shape: tuple[int, int]
    wcs: WCS


@dataclass(frozen=True)
class Box:
    """A rectangle of the output grid, ``[y0:y1, x0:x1]`` (end exclusive)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """The rectangle as a pair of slices."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """(NY, NX) of the rectangle."""
        return self.y1 - self.y0, self.x1 - self.x0


def inspect_bcd(path: str | os.PathLike) -> BcdInfo:
    """Band, shape and celestial WCS of the BCD at ``path``, from its header.

    Raises
    ------
    reprocess.io.InputError
        Naming the file, if its CHNLNUM is not a MIPS channel, its shape is not
        the band's array shape or its WCS is not a usable celestial one.
    """
    path = Path(path)
    try:
        header = fits.getheader(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable FITS header ({exc})") from None
    band = _band_of(path, header)
    shape = (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0)))
    want = tuple(band_spec(band).shape)
    if int(header.get("NAXIS", 0)) != 2 or shape != want:
        raise InputError(path, f"image shape {shape} disagrees with the {band} um array {want}")
    return BcdInfo(path, band, shape, _celestial_wcs(path, header, shape))


def _band_of(path: Path, header: fits.Header) -> int:
    try:
        return _BAND_OF_CHNLNUM[int(header["CHNLNUM"])]
    except (KeyError, ValueError, TypeError):
        raise InputError(path, f"CHNLNUM={header.get('CHNLNUM')!r} is not a MIPS channel (1, 2, 3)") \
            from None


def _celestial_wcs(path: Path, header: fits.Header, shape: tuple[int, int]) -> WCS:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
            ok = wcs.has_celestial and wcs.naxis == 2 and abs(_header_cd_det(header)) > 0
            if ok:
                world = np.array(wcs.all_pix2world(*_edge_pixels(shape), 0))
                scales = proj_plane_pixel_scales(wcs)
                ok = bool(np.all(np.isfinite(world)) and np.all(np.isfinite(scales))
                          and np.all(scales > 0)
                          and abs(np.linalg.det(wcs.pixel_scale_matrix)) > 0)
    except Exception as exc:  # astropy raises many types for broken WCS cards
        text = " ".join(str(exc).split())[:120].encode("ascii", "replace").decode()
        raise InputError(path, f"unusable WCS ({type(exc).__name__}: {text})") from None
    if not ok:
        raise InputError(path, "no usable celestial WCS (non-celestial axes, singular or "
                               "non-finite pixel scale, or edges off the sky)")
    return wcs


def _header_cd_det(header: fits.Header) -> float:
    """Determinant of the linear pixel-to-sky matrix as the header's cards give it (CD, else PC x
    CDELT), read before astropy's 'cdfix', which turns an all-zero CD into 1 deg pixels."""
    if any(k in header for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")):
        cd = [[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)]
        return float(np.linalg.det(cd))
    pc = [[float(header.get(f"PC{i}_{j}", float(i == j))) for j in (1, 2)] for i in (1, 2)]
    return float(np.linalg.det(pc)) * float(header.get("CDELT1", 1.0)) * float(header.get("CDELT2", 1.0))


def _edge_pixels(shape: tuple[int, int], n: int = _EDGE_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) samples along the outer edges of an array of ``shape``."""
    ny, nx = shape
    xs = np.linspace(-0.5, nx - 0.5, n)
    ys = np.linspace(-0.5, ny - 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, -0.5), np.full(n, nx - 0.5)])
    y = np.concatenate([np.full(n, -0.5), np.full(n, ny - 0.5), ys, ys])
    return x, y


def choose_band(infos: list[BcdInfo], band: int | None = None) -> int:
    """``band`` if given, else the band of most BCDs (ties: the shortest wavelength)."""
    if band is not None:
        return int(band_spec(band).band)
    counts = Counter(info.band for info in infos)
    if not counts:
        raise ValueError("no BCDs to mosaic")
    return max(sorted(counts), key=lambda b: counts[b])


def grid_for(infos: list[BcdInfo], *, pixel_arcsec: float) -> tuple[WCS, tuple[int, int]]:
    """North-up TAN grid of ``pixel_arcsec`` pixels covering every BCD in ``infos``."""
    inputs = [(info.shape, info.wcs) for info in infos]
    wcs, shape = find_optimal_celestial_wcs(inputs, frame="icrs", projection="TAN",
                                            auto_rotate=False, resolution=pixel_arcsec * u.arcsec)
    return wcs, (int(shape[0]), int(shape[1]))


def mosaic_grid(bcd_paths: list[str | os.PathLike], *, band: int | None = None,
                pixel_arcsec: float | None = None) -> tuple[WCS, tuple[int, int]]:
    """The output grid (WCS, (NY, NX)) covering the BCDs at ``bcd_paths``.

    Parameters
    ----------
    bcd_paths : list of path-like
        ``*_bcd.fits`` files (only their headers are read).
    band : int, optional
        24, 70 or 160; default: the band of most BCDs.
    pixel_arcsec : float, optional
        Output pixel size; default 2.45", 4" or 8" for 24, 70, 160 um.

    Returns
    -------
    wcs : astropy.wcs.WCS
        North-up TAN projection (ICRS).
    shape : tuple of int
        (NY, NX) of the grid.
    """
    infos = [inspect_bcd(p) for p in bcd_paths]
    band = choose_band(infos, band)
    pix = DEFAULT_PIXEL_ARCSEC[band] if pixel_arcsec is None else float(pixel_arcsec)
    return grid_for([i for i in infos if i.band == band], pixel_arcsec=pix)


def footprint_box(info: BcdInfo, out_wcs: WCS, out_shape: tuple[int, int], *,
                  margin: int = 1) -> Box | None:
    """The rectangle of the output grid that the BCD's edges enclose (None if off the grid).

    The edges are sampled (not only the corners), so SIP-curved edges are not clipped;
    ``margin`` output pixels are added on each side.
    """
    ra, dec = info.wcs.all_pix2world(*_edge_pixels(info.shape), 0)
    x, y = out_wcs.all_world2pix(ra, dec, 0)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    x0 = max(int(np.floor(x.min() + 0.5)) - margin, 0)
    x1 = min(int(np.floor(x.max() + 0.5)) + margin + 1, out_shape[1])
    y0 = max(int(np.floor(y.min() + 0.5)) - margin, 0)
    y1 = min(int(np.floor(y.max() + 0.5)) + margin + 1, out_shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(y0, y1, x0, x1)
