"""Joint PRF photometry over the individual BCDs: one flux per source from every BCD that saw it.

APEX's multiframe mode and The Tractor's forced photometry fit a point source where the data are
least processed: on each BCD, through that BCD's own distortion, instead of on a mosaic whose
resampling has smoothed the PSF, correlated the noise and mixed BCDs of different backgrounds.
photutils fits one image at a time (its issue #997), so this is written here.

The model
---------
A BCD holds surface brightness (MJy/sr): a flat-fielded pixel reads the sky averaged over its own
footprint on the sky, whatever that footprint's size.  A point source of flux density ``F`` adds to
pixel ``i`` of BCD ``k``::

    m_i = F * P_jk(y_i - y_jk, x_i - x_jk) / Omega_jk        (+ b_gk, the local background)

* ``(x_jk, y_jk)``: the source's pixel position in BCD ``k``, from its sky position through the full
  WCS (TAN and SIP, ``all_world2pix``).
* ``P_jk``: the PRF, the fraction of the source's flux falling on the pixel.  The PSF (STinyTim,
  :mod:`calibration.psf`) is fixed in angle on the sky and oriented with the detector; near the
  source the SIP-distorted pixel grid is, to first order, an affine map ``J_jk`` (arcsec per pixel,
  the Jacobian of pixel -> sky at the source, by central differences of ``all_pix2world``
  projected on the tangent plane there).  A pixel is then a rectangle of ``s_x = |J e_x|`` by
  ``s_y = |J e_y|`` arcsec (the local pixel size along each detector axis), and ``P`` integrates the
  PSF over it (the integral image of :class:`calibration.psf.PRF`, evaluated with the local sizes
  instead of the nominal one).  The shear of ``J`` (a few 1e-4 for MIPS) is ignored: it changes
  ``P`` at second order.
* ``Omega_jk = |det J_jk|``: the solid angle of a pixel at the source, which turns the flux on the
  pixel into its mean surface brightness.  One ``J`` for the whole footprint keeps the model exact
  to first order in the distortion's gradient: a pixel's PSF fraction grows with its own area, so
  ``F P / Omega`` is the PSF's surface brightness at the pixel whichever pixel area one uses as long
  as it is the same one in ``P`` and ``Omega``; mixing the pixel's own area in ``Omega`` with the
  source's in ``P`` would tilt the model by the area gradient (0.1 % per pixel at 70 um).
* MJy/sr per uJy/sr is 1e-12, so ``F`` comes out in uJy.

The nominal pixel (``BandSpec.pixel_sr``) and the PRF at the nominal scale are right only at the
reference pixel: the distortion changes the pixel's solid angle by up to ~1 % across the 70 um
array (``calibration.geometry.SIP_COEFFS``) and by ~10 % across the real IRS peak-up header's.

Why one sparse linear solve
---------------------------
For fixed positions the model is linear in the fluxes and backgrounds, and a source couples only
to the few pixels of the BCDs that saw it: the weighted least-squares problem over all pixels of
all BCDs (weights ``1 / unc^2``, masked pixels out) has a sparse design matrix (scipy.sparse).  The
backgrounds are eliminated exactly: every used pixel belongs to one background parameter, so their
block of the normal equations is diagonal and the Schur complement ``S = A'WA - A'WB (B'WB)^-1 B'WA``
leaves a system in the fluxes alone, whose inverse is the flux covariance marginalised over the
backgrounds.  ``S`` falls apart into connected components (sources that share pixels through their
PRFs, in any BCD); each is solved on its own: densely up to ``DENSE_MAX`` unknowns (Cholesky;
when a pivot vanishes, an eigen-decomposition finds the combinations the data cannot constrain,
such as coincident sources, whose fluxes are flagged rather than guessed), by sparse LU beyond.  No iteration, no subtraction of neighbours' current estimates (APEX's scheme): blended
sources are fitted simultaneously by construction.

Grouping, backgrounds and outliers
----------------------------------
Sources closer than ``group_fwhm`` FWHM on the sky (friends of friends) form a group.  A group has
one constant background per BCD (``background="bcd"``; ``"group"`` shares one over all BCDs, for
BCDs whose offsets are already matched): each used pixel (within ``fit_radius_fwhm`` FWHM of a
source) is given to the group of its nearest source.  Every source's PRF is modelled on every used
pixel its PSF image reaches, so a bright neighbour outside the group is still in the model of a
faint source's pixels; groups only decide which pixels share a background and which sources are
reported as blended.  The default radius of 3 FWHM holds 90-94 % of the PRF: a per-BCD
background fitted on a smaller disc costs precision (~20 % in sigma at 2 FWHM, ~8 % at 3, against
a known background), a larger one is more exposed to background structure and unknown neighbours.
Pixels further than ``reject_sigma`` from the model are left out and the fit repeated until the
set is stable (the 24 um BCDs carry unflagged cosmic rays, ~0.2 % of pixels beyond 5 sigma, which
a linear fit cannot survive); the tolerance adds ``MODEL_TOLERANCE`` of the source model in
quadrature so that a bright core's PRF mismatch is not clipped.  With ``refine_positions`` a few
Gauss-Newton iterations fit sky offsets (east, north) shared by all BCDs, for the sources detected
at ``refine_min_snr``; the fluxes are linear and solved for anew in every step (not linearised),
and the reported flux errors are marginalised over the positions.

What it costs
-------------
Per source and BCD: one SIP projection and four for the Jacobian, and the PRF on the used pixels
its PSF image reaches (one bilinear look-up of the integral image per pixel corner, shared by
neighbouring pixels).  The design has one entry per (pixel, source reaching it): the whole PSF
image, so the far wings of the 70 um PSF (its image is 59 pixels wide) reach every used pixel of
a BCD.  The normal equations have one entry per pair of sources sharing a pixel; the solve is
``O(n^3)`` per component of ``n`` coupled sources.  BCDs are read one at a time and only their
used pixels kept.  Measured here (2 shared cores, single-threaded BLAS): 130 sources on 29
24 um BCDs (1.9e6 design entries) ~5 s forced, ~1 min with position refinement (each
Gauss-Newton step rebuilds the design with its position columns, ~5 s).  Multithreaded OpenBLAS
on a loaded 2-core machine makes the small dense solves ~10x slower: set OPENBLAS_NUM_THREADS=1.

Flags (column ``flags``, bits of ``FLAGS``)
-------------------------------------------
``OFF_IMAGE`` no used pixel in any BCD: flux NaN.  ``BLENDED`` the group has other sources.
``MASKED_CORE`` the pixel under the source's centre is unusable on some BCD (the fit uses the
others).  ``PARTIAL`` the fit
region runs off a BCD's edge.  ``NOT_CONVERGED`` position refinement did not converge.
``DEGENERATE`` the flux cannot be separated from a neighbour or the background: flux NaN.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import CCDData
from astropy.table import QTable, Table
from astropy.wcs import WCS
from scipy import linalg, sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as splinalg
from scipy.spatial import cKDTree

from calibration.instrument import ARCSEC2_PER_SR, band_spec
from calibration.psf import CALIBRATOR_TEMPERATURE_K, PRF, PSF_TEMPERATURES_K, load_prf

from ..bcd import load_bcd
from ..io import InputError

__all__ = [
    "DENSE_MAX",
    "FLAGS",
    "FWHM_ARCSEC",
    "LocalPRF",
    "PixelGeometry",
    "joint_photometry",
    "local_pixel_geometry",
]

# PSF FWHM per band, arcsec: 24 um measured [HB 4.3.4 /50]; 70 and 160 um pre-launch model [CNT]
FWHM_ARCSEC = {24: 5.9, 70: 18.9, 160: 43.2}
FLAGS = {"OFF_IMAGE": 1, "BLENDED": 2, "MASKED_CORE": 4, "PARTIAL": 8, "NOT_CONVERGED": 16,
         "DEGENERATE": 32}
DENSE_MAX = 2000              # unknowns of a component solved densely (Cholesky); sparse LU beyond
MJYSR_PER_UJY_SR = 1e-12      # 1 uJy / 1 sr in MJy/sr
_RAD_ARCSEC = 180.0 / np.pi * 3600.0
_JACOBIAN_STEP_PIX = 0.5      # central differences: exact for quadratic SIP terms
_MAX_STEP_PIX = 0.3           # largest position change per Gauss-Newton step, pixels
_CONVERGED_PIX = 1e-3         # a refinement step below this (pixels) has converged
_CLIP_ROUNDS = 5              # outlier rejection rounds at most
MODEL_TOLERANCE = 0.05        # fraction of the source model counted as noise when judging outliers
_DEGENERATE = 1e-9            # relative eigenvalue below which a combination of fluxes is unconstrained


# ----------------------------------------------------------------------------- geometry

def _tangent(ra0, dec0, ra, dec):
    """Gnomonic offsets (east, north) of (ra, dec) about (ra0, dec0), arcsec (all in deg)."""
    a0, d0, a, d = (np.deg2rad(v) for v in (ra0, dec0, ra, dec))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return xi * _RAD_ARCSEC, eta * _RAD_ARCSEC


def _untangent(ra0, dec0, xi_arcsec, eta_arcsec):
    """Inverse of :func:`_tangent`: (ra, dec) in deg of the offsets (east, north) in arcsec."""
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    xi, eta = np.asarray(xi_arcsec) / _RAD_ARCSEC, np.asarray(eta_arcsec) / _RAD_ARCSEC
    denom = np.cos(d0) - eta * np.sin(d0)
    a = a0 + np.arctan2(xi, denom)
    d = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return np.rad2deg(a) % 360.0, np.rad2deg(d)


@dataclass
class PixelGeometry:
    """Where sources land on one BCD and the local pixel there (arrays, one entry per source)."""

    x: np.ndarray             # pixel position (0-based, SIP included)
    y: np.ndarray
    sx_arcsec: np.ndarray     # local pixel size along the detector's x and y axes, arcsec
    sy_arcsec: np.ndarray
    omega_sr: np.ndarray      # local pixel solid angle, sr
    inv_jacobian: np.ndarray  # (n, 2, 2): pixel offsets (x, y) per sky offset (east, north) arcsec


def local_pixel_geometry(wcs: WCS, ra_deg, dec_deg) -> PixelGeometry:
    """Pixel positions of sky positions on a BCD and the local pixel size and solid angle there.

    The Jacobian ``J`` of pixel -> sky (tangent-plane arcsec per pixel) is taken by central
    differences of ``wcs.all_pix2world`` (TAN and SIP) at the source's pixel position; the pixel
    sizes are its column norms and the solid angle ``|det J|``.
    """
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=float))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=float))
    x, y = wcs.all_world2pix(ra, dec, 0, tolerance=1e-8, quiet=True)
    h = _JACOBIAN_STEP_PIX
    px = np.concatenate([x + h, x - h, x, x])
    py = np.concatenate([y, y, y + h, y - h])
    a, d = wcs.all_pix2world(px, py, 0)
    xi, eta = _tangent(np.tile(ra, 4), np.tile(dec, 4), a, d)
    n = ra.size
    jac = np.empty((n, 2, 2))
    jac[:, 0, 0] = (xi[:n] - xi[n:2 * n]) / (2 * h)          # d(east)/dx
    jac[:, 1, 0] = (eta[:n] - eta[n:2 * n]) / (2 * h)        # d(north)/dx
    jac[:, 0, 1] = (xi[2 * n:3 * n] - xi[3 * n:]) / (2 * h)  # d(east)/dy
    jac[:, 1, 1] = (eta[2 * n:3 * n] - eta[3 * n:]) / (2 * h)
    det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
    inv = np.empty_like(jac)
    inv[:, 0, 0], inv[:, 1, 1] = jac[:, 1, 1] / det, jac[:, 0, 0] / det
    inv[:, 0, 1], inv[:, 1, 0] = -jac[:, 0, 1] / det, -jac[:, 1, 0] / det
    return PixelGeometry(x=np.asarray(x, float), y=np.asarray(y, float),
                         sx_arcsec=np.hypot(jac[:, 0, 0], jac[:, 1, 0]),
                         sy_arcsec=np.hypot(jac[:, 0, 1], jac[:, 1, 1]),
                         omega_sr=np.abs(det) / ARCSEC2_PER_SR, inv_jacobian=inv)


# ----------------------------------------------------------------------------- the PRF at a local scale

class LocalPRF:
    """A :class:`calibration.psf.PRF` evaluated for pixels of any size along each detector axis.

    Parameters
    ----------
    prf : PRF
        Built for square pixels of ``base_arcsec``.
    base_arcsec : float
        The pixel size ``prf`` was built for, arcsec.
    """

    def __init__(self, prf: PRF, base_arcsec: float):
        self.prf = prf
        self.base_arcsec = float(base_arcsec)

    @property
    def reach_arcsec(self) -> float:
        """Largest distance along a detector axis from the PSF's centre to its image's edge, arcsec:
        a pixel whose centre is further than this plus half a pixel along either axis gets nothing."""
        ny, nx = (k - 1 for k in self.prf._integral.shape)
        cy, cx = self.prf.center
        return max(cy, ny - cy, cx, nx - cx) * self.base_arcsec / self.prf.ratio

    def __call__(self, dy, dx, sy_arcsec, sx_arcsec) -> np.ndarray:
        """Flux fraction in pixels of ``sy`` x ``sx`` arcsec centred (dy, dx) pixels from the source."""
        r = self.prf.ratio
        ry = r * np.asarray(sy_arcsec) / self.base_arcsec      # PSF samples per pixel along y
        rx = r * np.asarray(sx_arcsec) / self.base_arcsec
        y = self.prf.center[0] + np.asarray(dy) * ry
        x = self.prf.center[1] + np.asarray(dx) * rx
        hy, hx = 0.5 * ry, 0.5 * rx
        c = self.prf._cumulative     # the integral image (calibration.psf); no public accessor yet
        return c(y + hy, x + hx) - c(y - hy, x + hx) - c(y + hy, x - hx) + c(y - hy, x - hx)

    def box(self, y: float, x: float, sy_arcsec: float, sx_arcsec: float, box, *,
            gradient: bool = False):
        """The flux fractions of the pixels of ``box`` (row and column slices) for a source at pixel
        position (y, x) and pixels of ``sy`` x ``sx`` arcsec: the same numbers as ``__call__``,
        from one interpolation of the integral image per pixel corner instead of four per pixel
        (adjacent pixels share their edges).  With ``gradient`` also their derivatives by the
        source's y and x (per pixel), exact for the bilinear interpolation, from the same look-ups.
        """
        r = self.prf.ratio
        ry, rx = r * sy_arcsec / self.base_arcsec, r * sx_arcsec / self.base_arcsec
        edges_y = self.prf.center[0] + (np.arange(box[0].start, box[0].stop + 1) - 0.5 - y) * ry
        edges_x = self.prf.center[1] + (np.arange(box[1].start, box[1].stop + 1) - 0.5 - x) * rx
        grids = _bilinear_grid(self.prf._integral, edges_y, edges_x, gradient=gradient)
        if not gradient:
            return np.diff(np.diff(grids, axis=0), axis=1)
        value, d_row, d_col = (np.diff(np.diff(g, axis=0), axis=1) for g in grids)
        return value, -ry * d_row, -rx * d_col


def _bilinear_grid(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, gradient: bool = False):
    """``image`` interpolated bilinearly at every (row, column) pair, coordinates clamped to the
    image (as ``PRF._cumulative``: ``map_coordinates`` of order 1, mode 'nearest'); with
    ``gradient`` also its derivatives along rows and columns (0 where clamped)."""
    ny, nx = image.shape
    rc = np.clip(rows, 0, ny - 1)
    cc = np.clip(cols, 0, nx - 1)
    i0 = np.minimum(np.floor(rc).astype(int), ny - 2)[:, None]
    j0 = np.minimum(np.floor(cc).astype(int), nx - 2)[None, :]
    ti, tj = rc[:, None] - i0, cc[None, :] - j0
    c00, c01 = image[i0, j0], image[i0, j0 + 1]
    c10, c11 = image[i0 + 1, j0], image[i0 + 1, j0 + 1]
    value = (c00 * (1 - tj) + c01 * tj) * (1 - ti) + (c10 * (1 - tj) + c11 * tj) * ti
    if not gradient:
        return value
    inside_rows = ((rows >= 0) & (rows <= ny - 1))[:, None]
    inside_cols = ((cols >= 0) & (cols <= nx - 1))[None, :]
    d_row = ((c10 - c00) * (1 - tj) + (c11 - c01) * tj) * inside_rows
    d_col = ((c01 - c00) * (1 - ti) + (c11 - c10) * ti) * inside_cols
    return value, d_row, d_col


def _prfs(band: int, temperatures: np.ndarray, psf) -> list[LocalPRF]:
    """One LocalPRF per source (shared between sources of the same PSF)."""
    if psf is not None:
        image, scale = psf
        one = LocalPRF(PRF(np.asarray(image, float), psf_scale_arcsec=float(scale),
                           pixel_arcsec=float(scale)), float(scale))
        return [one] * len(temperatures)
    base = band_spec(band).pixel_arcsec
    cache: dict[float, LocalPRF] = {}
    out = []
    for t in temperatures:
        # the shipped PSF nearest in log T (as load_prf picks it); 24 um has one PSF for all
        key = CALIBRATOR_TEMPERATURE_K[24] if band == 24 else min(
            PSF_TEMPERATURES_K, key=lambda tk: abs(np.log(tk) - np.log(max(t, 1.0))))
        if key not in cache:
            cache[key] = LocalPRF(load_prf(band, float(key), base), base)
        out.append(cache[key])
    return out


# ----------------------------------------------------------------------------- inputs

def _positions(positions) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in deg of a SkyCoord, a table with ``ra``/``dec`` columns or a pair of arrays."""
    if isinstance(positions, SkyCoord):
        icrs = positions.icrs
        return np.atleast_1d(icrs.ra.deg).astype(float), np.atleast_1d(icrs.dec.deg).astype(float)
    if isinstance(positions, Table):
        ra, dec = positions["ra"], positions["dec"]
    else:
        ra, dec = positions
    ra, dec = (np.atleast_1d(_degrees(v)) for v in (ra, dec))
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"positions: ra and dec must be 1-d arrays of one length, got {ra.shape} "
                         f"and {dec.shape}")
    if not (np.all(np.isfinite(ra)) and np.all(np.abs(dec) <= 90)):
        raise ValueError("positions: ra must be finite and dec within [-90, 90] deg")
    return ra, dec


