"""The point-source response of a resampled mosaic, and the noise correlation the resampling leaves.

Physics
-------
A BCD pixel collects the PSF over its area: the PRF of :func:`calibration.psf.load_prf` at the
array's own pixel (2.55", 9.98", 16"), which is what the simulator renders and what a detector
sees.  A mosaic made by :mod:`reprocess.mosaic` resamples each BCD *bilinearly* onto a finer grid
(2.45", 4", 8") and averages the BCDs: a mosaic pixel is not the PSF integrated over the mosaic
pixel (``load_prf(band, T, 2.45)``) but a point sample, at its centre, of the native-pixel image
interpolated with the bilinear kernel.  Over many BCDs the source falls at every sub-pixel phase
of the native grid, and the average of bilinear interpolation over the phase is a convolution
with the interpolation kernel.  So the mosaic of a point source of flux ``F`` is, in MJy/sr,
``F (PSF * B * T)(x - s)``: the PSF convolved with the native pixel ``B`` (a box of one native
pixel) and with the interpolation kernel ``T`` (a tent of half-width one native pixel, per axis
of the BCD), point-sampled.  At 160 um the middle row of the array is blank and the normalised
interpolation of :mod:`reprocess.mosaic.cutout` (weight >= 0.5) takes the nearest valid row along
the array's y axis: there ``T`` is a box along y.

The difference matters.  At 70 um the native box and tent add ``p^2 / 4`` to the variance of a
PSF with sigma ~8" (p = 9.98": +25 arcsec^2 against +1.3 for a 4" mosaic pixel): a PRF fit with
the mosaic-pixel PRF would read such a source low by several percent, and an aperture correction
from the PSF alone would be too small by as much.  :class:`MosaicPRF` tabulates the convolved
model on a grid of 1/10 mosaic pixel in the mosaic's frame (the PSF and both kernels live in the
BCD's frame, rotated on the sky by the array's position angle: ``bcd_to_mosaic``), with its
gradient for the position fit; a lookup is a bilinear interpolation of the tables.  (The gradient
is the table's central differences, interpolated likewise: continuous, so Gauss-Newton settles in
noisy data.  The bilinear interpolant's own derivatives jump at every node, 0.1 pixel apart, and
made the position steps of ~2 % of sources oscillate across nodes in a 1000-source test.)

Noise correlation
-----------------
A mosaic pixel is a weighted sum of (up to) four native pixels of each BCD, so neighbouring mosaic
pixels share noise.  For white native noise, ``Cov(p, q) / sigma_p sigma_q`` averaged over the
phase is ``rho(d) = a_y(u_y) a_x(u_x)`` with ``u`` the mosaic offset ``d`` in native pixels (BCD
frame) and ``a`` the normalised autocorrelation of the kernel: for the tent the cubic B-spline
``(2/3 - u^2 + |u|^3 / 2) / (2/3)`` (``|u| < 1``), ``(2 - |u|)^3 / 4`` (``1 < |u| < 2``), for the
box the triangle ``1 - |u|``.  ``UNC`` is the per-pixel sigma (:mod:`reprocess.mosaic.cutout`
carries ``sum w^2 sigma^2``), so ``rho`` is what every estimator's error needs besides it:
``var(sum_p c_p d_p) = sum_pq c_p c_q sigma_p sigma_q rho(p - q)``
(:func:`correlated_variance_factor`).  At 70 um a PRF fit's independent-pixel error is too small
by a factor ~2.5 without it.

Trade-offs: the phase average is exact only for many BCDs at random phases (a scan map's ~10-100
per point); the model ignores the BCDs' distortion (pixel sizes vary by a few percent across an
array) and the scan smear, and it takes one position angle for all BCDs (a mosaic of AORs at
different angles gets the PSF at one of them; the MIPS PSFs are nearly round, so this costs little).
``resampling="none"`` gives the plain PRF of the mosaic pixel, for mosaics that are sums of pixels
rather than interpolations.

Known limit (160 um): the model takes the coadd's weights as independent of the source.  A BCD's
``_bunc`` also holds calibration terms proportional to the signal (2-7 % of a bright 160 um
pixel's slope: responsivity, illumination, nonlinearity-coefficient errors), so the coadd's
``1 / bunc^2`` favours, at each mosaic pixel, the BCDs that saw less of the source: the mosaic's
core is lowered and its wings raised, in a flux-dependent way no linear PRF can hold.  On a
simulated 160 um slow scan the PRF fit reads S/N > 20 sources 0.954 +- 0.007 of their flux on the
pipeline's mosaic and 0.989 +- 0.007 on a mosaic of the same BCDs with one weight per BCD
(noise-free, no background: 0.977 and 0.997).  The remedy belongs to the coadd (weights from the
noise alone); the joint BCD fit (:mod:`.joint`) does not go through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from calibration.instrument import band_spec
from calibration.psf import CALIBRATOR_TEMPERATURE_K, load_prf

__all__ = [
    "MosaicPRF",
    "bcd_to_mosaic_matrix",
    "correlated_variance_factor",
    "mosaic_prf",
    "noise_correlation",
    "resampling_kernels",
]

_OVERSAMPLE = 10          # table samples per mosaic pixel
_FWHM_ARCSEC = {24: 5.9, 70: 18.9, 160: 43.2}   # mips-facts 1 (24 measured, 70 and 160 model)


def resampling_kernels(band: int) -> tuple[str, str]:
    """Phase-averaged interpolation kernel along the BCD's (y, x) axes of a ``reprocess.mosaic``
    mosaic: ``"ivw_tent"`` (bilinear, inverse-variance weighted) or ``"box"`` (nearest valid row:
    the 160 um array's blank row)."""
    return ("box", "ivw_tent") if int(band) == 160 else ("ivw_tent", "ivw_tent")


def _profile(kind: str, u: np.ndarray) -> np.ndarray:
    """Unnormalised kernel at ``u`` (native pixels)."""
    a = np.abs(u)
    if kind == "tent":
        return np.clip(1.0 - a, 0.0, None)
    if kind == "ivw_tent":
        # a bilinear value at fractional position t has variance (t^2 + (1-t)^2) sigma^2: the coadd
        # weights it by the inverse, so phases between native pixel centres count more
        t = np.minimum(a, 1.0)
        return np.where(a < 1.0, (1.0 - t) / (t ** 2 + (1.0 - t) ** 2), 0.0)
    if kind == "box":
        return np.where(a < 0.5, 1.0, np.where(np.isclose(a, 0.5), 0.5, 0.0))
    raise ValueError(f"unknown resampling kernel {kind!r}")


def _kernel_weights(kind: str, step: float) -> np.ndarray:
    """A kernel of unit integral sampled every ``step`` native pixels (sum 1)."""
    if kind == "none":
        return np.ones(1)
    n = int(np.floor((0.5 if kind == "box" else 1.0) / step))
    w = _profile(kind, np.arange(-n, n + 1) * step)
    return w / w.sum()


_PHASES = (np.arange(2000) + 0.5) / 2000.0     # midpoint rule over a pixel's phase


def _autocorrelation(kind: str, u: np.ndarray) -> np.ndarray:
    """Noise correlation, at lag ``u`` (native pixels), of two resampled values along one axis,
    averaged over the phase of the native grid with the coadd's weights."""
    u = np.asarray(u, dtype=float)
    if kind == "none":
        return (np.abs(u) < 1e-9).astype(float)
    if kind == "box":
        return np.clip(1.0 - np.abs(u), 0.0, None)
    a = _PHASES[None, :]
    b = a + u.ravel()[:, None]
    k = np.arange(-3, 5)[:, None, None]
    shared = (np.clip(1 - np.abs(a - k), 0, None) * np.clip(1 - np.abs(b - k), 0, None)).sum(axis=0)
    if kind == "tent":
        rho = shared.mean(axis=1) / (2.0 / 3.0)
    elif kind == "ivw_tent":
        fa, fb = a % 1.0, b % 1.0
        sa, sb = fa ** 2 + (1 - fa) ** 2, fb ** 2 + (1 - fb) ** 2
        rho = (shared / (sa * sb)).mean(axis=1) / (1.0 / sa).mean()
    else:
        raise ValueError(f"unknown resampling kernel {kind!r}")
    return rho.reshape(u.shape)


@dataclass(frozen=True)
class MosaicPRF:
    """Fraction of a point source's flux in each mosaic pixel, by offset from the source.

    Call it as ``prf(dy, dx)`` with the offsets (mosaic pixels) of pixel centres from the source,
    like :class:`calibration.psf.PRF`; :meth:`evaluate` also returns the derivatives.

    Attributes
    ----------
    table : (N, N) array
        Fraction per mosaic pixel on a grid of ``step`` pixels, centre at ``[N // 2, N // 2]``.
    step : float
        Grid spacing, mosaic pixels.
    radius_pix : float
        Radius of the model, mosaic pixels (0 beyond: the PSF's wings further out are left out).
    fwhm_pix : float
        FWHM of the model (from the area above half its peak), mosaic pixels.
    correlation : (K, K) array
        Noise correlation ``rho`` between mosaic pixels by offset, centre at ``[K // 2, K // 2]``.
    """

    table: np.ndarray
    grad_y: np.ndarray
    grad_x: np.ndarray
    step: float
    radius_pix: float
    fwhm_pix: float
    correlation: np.ndarray
    description: str

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fraction and its derivatives d/d(dy), d/d(dx) at offsets (dy, dx) (bilinear lookup)."""
        n = self.table.shape[0]
        dy, dx = np.asarray(dy, dtype=float), np.asarray(dx, dtype=float)
        fy = (dy + self.radius_pix) / self.step
        fx = (dx + self.radius_pix) / self.step
        inside = (fy >= 0) & (fy <= n - 1) & (fx >= 0) & (fx <= n - 1)
        inside &= (np.square(dy) + np.square(dx)) <= self.radius_pix ** 2
        fy = np.where(inside, fy, 0.0)
        fx = np.where(inside, fx, 0.0)
        iy = np.minimum(fy.astype(np.intp), n - 2)
        ix = np.minimum(fx.astype(np.intp), n - 2)
        ty, tx = fy - iy, fx - ix
        w00, w01, w10, w11 = (1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx
        flat = iy * n + ix
        out = []
        for tab in (self.table, self.grad_y, self.grad_x):
            t = tab.ravel()
            v = w00 * t[flat] + w01 * t[flat + 1] + w10 * t[flat + n] + w11 * t[flat + n + 1]
            out.append(np.where(inside, v, 0.0))
        return out[0], out[1], out[2]

    def __call__(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return self.evaluate(dy, dx)[0]

    def render(self, shape: tuple[int, int], y: np.ndarray, x: np.ndarray,
               flux: np.ndarray) -> np.ndarray:
        """An image of point sources at pixel positions (y, x) (0-based) with these fluxes
        (image unit x pixel): sum of ``flux * prf``, within the table's radius of each source."""
        image = np.zeros(shape)
        r = int(np.ceil(self.radius_pix))
        oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
        for yk, xk, fk in zip(np.atleast_1d(y), np.atleast_1d(x), np.atleast_1d(flux)):
            py, px = oy + round(float(yk)), ox + round(float(xk))
            ok = (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
            np.add.at(image, (py[ok], px[ok]), fk * self(py[ok] - yk, px[ok] - xk))
        return image


def bcd_to_mosaic_matrix(bcd_wcs, mosaic_wcs, bcd_shape: tuple[int, int]) -> np.ndarray:
    """2x2 matrix ``A`` with ``(dy, dx)_BCD = A @ (dy, dx)_mosaic`` (pixels), at the BCD's centre.

    From the two celestial WCSs (the BCD's with its distortion): the orientation, scale and
    handedness of the BCD's pixel grid on the mosaic's.
    """
    yc, xc = (bcd_shape[0] - 1) / 2.0, (bcd_shape[1] - 1) / 2.0
    pts = np.array([[xc, yc], [xc + 1, yc], [xc, yc + 1]])
    sky = bcd_wcs.celestial.all_pix2world(pts, 0)
    mos = mosaic_wcs.celestial.all_world2pix(sky, 0)
    # columns: mosaic (y, x) displacement per BCD pixel along y and along x
    jac = np.array([[mos[2, 1] - mos[0, 1], mos[1, 1] - mos[0, 1]],
                    [mos[2, 0] - mos[0, 0], mos[1, 0] - mos[0, 0]]])
    return np.linalg.inv(jac)


def mosaic_prf(band: int, *, pixel_arcsec: float, temperature_k: float | None = None,
               native_pixel_arcsec: float | None = None, bcd_to_mosaic: np.ndarray | None = None,
               resampling: str = "bilinear", radius_pix: float | None = None) -> MosaicPRF:
    """The :class:`MosaicPRF` of ``band`` on a mosaic of ``pixel_arcsec`` pixels.

    Parameters
    ----------
    band : int
        24, 70 or 160.
    pixel_arcsec : float
        Mosaic pixel, arcsec.
    temperature_k : float, optional
        Source blackbody temperature choosing the PSF (70, 160 um); default the flux calibrators'.
    native_pixel_arcsec : float, optional
        The BCD pixel; default the array's (2.55", 9.98", 16").
    bcd_to_mosaic : (2, 2) array, optional
        ``(dy, dx)_BCD = A @ (dy, dx)_mosaic`` in pixels (:func:`bcd_to_mosaic_matrix`); default a
        BCD grid aligned with the mosaic's (no rotation).
    resampling : {"bilinear", "none"}
        How the mosaic was made: ``reprocess.mosaic``'s bilinear interpolation, or none (each
        mosaic pixel the PSF integrated over it: ``load_prf`` at the mosaic pixel, white noise).
    radius_pix : float, optional
        Half-size of the model, mosaic pixels; default 3 FWHM (at least 6 pixels).
    """
    band = int(band)
    temp = float(CALIBRATOR_TEMPERATURE_K[band] if temperature_k is None else temperature_k)
    native = float(band_spec(band).pixel_arcsec if native_pixel_arcsec is None else native_pixel_arcsec)
    if resampling not in ("bilinear", "none"):
        raise ValueError(f"resampling {resampling!r}: expected 'bilinear' or 'none'")
    if bcd_to_mosaic is None:
        bcd_to_mosaic = np.eye(2) * float(pixel_arcsec) / native
    a = tuple(np.round(np.asarray(bcd_to_mosaic, dtype=float).ravel(), 6))
    if radius_pix is None:
        radius_pix = max(6.0, np.ceil(3.0 * np.hypot(_FWHM_ARCSEC[band], native) / pixel_arcsec))
    return _build(band, temp, float(pixel_arcsec), native, a, resampling, float(radius_pix))


@lru_cache(maxsize=32)
def _build(band, temp, pixel_arcsec, native, a_flat, resampling, radius_pix) -> MosaicPRF:
    g = 1.0 / _OVERSAMPLE
    n_half = int(np.ceil(radius_pix / g))
    radius = n_half * g
    grid = np.arange(-n_half, n_half + 1) * g
    dy, dx = np.meshgrid(grid, grid, indexing="ij")
    kernels = resampling_kernels(band) if resampling == "bilinear" else ("none", "none")
    amat = np.array(a_flat).reshape(2, 2)
    if resampling == "none":
        table = load_prf(band, temp, pixel_arcsec)(dy, dx)
        corr = np.ones((1, 1))
        what = f"PRF of the {pixel_arcsec:g}\" pixel ({band} um, {temp:g} K), no resampling"
    else:
        table = _bilinear_table(band, temp, native, amat, kernels, dy, dx)
        corr = noise_correlation(amat, kernels)
        what = (f"{band} um PSF ({temp:g} K) * {native:g}\" pixel * resampling kernels "
                f"{kernels[0]}(y) x {kernels[1]}(x) of the BCD frame, sampled on "
                f"{pixel_arcsec:g}\" mosaic pixels")
    gy, gx = np.gradient(table, g)
    peak = table.max()
    fwhm = 2.0 * np.sqrt((table >= 0.5 * peak).sum() * g * g / np.pi)
    for arr in (table, gy, gx, corr):
        arr.setflags(write=False)
    return MosaicPRF(table, gy, gx, g, radius, float(fwhm), corr, what)


def _bilinear_table(band, temp, native, amat, kernels, dy, dx) -> np.ndarray:
    """Fraction per mosaic pixel of PSF * native pixel * kernels, at mosaic offsets (dy, dx)."""
    corners = np.array([[dy.min(), dx.min()], [dy.min(), dx.max()], [dy.max(), dx.min()],
                        [dy.max(), dx.max()]]) @ amat.T
    reach = np.abs(corners).max(axis=0) + 2.0             # native pixels, with the kernels' reach
    h = min(0.05, 0.1 * min(np.abs(amat).sum(axis=1)))    # BCD-frame step, native pixels
    ny, nx = (int(np.ceil(r / h)) for r in reach)
    uy, ux = np.arange(-ny, ny + 1) * h, np.arange(-nx, nx + 1) * h
    prf = load_prf(band, temp, native)
    gy, gx = np.meshgrid(uy, ux, indexing="ij")
    fine = prf(gy, gx)                                    # fraction per native pixel
    fine = ndimage.convolve1d(fine, _kernel_weights(kernels[0], h), axis=0, mode="constant")
    fine = ndimage.convolve1d(fine, _kernel_weights(kernels[1], h), axis=1, mode="constant")
    by = dy * amat[0, 0] + dx * amat[0, 1]
    bx = dy * amat[1, 0] + dx * amat[1, 1]
    values = ndimage.map_coordinates(fine, [by / h + ny, bx / h + nx], order=1, mode="constant")
    return values * abs(np.linalg.det(amat))             # a mosaic pixel is |det A| native pixels


def noise_correlation(bcd_to_mosaic: np.ndarray, kernels: tuple[str, str]) -> np.ndarray:
    """``rho`` between mosaic pixels by integer offset (square array, centre in the middle).

    Parameters
    ----------
    bcd_to_mosaic : (2, 2) array
        ``(dy, dx)_BCD = A @ (dy, dx)_mosaic``.
    kernels : (str, str)
        Interpolation kernel along the BCD's y and x (``"tent"``, ``"box"`` or ``"none"``).
    """
    amat = np.asarray(bcd_to_mosaic, dtype=float)
    # rho vanishes beyond 2 native pixels along either BCD axis: |dy|, |dx| <= 2 x row sums of A^-1
    k = int(np.ceil(2.0 * np.abs(np.linalg.inv(amat)).sum(axis=1).max()))
    off = np.arange(-k, k + 1)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    uy = oy * amat[0, 0] + ox * amat[0, 1]
    ux = oy * amat[1, 0] + ox * amat[1, 1]
    rho = _autocorrelation(kernels[0], uy) * _autocorrelation(kernels[1], ux)
    keep = np.nonzero(rho.any(axis=0) | rho.any(axis=1))[0]
    lo, hi = keep.min(), keep.max()
    lo, hi = min(lo, 2 * k - hi), max(hi, 2 * k - lo)
    return rho[lo:hi + 1, lo:hi + 1]


def correlated_variance_factor(coeff: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """``sum_pq c_p c_q rho(p - q) / sum_p c_p^2`` for estimators ``c`` on stamps.

    ``coeff`` is ``(..., NY, NX)``: each stamp the coefficients of one estimator times the pixels'
    sigmas.  The ratio is what the correlated noise does to the independent-pixel variance.
    """
    c = np.asarray(coeff, dtype=float)
    k = np.asarray(correlation, dtype=float)
    full = k.reshape((1,) * (c.ndim - 2) + k.shape)
    smoothed = ndimage.correlate(c, full, mode="constant")
    num = (c * smoothed).sum(axis=(-2, -1))
    den = (c * c).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den
