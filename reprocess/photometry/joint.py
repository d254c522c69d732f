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
PRFs, in any BCD); each is solved on its own (dense Cholesky up to ``DENSE_MAX`` unknowns, sparse LU
beyond).  No iteration, no subtraction of neighbours' current estimates (APEX's scheme): blended
sources are fitted simultaneously by construction.

Grouping
--------
Sources closer than ``group_fwhm`` FWHM on the sky (friends of friends) form a group.  A group has
one constant background per BCD: each used pixel (within ``fit_radius_fwhm`` FWHM of a source) is
given to the group of its nearest source.  Every source's PRF is modelled on all used pixels it
reaches (the PSF image's full extent), so a bright neighbour outside the group is still in the
model of a faint source's pixels; groups only decide which pixels share a background and which
sources are reported as blended.  With ``refine_positions`` a few Gauss-Newton iterations fit
sky offsets (east, north) shared by all BCDs, for the sources detected at ``refine_min_snr``;
the fluxes are linear and solved for anew in every step (not linearised), the reported flux
errors are marginalised over the positions.

What it costs
-------------
Per source and BCD: one SIP projection and four for the Jacobian, and the PRF on the used pixels
(four bilinear look-ups of the integral image each).  The normal equations have one entry per pair
of sources sharing a pixel; the solve is ``O(n^3)`` per component of ``n`` coupled sources (dense)
-- small for isolated sources and blends, sparse LU for crowded fields.  BCDs are read one at a
time and only their used pixels kept.  Refinement repeats the model and solve per iteration.

Flags (column ``flags``, bits of ``FLAGS``)
-------------------------------------------
``OFF_IMAGE`` no used pixel in any BCD: flux NaN.  ``BLENDED`` the group has other sources.
``MASKED_CORE`` an unusable pixel within one FWHM of the source on some BCD.  ``PARTIAL`` the fit
region runs off a BCD's edge.  ``NOT_CONVERGED`` position refinement did not converge.
``DEGENERATE`` the flux cannot be separated from a neighbour or the background: flux NaN.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

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
_GRADIENT_STEP_PIX = 0.02     # PRF gradient (position refinement), central differences
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
        key = 0.0 if band == 24 else min(PSF_TEMPERATURES_K,
                                         key=lambda tk: abs(np.log(tk) - np.log(max(t, 1.0))))
        if key not in cache:
            cache[key] = LocalPRF(load_prf(band, float(key) or 1.0, base), base)
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
    ra = ra.to_value(u.deg) if hasattr(ra, "unit") and ra.unit is not None else np.asarray(ra)
    dec = dec.to_value(u.deg) if hasattr(dec, "unit") and dec.unit is not None else np.asarray(dec)
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"positions: ra and dec must be 1-d arrays of one length, got {ra.shape} "
                         f"and {dec.shape}")
    if not (np.all(np.isfinite(ra)) and np.all(np.abs(dec) <= 90)):
        raise ValueError("positions: ra must be finite and dec within [-90, 90] deg")
    return ra, dec


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
    iy: np.ndarray            # used pixels (row, column)
    ix: np.ndarray
    data: np.ndarray          # MJy/sr
    weight: np.ndarray        # 1 / unc^2
    sources: np.ndarray       # sources modelled on this BCD
    fit_sources: np.ndarray   # bool per entry of ``sources``: the source has used pixels of its own
    own_pixels: np.ndarray    # per entry of ``sources``: used pixels within its fit radius
    owner: np.ndarray         # per used pixel: its nearest fitted source (index into all sources)
    geometry: PixelGeometry = field(repr=False)


def _frame(name, ccd, wcs, ra, dec, *, fit_arcsec, margin_arcsec, fwhm_arcsec, flags):
    """Used pixels of one BCD (None if no source's fit region touches it); sets PARTIAL/MASKED_CORE."""
    ny, nx = ccd.data.shape
    near = _near_frame(wcs, (ny, nx), ra, dec, margin_arcsec)
    if near.size == 0:
        return None
    geo = local_pixel_geometry(wcs, ra[near], dec[near])
    scale = np.sqrt(geo.omega_sr * ARCSEC2_PER_SR)            # local pixel size, arcsec
    r_fit = fit_arcsec / scale
    inside = ((geo.x + r_fit > -0.5) & (geo.x - r_fit < nx - 0.5)
              & (geo.y + r_fit > -0.5) & (geo.y - r_fit < ny - 0.5))
    if not inside.any():
        return None
    usable = _usable(ccd)
    yy, xx = np.mgrid[0:ny, 0:nx]
    d2 = (yy.ravel()[None, :] - geo.y[inside, None]) ** 2 + (xx.ravel()[None, :] - geo.x[inside, None]) ** 2
    in_disc = d2 <= r_fit[inside, None] ** 2
    used = in_disc.any(axis=0) & usable.ravel()
    own = (in_disc & used[None, :]).any(axis=1)
    if not own.any():
        return None
    _set_frame_flags(flags, near[inside], geo, inside, r_fit, usable, d2, fwhm_arcsec / scale)
    fitted = near[inside][own]
    d2_used = np.where(in_disc[own][:, used], d2[own][:, used], np.inf)
    owner = fitted[np.argmin(d2_used, axis=0)]
    unc = np.asarray(ccd.uncertainty.array, float).ravel()[used]
    fit_mask = np.zeros(near.size, bool)
    fit_mask[np.flatnonzero(inside)[own]] = True
    own_pixels = np.zeros(near.size, int)
    own_pixels[np.flatnonzero(inside)] = (in_disc & used[None, :]).sum(axis=1)
    return _Frame(name=name, wcs=wcs, iy=yy.ravel()[used], ix=xx.ravel()[used],
                  data=np.asarray(ccd.data, float).ravel()[used], weight=1.0 / unc ** 2,
                  sources=near, fit_sources=fit_mask, own_pixels=own_pixels, owner=owner, geometry=geo)


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