def _degrees(values) -> np.ndarray:
    """Angles in deg from a Quantity, a table column with a unit, or plain numbers (deg)."""
    if hasattr(values, "quantity") and getattr(values, "unit", None) is not None:
        values = values.quantity
    if isinstance(values, u.Quantity):
        return np.asarray(values.to_value(u.deg), float)
    return np.asarray(values, float)


def _open(bcd, index: int, band: int) -> tuple[str, CCDData, WCS]:
    """The BCD as (name, CCDData, celestial WCS), with one-line errors naming it."""
    if isinstance(bcd, (str, os.PathLike)):
        name = str(bcd)
        ccd = load_bcd(bcd)
    elif isinstance(bcd, CCDData):
        ccd = bcd
        name = str(ccd.meta.get("FILENAME", f"bcds[{index}]")) if ccd.meta else f"bcds[{index}]"
    else:
        raise TypeError(f"bcds[{index}]: expected a BCD path or a CCDData, got {type(bcd).__name__}")
    wcs = ccd.wcs
    if wcs is None or not wcs.has_celestial:
        raise InputError(name, "no celestial WCS: joint photometry needs each BCD's own WCS")
    wcs = wcs.celestial
    if ccd.unit is None or not ccd.unit.is_equivalent(u.MJy / u.sr):
        raise InputError(name, f"unit {ccd.unit} is not a surface brightness (MJy/sr expected)")
    if ccd.uncertainty is None:
        raise InputError(name, "no uncertainty (the BCD's _bunc): the fit needs pixel weights")
    chnl = ccd.meta.get("CHNLNUM") if ccd.meta else None
    if chnl is not None and int(chnl) != band_spec(band).chnlnum:
        raise InputError(name, f"CHNLNUM={chnl} is not the {band} um array")
    return name, ccd, wcs


def _groups(ra, dec, link_arcsec: float) -> np.ndarray:
    """Friends-of-friends group label of each source (linking length ``link_arcsec``)."""
    n = ra.size
    if n == 0:
        return np.zeros(0, int)
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    xyz = np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    pairs = cKDTree(xyz).query_pairs(2 * np.sin(0.5 * link_arcsec / _RAD_ARCSEC), output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


# ----------------------------------------------------------------------------- per-BCD pixels

@dataclass
class _Frame:
    """The used pixels of one BCD and the sources whose PRFs reach them."""

    name: str
    wcs: WCS
    shape: tuple[int, int]
    iy: np.ndarray            # used pixels (row, column)
    ix: np.ndarray
    data: np.ndarray          # MJy/sr
    weight: np.ndarray        # 1 / unc^2
    sources: np.ndarray       # sources modelled on this BCD
    fit_sources: np.ndarray   # bool per entry of ``sources``: the source has used pixels of its own
    own_pixels: np.ndarray    # per entry of ``sources``: used pixels within its fit radius
    owner: np.ndarray         # per used pixel: its nearest fitted source (index into all sources)
    geometry: PixelGeometry = field(repr=False)

    def index_image(self) -> np.ndarray:
        """Position of each pixel in the used-pixel arrays (-1 where not used)."""
        idx = np.full(self.shape, -1)
        idx[self.iy, self.ix] = np.arange(self.iy.size)
        return idx


def _box(y, x, reach_y, reach_x, shape):
    """Row and column slices of the pixels within (reach_y, reach_x) pixels of (y, x), or None."""
    y0, y1 = max(int(np.ceil(y - reach_y)), 0), min(int(np.floor(y + reach_y)), shape[0] - 1)
    x0, x1 = max(int(np.ceil(x - reach_x)), 0), min(int(np.floor(x + reach_x)), shape[1] - 1)
    if y0 > y1 or x0 > x1:
        return None
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def _frame(name, ccd, wcs, ra, dec, *, fit_arcsec, margin_arcsec, flags):
    """Used pixels of one BCD (None if no source's fit region touches it); sets PARTIAL/MASKED_CORE.

    A pixel is used when it is usable and within the fit radius of a source; it belongs to the
    nearest such source.  Each source looks only at the box around it.
    """
    shape = ny, nx = ccd.data.shape
    near = _near_frame(wcs, shape, ra, dec, margin_arcsec)
    if near.size == 0:
        return None
    geo = local_pixel_geometry(wcs, ra[near], dec[near])
    scale = np.sqrt(geo.omega_sr * ARCSEC2_PER_SR)            # local pixel size, arcsec
    r_fit = fit_arcsec / scale
    usable = _usable(ccd)
    best = np.full(shape, np.inf)                             # distance^2 to the nearest source
    owner = np.full(shape, -1)
    own_pixels = np.zeros(near.size, int)
    for k in range(near.size):
        box = _box(geo.y[k], geo.x[k], r_fit[k], r_fit[k], shape)
        if box is None:
            continue
        yy, xx = np.mgrid[box]
        d2 = (yy - geo.y[k]) ** 2 + (xx - geo.x[k]) ** 2
        disc = (d2 <= r_fit[k] ** 2) & usable[box]
        own_pixels[k] = disc.sum()
        closer = disc & (d2 < best[box])
        best[box] = np.where(closer, d2, best[box])
        owner[box] = np.where(closer, near[k], owner[box])
        if (geo.x[k] - r_fit[k] < -0.5 or geo.x[k] + r_fit[k] > nx - 0.5
                or geo.y[k] - r_fit[k] < -0.5 or geo.y[k] + r_fit[k] > ny - 0.5):
            flags[near[k]] |= FLAGS["PARTIAL"]
        iy, ix = int(np.floor(geo.y[k] + 0.5)), int(np.floor(geo.x[k] + 0.5))
        if 0 <= iy < ny and 0 <= ix < nx and not usable[iy, ix]:
            flags[near[k]] |= FLAGS["MASKED_CORE"]
    used = owner >= 0
    if not used.any():
        return None
    iy, ix = np.nonzero(used)
    unc = np.asarray(ccd.uncertainty.array, float)[iy, ix]
    return _Frame(name=name, wcs=wcs, shape=shape, iy=iy, ix=ix,
                  data=np.asarray(ccd.data, float)[iy, ix], weight=1.0 / unc ** 2,
                  sources=near, fit_sources=own_pixels > 0, own_pixels=own_pixels,
                  owner=owner[iy, ix], geometry=geo)


def _near_frame(wcs: WCS, shape, ra, dec, margin_arcsec: float) -> np.ndarray:
    """Indices of the sources within ``margin_arcsec`` of the BCD's footprint (a bounding circle)."""
    ny, nx = shape
    yc, xc = (ny - 1) / 2, (nx - 1) / 2
    corners_x = np.array([xc, -0.5, nx - 0.5, -0.5, nx - 0.5])
    corners_y = np.array([yc, -0.5, -0.5, ny - 0.5, ny - 0.5])
    a, d = wcs.all_pix2world(corners_x, corners_y, 0)
    radius = np.max(_separation(a[0], d[0], a[1:], d[1:]))
    return np.flatnonzero(_separation(a[0], d[0], ra, dec) <= radius + margin_arcsec)


def _separation(ra0, dec0, ra, dec):
    """Angular separation, arcsec (haversine)."""
    a0, d0, a, d = (np.deg2rad(v) for v in (ra0, dec0, ra, dec))
    h = np.sin(0.5 * (d - d0)) ** 2 + np.cos(d0) * np.cos(d) * np.sin(0.5 * (a - a0)) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))) * _RAD_ARCSEC