def _set_frame_flags(flags, idx, geo, inside, r_fit, usable, d2, fwhm_pix):
    """PARTIAL where a fit disc runs off the BCD, MASKED_CORE where an on-array core pixel is bad."""
    ny, nx = usable.shape
    x, y, r = geo.x[inside], geo.y[inside], r_fit[inside]
    off = (x - r < -0.5) | (x + r > nx - 0.5) | (y - r < -0.5) | (y + r > ny - 0.5)
    flags[idx[off]] |= FLAGS["PARTIAL"]
    core = d2 <= fwhm_pix[inside, None] ** 2
    bad_core = (core & ~usable.ravel()[None, :]).any(axis=1)
    flags[idx[bad_core]] |= FLAGS["MASKED_CORE"]


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


def _model_columns(frames, ra, dec, prfs, offsets, fluxes, refined, model_arcsec):
    """The sparse design: flux columns and, for ``refined`` sources, position columns.

    Column ``j`` is source ``j``'s PRF / Omega (MJy/sr per uJy); columns ``n + 2 r``, ``n + 2 r + 1``
    are ``flux_j`` times the model's derivative by the east and north offsets of the r-th refined
    source (MJy/sr per arcsec).  The PRFs are evaluated in one call per PSF over all (source, BCD)
    pairs.
    """
    n = ra.size
    pairs = _pairs(frames, ra, dec, offsets, model_arcsec)
    n_rows = sum(f.iy.size for f in frames)
    n_col = n + 2 * refined.size
    if pairs is None:
        return sparse.csr_matrix((n_rows, n_col))
    row, src, dy, dx, sy, sx, scale, inv = pairs
    value = np.empty(row.size)
    for prf in {id(p): p for p in prfs}.values():
        sel = np.flatnonzero(np.array([prfs[j] is prf for j in range(n)])[src])
        value[sel] = prf(dy[sel], dx[sel], sy[sel], sx[sel])
    rows, cols, vals = [row], [src], [value * scale]
    pos_col = np.full(n, -1)
    pos_col[refined] = n + 2 * np.arange(refined.size)
    moving = np.flatnonzero(pos_col[src] >= 0)
    if moving.size:
        h = _GRADIENT_STEP_PIX
        ddx, ddy = np.empty(moving.size), np.empty(moving.size)
        for prf in {id(p): p for p in prfs}.values():
            sel = np.flatnonzero(np.array([prfs[j] is prf for j in range(n)])[src[moving]])
            m = moving[sel]
            a = (dy[m], dx[m], sy[m], sx[m])
            ddx[sel] = (prf(a[0], a[1] - h, a[2], a[3]) - prf(a[0], a[1] + h, a[2], a[3])) / (2 * h)
            ddy[sel] = (prf(a[0] - h, a[1], a[2], a[3]) - prf(a[0] + h, a[1], a[2], a[3])) / (2 * h)
        # d(model)/d(source x) = -dP/d(dx); the source's pixel shift per sky offset is inv_jacobian
        amp = np.asarray(fluxes)[src[moving]] * scale[moving]
        for axis in (0, 1):
            rows.append(row[moving])
            cols.append(pos_col[src[moving]] + axis)
            vals.append(amp * (ddx * inv[moving, 0, axis] + ddy * inv[moving, 1, axis]))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_rows, n_col))


def _pairs(frames, ra, dec, offsets, model_arcsec):
    """Per (used pixel, source reaching it): row, source, pixel offsets, local pixel sizes, 1e-12 /
    Omega and the source's inverse Jacobian; None when no source reaches a used pixel."""
    out = []
    start = 0
    for f in frames:
        src = f.sources
        geo = f.geometry if offsets is None else local_pixel_geometry(
            f.wcs, *_untangent(ra[src], dec[src], offsets[src, 0], offsets[src, 1]))
        dy = f.iy[None, :] - geo.y[:, None]
        dx = f.ix[None, :] - geo.x[:, None]
        sy, sx = geo.sy_arcsec[:, None], geo.sx_arcsec[:, None]
        reach = ((np.abs(dy) * sy <= model_arcsec[src][:, None] + 0.5 * sy)
                 & (np.abs(dx) * sx <= model_arcsec[src][:, None] + 0.5 * sx))
        k, pix = np.nonzero(reach)
        out.append((start + pix, src[k], dy[k, pix], dx[k, pix], geo.sy_arcsec[k], geo.sx_arcsec[k],
                    MJYSR_PER_UJY_SR / geo.omega_sr[k], geo.inv_jacobian[k]))
        start += f.iy.size
    if not out or sum(o[0].size for o in out) == 0:
        return None
    return tuple(np.concatenate([o[i] for o in out]) for i in range(8))


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
                     refine_min_snr: float = 5.0, max_iterations: int = 10,
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
    temps = np.broadcast_to(np.asarray(CALIBRATOR_TEMPERATURE_K[band] if temperature_k is None
                                       else temperature_k, float), (n,))
    prfs = _prfs(band, temps, psf)
    fwhm = FWHM_ARCSEC[band]
    fit_arcsec = fit_radius_fwhm * fwhm
    model_arcsec = np.array([p.reach_arcsec for p in prfs])
    margin = max(np.sqrt(2) * (model_arcsec.max() if n else 0.0), fit_arcsec) + 2 * band_spec(band).pixel_arcsec
    group = _groups(ra, dec, group_fwhm * fwhm)
    flags = np.zeros(n, np.int64)
    frames = []
    for k, bcd in enumerate(bcds):
        name, ccd, wcs = _open(bcd, k, band)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fr = _frame(name, ccd, wcs, ra, dec, fit_arcsec=fit_arcsec,
                        margin_arcsec=margin, fwhm_arcsec=fwhm,
                        flags=flags)
        if fr is not None:
            frames.append(fr)
    system, n_bcd, n_pix = _assemble(frames, group, n, per_bcd=background == "bcd")
    measured = n_pix > 0
    flags[~measured] |= FLAGS["OFF_IMAGE"]
    sizes = np.bincount(group, minlength=group.max() + 1 if n else 0)[group] if n else np.zeros(0, int)
    flags[sizes > 1] |= FLAGS["BLENDED"]
    result = _fit(system, frames, ra, dec, prfs, model_arcsec, measured, group, refine_positions,
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


def _fit(system, frames, ra, dec, prfs, model_arcsec, measured, group, refine, min_snr,
         max_iter, reject_sigma) -> _Result:
    """The linear flux solve with outlier rejection, then (optionally) Gauss-Newton steps on the
    positions and the rejection again."""
    n = ra.size
    none = np.zeros(0, int)
    system.a = _model_columns(frames, ra, dec, prfs, None, None, none, model_arcsec)
    sol = _clip(system, _solve(system, measured), measured, n, reject_sigma)
    offsets = np.zeros((n, 2))
    refined = none
    not_converged = np.zeros(n, bool)
    if refine:
        sol, offsets, refined, not_converged = _refine(system, frames, ra, dec, prfs, model_arcsec,
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


def _refine(system, frames, ra, dec, prfs, model_arcsec, measured, sol, min_snr, max_iter):
    """Gauss-Newton on the sky offsets of the sources detected at ``min_snr``."""
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
    fluxes = sol.params[:n].copy()
    converged = False
    for _ in range(max_iter):
        system.a = _model_columns(frames, ra, dec, prfs, offsets, np.nan_to_num(fluxes), refined,
                                  model_arcsec)
        sol = _solve(system, active)
        step = np.nan_to_num(sol.params[n:].reshape(-1, 2))
        limit = _MAX_STEP_PIX * pix_arcsec[refined]
        length = np.hypot(step[:, 0], step[:, 1])
        step *= np.minimum(1.0, limit / np.maximum(length, 1e-300))[:, None]
        offsets[refined] += step
        fluxes = sol.params[:n].copy()
        if np.all(length <= _CONVERGED_PIX * pix_arcsec[refined]):
            converged = True
            break
    # the final linearisation at the converged positions: fluxes, covariance, zero position step
    system.a = _model_columns(frames, ra, dec, prfs, offsets, np.nan_to_num(fluxes), refined,
                              model_arcsec)
    sol = _solve(system, active)
    if not converged:
        not_converged[refined] = True
    return sol, offsets, refined, not_converged


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