def _usable(ccd: CCDData) -> np.ndarray:
    """Pixels with finite data and a positive finite uncertainty, not masked."""
    data = np.asarray(ccd.data, float)
    unc = np.asarray(ccd.uncertainty.array, float)
    ok = np.isfinite(data) & np.isfinite(unc) & (unc > 0)
    if ccd.mask is not None:
        ok &= ~np.asarray(ccd.mask, bool)
    return ok


# ----------------------------------------------------------------------------- the linear system

@dataclass
class _System:
    """Pixels of all BCDs and the sparse design of the current model."""

    data: np.ndarray
    weight: np.ndarray
    background: np.ndarray    # background parameter of each pixel
    n_background: int
    pixel_group: np.ndarray   # group of each pixel's background
    owner: np.ndarray         # the source nearest each pixel (whose fit region holds it)
    a: sparse.csr_matrix      # (pixels, columns): fluxes (uJy), then position offsets (arcsec)
    rejected: np.ndarray = None   # outlying pixels, left out of the fit

    def __post_init__(self):
        if self.rejected is None:
            self.rejected = np.zeros(self.data.size, bool)


def _model_columns(frames, ra, dec, prfs, offsets, fluxes, refined, reach_arcsec, *, include=None,
                   moving=None):
    """The sparse design: flux columns and, for ``refined`` sources, position columns.

    Column ``j`` is source ``j``'s PRF / Omega (MJy/sr per uJy); columns ``n + 2 r``, ``n + 2 r + 1``
    are ``flux_j`` times the model's derivative by the east and north offsets of the r-th refined
    source (MJy/sr per arcsec).  Each (source, BCD) pair evaluates its PRF on the box of pixels its
    PSF image reaches (:meth:`LocalPRF.box`, shrunk to the used pixels' bounding box); the boxes are
    flattened and the used pixels kept in one pass at the end.  ``include`` (bool per source):
    only these sources' columns; ``moving`` (bool per source): position columns only for these
    (default: every refined source).
    """
    n = ra.size
    pos_col = np.full(n, -1)
    pos_col[refined] = n + 2 * np.arange(refined.size)
    if moving is not None:
        pos_col[~moving] = -1
    boxes = []        # per pair: (rows of the used-pixel arrays, -1 outside), source, 1e-12/Omega, inv J
    values, gradients = [], []
    start = 0
    for f in frames:
        src = f.sources
        geo = f.geometry if offsets is None else local_pixel_geometry(
            f.wcs, *_untangent(ra[src], dec[src], offsets[src, 0], offsets[src, 1]))
        index = f.index_image()
        for k, j in enumerate(src):
            if include is not None and not include[j]:
                continue
            sy, sx = geo.sy_arcsec[k], geo.sx_arcsec[k]
            box = _used_box(index, _box(geo.y[k], geo.x[k], reach_arcsec[j] / sy + 0.5,
                                        reach_arcsec[j] / sx + 0.5, f.shape))
            if box is None:
                continue
            sub = index[box].ravel()
            moving = pos_col[j] >= 0
            out = prfs[j].box(geo.y[k], geo.x[k], sy, sx, box, gradient=moving)
            scale = MJYSR_PER_UJY_SR / geo.omega_sr[k]
            boxes.append((np.where(sub >= 0, start + sub, -1), j, scale))
            values.append((out[0] if moving else out).ravel())
            if moving:
                # d(model)/d(sky offset) = F dP/d(source pixel position) x (pixel shift per sky offset)
                inv, amp = geo.inv_jacobian[k], fluxes[j] * scale
                gradients.append([(amp * (out[2] * inv[0, axis] + out[1] * inv[1, axis])).ravel()
                                  for axis in (0, 1)])
        start += f.iy.size
    n_col = n + 2 * refined.size
    if not boxes:
        return sparse.csr_matrix((start, n_col))
    counts = np.array([b[0].size for b in boxes])
    row = np.concatenate([b[0] for b in boxes])
    keep = row >= 0
    src = np.repeat([b[1] for b in boxes], counts)[keep]
    scale = np.repeat([b[2] for b in boxes], counts)[keep]
    rows, cols, vals = [row[keep]], [src], [np.concatenate(values)[keep] * scale]
    moving = np.array([pos_col[b[1]] >= 0 for b in boxes])
    if moving.any():
        m_row = np.concatenate([b[0] for b, m in zip(boxes, moving) if m])
        m_keep = m_row >= 0
        m_col = np.repeat([pos_col[b[1]] for b, m in zip(boxes, moving) if m], counts[moving])[m_keep]
        for axis in (0, 1):
            rows.append(m_row[m_keep])
            cols.append(m_col + axis)
            vals.append(np.concatenate([g[axis] for g in gradients])[m_keep])
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(start, n_col))


def _used_box(index: np.ndarray, box):
    """``box`` shrunk to the bounding box of the used pixels in it (None if it holds none)."""
    if box is None:
        return None
    used = index[box] >= 0
    rows, cols = np.flatnonzero(used.any(axis=1)), np.flatnonzero(used.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(box[0].start + rows[0], box[0].start + rows[-1] + 1),
            slice(box[1].start + cols[0], box[1].start + cols[-1] + 1))


def _normal_equations(system: _System):
    """Schur complement ``S`` (backgrounds eliminated) and its right-hand side."""
    w, d, a = np.where(system.rejected, 0.0, system.weight), system.data, system.a
    nb = system.n_background
    b = sparse.csr_matrix((np.ones(d.size), (np.arange(d.size), system.background)), shape=(d.size, nb))
    wa = sparse.diags(w) @ a
    nbb = np.bincount(system.background, weights=w, minlength=nb)
    rb = np.bincount(system.background, weights=w * d, minlength=nb)
    nfb = (wa.T @ b).tocsr()
    inv_nbb = np.divide(1.0, nbb, out=np.zeros(nb), where=nbb > 0)   # 0: all its pixels rejected
    s = (a.T @ wa - nfb @ sparse.diags(inv_nbb) @ nfb.T).tocsr()
    rhs = wa.T @ d - nfb @ (rb * inv_nbb)
    return s, rhs, nfb, inv_nbb, rb


@dataclass
class _Solution:
    params: np.ndarray        # fluxes then position offsets (NaN where not solved)
    variance: np.ndarray      # their marginal variances
    degenerate: np.ndarray    # bool per column
    backgrounds: np.ndarray


def _solve(system: _System, active: np.ndarray) -> _Solution:
    """Solve the normal equations per connected component for the ``active`` columns."""
    s, rhs, nfb, inv_nbb, rb = _normal_equations(system)
    n_col = s.shape[0]
    params = np.full(n_col, np.nan)
    var = np.full(n_col, np.nan)
    degenerate = np.zeros(n_col, bool)
    cols = np.flatnonzero(active & (s.diagonal() > 0))
    degenerate[np.flatnonzero(active & ~(s.diagonal() > 0))] = True
    sub = s[cols][:, cols]
    n_comp, label = csgraph.connected_components(sub != 0, directed=False)
    for c in range(n_comp):
        idx = cols[label == c]
        p, v, bad = _solve_component(s[idx][:, idx], rhs[idx])
        params[idx], var[idx], degenerate[idx] = p, v, bad
    ok = np.isfinite(params)
    bg = (rb - nfb[ok].T @ params[ok]) * inv_nbb
    return _Solution(params, var, degenerate, bg)


def _solve_component(s, rhs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters, variances and degenerate columns of one component's normal equations."""
    n = s.shape[0]
    scale = 1.0 / np.sqrt(s.diagonal())
    if n > DENSE_MAX:
        lu = splinalg.splu((sparse.diags(scale) @ s @ sparse.diags(scale)).tocsc())
        p = lu.solve(rhs * scale) * scale
        inv_diag = np.array([lu.solve(np.eye(1, n, k).ravel())[k] for k in range(n)])
        return p, inv_diag * scale ** 2, np.zeros(n, bool)
    c = (s.toarray() * scale[:, None]) * scale[None, :]
    try:
        factor = linalg.cho_factor(c, lower=True)
        if np.min(np.diag(factor[0])) ** 2 > _DEGENERATE:
            inv = linalg.cho_solve(factor, np.eye(n))
            return inv @ (rhs * scale) * scale, np.diag(inv) * scale ** 2, np.zeros(n, bool)
    except linalg.LinAlgError:
        pass
    # (near-)singular: the eigen-decomposition finds the combinations the data cannot constrain
    evals, evecs = linalg.eigh(c)
    tiny = evals <= _DEGENERATE * max(evals.max(), 1.0)
    bad = (np.abs(evecs[:, tiny]) > 1e-3).any(axis=1)
    # the pseudo-inverse: an unconstrained combination (coincident sources) is left out of the
    # solution without dropping its sources from the model, so their light is not misassigned
    vk = evecs[:, ~tiny]
    p = vk @ ((vk.T @ (rhs * scale)) / evals[~tiny]) * scale
    v = np.einsum("ij,j,ij->i", vk, 1.0 / evals[~tiny], vk) * scale ** 2
    v[bad] = np.nan      # (their fluxes stay in the model; the catalogue reports NaN)
    return p, v, bad


# ----------------------------------------------------------------------------- driver

def joint_photometry(bcds, positions, *, band: int, temperature_k=None,
                     refine_positions: bool = False, fit_radius_fwhm: float = 3.0,
                     group_fwhm: float = 2.0, background: str = "bcd",
                     psf: tuple[np.ndarray, float] | None = None,
                     refine_min_snr: float = 5.0, max_iterations: int = 20,
                     reject_sigma: float | None = 5.0) -> QTable:
    """Fluxes of point sources at given sky positions, fitted jointly over the BCDs that saw them.

    Parameters
    ----------
    bcds : sequence of path-like or CCDData
        ``*_bcd.fits`` paths (read by :func:`reprocess.bcd.load_bcd`) or their CCDData (MJy/sr,
        uncertainty, mask, celestial WCS with SIP); one band.
    positions : SkyCoord, table with ``ra``/``dec`` (deg) or (ra, dec) arrays in deg
        Source positions (a catalogue or detections on a mosaic).
    band : int
        24, 70 or 160 (the PSF, and the FWHM that sets the fit radius and the grouping).
    temperature_k : float or array, optional
        Blackbody temperature of each source, choosing its PSF (default: the band's flux
        calibrators', :data:`calibration.psf.CALIBRATOR_TEMPERATURE_K`).
    refine_positions : bool
        Fit sky offsets shared by all BCDs (Gauss-Newton) for sources with S/N >= ``refine_min_snr``.
    fit_radius_fwhm : float
        Pixels within this many FWHM of a source enter the fit.
    group_fwhm : float
        Sources closer than this many FWHM form a blended group (one background per BCD).
    background : {"bcd", "group"}
        A constant background per group and BCD (default), or one per group shared by all BCDs
        (for BCDs whose offsets are already matched: it costs less precision, see the module notes).
    psf : (image, arcsec per sample), optional
        An oversampled PSF to use instead of the shipped one (every source).
    max_iterations : int
        Gauss-Newton iterations of the position refinement at most.
    reject_sigma : float or None
        Pixels further than this many sigmas from the model (noise plus ``MODEL_TOLERANCE`` of the
        sources' model, in quadrature) are left out: cosmic rays and other unflagged outliers.
        None: no rejection.

    Returns
    -------
    QTable
        One row per input position, in order: ``ra``, ``dec`` (deg; refined if asked), ``flux`` and
        ``flux_err`` (uJy; NaN when not measured), ``n_bcd`` and ``n_pix`` (BCDs and pixels of the
        source's own fit region), ``n_rejected`` (outlying pixels left out), ``chi2_dof`` (of its group's pixels), ``group``, ``group_size``,
        ``flags`` (bits of :data:`FLAGS`, listed in ``meta['flags']``); with refinement also
        ``ra_err``, ``dec_err`` and ``shift`` (arcsec).  Fluxes are the band's quoted flux densities
        (no colour correction), in the calibration of the BCDs.

    Raises
    ------
    reprocess.io.InputError
        A BCD without a celestial WCS, uncertainty or surface-brightness unit, or of another band
        (naming it).
    """
    band = band_spec(band).band
    if background not in ("bcd", "group"):
        raise ValueError(f'background must be "bcd" or "group", got {background!r}')
    ra, dec = _positions(positions)
    n = ra.size
    temps = np.asarray(CALIBRATOR_TEMPERATURE_K[band] if temperature_k is None else temperature_k,
                       float)
    if temps.ndim > 1 or temps.size not in (1, n):
        raise ValueError(f"temperature_k: one value or one per position ({n}), got shape {temps.shape}")
    temps = np.broadcast_to(temps.reshape(-1) if temps.ndim else temps, (n,))
    prfs = _prfs(band, temps, psf)
    fwhm = FWHM_ARCSEC[band]
    fit_arcsec = fit_radius_fwhm * fwhm
    reach_arcsec = np.array([p.reach_arcsec for p in prfs])
    margin = max(np.sqrt(2) * (reach_arcsec.max() if n else 0.0), fit_arcsec) + 2 * band_spec(band).pixel_arcsec
    group = _groups(ra, dec, group_fwhm * fwhm)
    flags = np.zeros(n, np.int64)
    frames = []
    for k, bcd in enumerate(bcds):
        name, ccd, wcs = _open(bcd, k, band)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fr = _frame(name, ccd, wcs, ra, dec, fit_arcsec=fit_arcsec,
                        margin_arcsec=margin, flags=flags)
        if fr is not None:
            frames.append(fr)
    system, n_bcd, n_pix = _assemble(frames, group, n, per_bcd=background == "bcd")
    measured = n_pix > 0
    flags[~measured] |= FLAGS["OFF_IMAGE"]
    sizes = np.bincount(group, minlength=group.max() + 1 if n else 0)[group] if n else np.zeros(0, int)
    flags[sizes > 1] |= FLAGS["BLENDED"]
    result = _fit(system, frames, ra, dec, prfs, reach_arcsec, measured, group, refine_positions,
                  refine_min_snr, max_iterations, reject_sigma)
    flags[result.degenerate] |= FLAGS["DEGENERATE"]
    flags[result.not_converged] |= FLAGS["NOT_CONVERGED"]
    return _table(ra, dec, result, n_bcd, n_pix, group, sizes, flags, refine_positions, band, temps,
                  fit_radius_fwhm, group_fwhm)


def _assemble(frames, group, n, *, per_bcd: bool):
    """Pixels of all frames with their background parameters (one per group and BCD, or per group);
    per-source BCD and pixel counts."""
    n_bcd = np.zeros(n, int)
    n_pix = np.zeros(n, int)
    data, weight, background, pixel_group, owner = [], [], [], [], []
    n_bg = 0
    for f in frames:
        fitted = f.sources[f.fit_sources]
        n_bcd[fitted] += 1
        n_pix[f.sources] += f.own_pixels
        g = group[f.owner]
        labels, inverse = np.unique(g, return_inverse=True)
        background.append(n_bg + inverse)
        pixel_group.append(g)
        owner.append(f.owner)
        n_bg += labels.size
        data.append(f.data)
        weight.append(f.weight)
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    groups, background = cat(pixel_group, int), cat(background, int)
    if not per_bcd:
        labels, background = np.unique(groups, return_inverse=True)
        n_bg = labels.size
    system = _System(data=cat(data, float), weight=cat(weight, float), background=background,
                     n_background=n_bg, pixel_group=groups, owner=cat(owner, int), a=None)
    return system, n_bcd, n_pix


@dataclass
class _Result:
    flux: np.ndarray
    flux_var: np.ndarray
    pos_var: np.ndarray       # (n, 2) east, north variances, arcsec^2 (NaN when not refined)
    shift: np.ndarray         # (n, 2) arcsec
    chi2_dof: np.ndarray      # per source: chi^2 / dof of its group's pixels
    n_rejected: np.ndarray    # per source: outlying pixels left out (nearest this source)
    degenerate: np.ndarray
    not_converged: np.ndarray


def _fit(system, frames, ra, dec, prfs, reach_arcsec, measured, group, refine, min_snr,
         max_iter, reject_sigma) -> _Result:
    """The linear flux solve with outlier rejection, then (optionally) Gauss-Newton steps on the
    positions and the rejection again."""
    n = ra.size
    none = np.zeros(0, int)
    system.a = _model_columns(frames, ra, dec, prfs, None, None, none, reach_arcsec)
    sol = _clip(system, _solve(system, measured), measured, n, reject_sigma)
    offsets = np.zeros((n, 2))
    refined = none
    not_converged = np.zeros(n, bool)
    if refine:
        sol, offsets, refined, not_converged = _refine(system, frames, ra, dec, prfs, reach_arcsec,
                                                       measured, sol, min_snr, max_iter)
        active = np.concatenate([measured, np.ones(2 * refined.size, bool)])
        sol = _clip(system, sol, active, n, reject_sigma)
    pos_var = np.full((n, 2), np.nan)
    pos_var[refined] = sol.variance[n:].reshape(-1, 2)
    return _Result(flux=sol.params[:n], flux_var=sol.variance[:n], pos_var=pos_var, shift=offsets,
                   chi2_dof=_chi2_dof(system, sol, group, refined),
                   n_rejected=np.bincount(system.owner[system.rejected], minlength=n),
                   degenerate=sol.degenerate[:n], not_converged=not_converged)


def _clip(system: _System, sol: _Solution, active: np.ndarray, n: int, reject_sigma) -> _Solution:
    """Leave out pixels more than ``reject_sigma`` off the model and solve again, until the set of
    outliers stops changing (each round judges every pixel anew, so a pixel is never lost for good).

    The tolerance is the pixel's noise plus ``MODEL_TOLERANCE`` of the sources' model there, in
    quadrature, so that a PRF mismatch on a bright core is not taken for a cosmic ray.
    """
    if reject_sigma is None or system.data.size == 0:
        return sol
    for _ in range(_CLIP_ROUNDS):
        params = np.nan_to_num(sol.params)
        sources = system.a[:, :n] @ params[:n]
        model = system.a @ params + sol.backgrounds[system.background]
        tol = reject_sigma * np.sqrt(1.0 / system.weight + (MODEL_TOLERANCE * sources) ** 2)
        rejected = np.abs(system.data - model) > tol
        if np.array_equal(rejected, system.rejected):
            break
        system.rejected = rejected
        sol = _solve(system, active)
    return sol


def _chi2_dof(system: _System, sol: _Solution, group: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """chi^2 / dof of each source's group: its pixels less its backgrounds, fluxes and positions."""
    n = group.size
    if n == 0 or system.data.size == 0:
        return np.full(n, np.nan)
    n_groups = int(group.max()) + 1
    model = system.a @ np.nan_to_num(sol.params) + sol.backgrounds[system.background]
    keep = ~system.rejected
    resid2 = np.where(keep, system.weight * (system.data - model) ** 2, 0.0)
    chi2 = np.bincount(system.pixel_group, weights=resid2, minlength=n_groups)
    dof = np.bincount(system.pixel_group[keep], minlength=n_groups).astype(float)
    bg_group = np.zeros(system.n_background, int)
    bg_group[system.background] = system.pixel_group
    dof -= np.bincount(bg_group, minlength=n_groups)
    dof -= np.bincount(group[np.isfinite(sol.params[:n])], minlength=n_groups)
    dof -= 2 * np.bincount(group[refined], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = np.where(dof > 0, chi2 / np.where(dof > 0, dof, 1), np.nan)
    return per_group[group]


def _refine(system, frames, ra, dec, prfs, reach_arcsec, measured, sol, min_snr, max_iter):
    """Gauss-Newton on the sky offsets of the sources detected at ``min_snr``.

    Each iteration linearises the model in the offsets of all refined sources together (their
    fluxes are solved for anew, not linearised) and takes the step, at most ``_MAX_STEP_PIX``
    pixel; a source whose step points back along its previous one has overshot and its steps are
    halved from then on.  Converged: every applied step within :func:`_tolerance`.  Steps are
    judged after damping: the model is piecewise bilinear in the position (the PRF's integral
    image), so at a kink of chi^2 the raw Gauss-Newton step need not shrink, the halved ones do.
    The final linearisation, at the last positions, gives the fluxes and the covariance.
    """
    n = ra.size
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = sol.params[:n] / np.sqrt(sol.variance[:n])
    refined = np.flatnonzero(measured & (snr >= min_snr))
    offsets = np.zeros((n, 2))
    not_converged = np.zeros(n, bool)
    if refined.size == 0:
        return sol, offsets, refined, not_converged
    pix_arcsec = np.zeros(n)
    for f in frames:
        s = np.sqrt(f.geometry.omega_sr * ARCSEC2_PER_SR)
        pix_arcsec[f.sources] = np.maximum(pix_arcsec[f.sources], s)
    active = np.concatenate([measured, np.ones(2 * refined.size, bool)])
    # (``offsets`` is updated in place: every call sees the current positions)
    columns = partial(_model_columns, frames, ra, dec, prfs, offsets, refined=refined,
                      reach_arcsec=reach_arcsec)
    fluxes = np.nan_to_num(sol.params[:n])
    previous = np.zeros((refined.size, 2))
    damping = np.ones(refined.size)
    converged = False
    for _ in range(max_iter):
        system.a = columns(fluxes)
        sol = _solve(system, active)
        step = np.nan_to_num(sol.params[n:].reshape(-1, 2))
        length = np.hypot(step[:, 0], step[:, 1])
        damping[np.sum(step * previous, axis=1) < 0] *= 0.5
        step *= (damping * np.minimum(1.0, _MAX_STEP_PIX * pix_arcsec[refined]
                                      / np.maximum(length, 1e-300)))[:, None]
        previous = step
        offsets[refined] += step
        fluxes = np.nan_to_num(sol.params[:n])
        moved = np.hypot(step[:, 0], step[:, 1]) > _tolerance(sol, n, refined, pix_arcsec)
        if not moved.any():
            converged = True
            break
    # the final linearisation at the last positions: fluxes, covariance, zero position step
    system.a = columns(fluxes)
    sol = _solve(system, active)
    if not converged:
        not_converged[refined[moved]] = True
    return sol, offsets, refined, not_converged


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    out = np.zeros(n, bool)
    out[idx] = True
    return out


def _step_length(sol, n: int, n_refined: int) -> np.ndarray:
    step = np.nan_to_num(sol.params[n:n + 2 * n_refined].reshape(-1, 2))
    return np.hypot(step[:, 0], step[:, 1])


def _tolerance(sol, n: int, refined: np.ndarray, pix_arcsec: np.ndarray) -> np.ndarray:
    """A converged step: below 1e-3 pixel or a tenth of the position's own error, arcsec."""
    sigma = np.sqrt(np.nan_to_num(sol.variance[n:n + 2 * refined.size].reshape(-1, 2)).sum(axis=1))
    return np.maximum(_CONVERGED_PIX * pix_arcsec[refined], 0.1 * sigma)


def _table(ra, dec, res, n_bcd, n_pix, group, sizes, flags, refine, band, temps, fit_radius_fwhm,
           group_fwhm) -> QTable:
    """The output catalogue (see :func:`joint_photometry`)."""
    flux = res.flux.copy()
    err = np.sqrt(res.flux_var)
    bad = (flags & (FLAGS["OFF_IMAGE"] | FLAGS["DEGENERATE"])) != 0
    flux[bad] = np.nan
    err[bad] = np.nan
    new_ra, new_dec = _untangent(ra, dec, res.shift[:, 0], res.shift[:, 1])
    out = QTable()
    out["id"] = np.arange(ra.size)
    out["ra"] = new_ra * u.deg
    out["dec"] = new_dec * u.deg
    out["flux"] = flux * u.uJy
    out["flux_err"] = err * u.uJy
    out["n_bcd"] = n_bcd
    out["n_pix"] = n_pix
    out["n_rejected"] = res.n_rejected
    out["chi2_dof"] = res.chi2_dof
    out["group"] = group
    out["group_size"] = sizes
    out["temperature_k"] = np.asarray(temps, float)
    out["flags"] = flags
    if refine:
        out["ra_err"] = np.sqrt(res.pos_var[:, 0]) * u.arcsec
        out["dec_err"] = np.sqrt(res.pos_var[:, 1]) * u.arcsec
        out["shift"] = np.hypot(res.shift[:, 0], res.shift[:, 1]) * u.arcsec
    out.meta["flags"] = dict(FLAGS)
    out.meta["band_um"] = band
    out.meta["fit_radius_fwhm"] = fit_radius_fwhm
    out.meta["group_fwhm"] = group_fwhm
    out.meta["method"] = "joint PRF fit over BCDs (reprocess.photometry.joint)"
    return out
