"""Pixel response functions (PRFs) from the real STinyTim PSFs shipped in ``data/psf``.

A detector pixel collects the PSF integrated over its area.  We build the
integral image ``I(x, y)`` of the oversampled PSF (the flux below and left of
``(x, y)``), so the flux falling in any rectangle is exact for a PSF that is
constant over each of its own samples::

    PRF = I(x2, y2) - I(x1, y2) - I(x2, y1) + I(x1, y1)

This handles the non-integer ratio between the PSF sampling (1.97" for 70 um,
3.2" for 160 um) and the detector pixel (9.98", 16.0") with no resampling.
The PSF centre is its brightest sample.  The PSF is chosen by the source's
blackbody temperature (nearest of 10, 25, 50, 75, 100, 3000 K).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from astropy.io import fits
from scipy import ndimage

__all__ = ["CALIBRATOR_TEMPERATURE_K", "PRF", "PSF_TEMPERATURES_K", "STINYTIM_24_WAVELENGTH_UM", "load_prf",
           "load_psf", "load_stinytim_24", "pixel_integrated"]

PSF_TEMPERATURES_K = (10, 25, 50, 75, 100, 3000)
# the flux calibrators' temperature per band: stars at 24 and 70 um; at 160 um the near-IR leak
# adds a ghost several times a star's photosphere, so the SSC calibrated on asteroids [S07],
# thermal sources whose 160 um PRF is that of any source colder than a few hundred K
CALIBRATOR_TEMPERATURE_K = {24: 3000.0, 70: 3000.0, 160: 100.0}
EMPIRICAL_24_SCALE = 1.2   # arcsec per sample of the GOODS-S PSF (shared/data/real/MANIFEST.md)


class PRF:
    """Flux fraction of a point source that falls in a detector pixel.

    Parameters
    ----------
    psf : 2-D array
        Oversampled PSF (any normalisation; it is normalised to sum 1).
    psf_scale_arcsec : float
        Size of one PSF sample, arcsec.
    pixel_arcsec : float
        Size of a detector pixel, arcsec.
    """

    def __init__(self, psf: np.ndarray, *, psf_scale_arcsec: float, pixel_arcsec: float):
        psf = np.asarray(psf, dtype=float)
        psf = psf / psf.sum()
        self.ratio = pixel_arcsec / psf_scale_arcsec          # PSF samples per detector pixel
        cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
        self.center = (cy + 0.5, cx + 0.5)                     # sample-edge coordinates of the peak
        integral = np.zeros((psf.shape[0] + 1, psf.shape[1] + 1))
        integral[1:, 1:] = psf.cumsum(0).cumsum(1)
        self._integral = integral

    def _cumulative(self, y, x):
        """Integral image at edge coordinates (y, x) in PSF samples (clamped outside)."""
        ny, nx = self._integral.shape
        yc = np.clip(y, 0, ny - 1)
        xc = np.clip(x, 0, nx - 1)
        return ndimage.map_coordinates(self._integral, [yc, xc], order=1, mode="nearest")

    def __call__(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Fraction of the flux in a pixel whose centre is (dy, dx) detector pixels from the source."""
        dy = np.asarray(dy, dtype=float)
        dx = np.asarray(dx, dtype=float)
        h = 0.5 * self.ratio
        y = self.center[0] + dy * self.ratio
        x = self.center[1] + dx * self.ratio
        return (self._cumulative(y + h, x + h) - self._cumulative(y - h, x + h)
                - self._cumulative(y + h, x - h) + self._cumulative(y - h, x - h))

    @property
    def radius_pix(self) -> float:
        """Half-size of the PSF image in detector pixels."""
        return 0.5 * (self._integral.shape[0] - 1) / self.ratio


@lru_cache(maxsize=16)
def load_prf(band: int, temperature_k: float, pixel_arcsec: float) -> PRF:
    """PRF of ``band`` for the shipped PSF nearest to ``temperature_k``.

    At 24 um the empirical PSF from real data (GOODS-S, 1.2"/px) is used for every colour.
    """
    if int(band) == 24:
        path = resources.files("data") / "psf" / "mips_24_empirical_GOODS-S.fits"
        with fits.open(str(path)) as hdul:
            return PRF(np.array(hdul[0].data, dtype=float), psf_scale_arcsec=EMPIRICAL_24_SCALE,
                       pixel_arcsec=pixel_arcsec)
    t = min(PSF_TEMPERATURES_K, key=lambda tk: abs(np.log(tk) - np.log(max(temperature_k, 1.0))))
    path = resources.files("data") / "psf" / f"mips_{int(band)}_{t}K.fits"
    with fits.open(str(path)) as hdul:
        psf = np.array(hdul[0].data, dtype=float)
        scale = float(hdul[0].header["PIXSCALE"])
    return PRF(psf, psf_scale_arcsec=scale, pixel_arcsec=pixel_arcsec)


@lru_cache(maxsize=16)
def _load_psf_cached(band: int, temperature_k: float) -> tuple[np.ndarray, float]:
    if band == 24:
        path = resources.files("data") / "psf" / "mips_24_empirical_GOODS-S.fits"
        with fits.open(str(path)) as hdul:
            psf, scale = np.array(hdul[0].data, dtype=float), EMPIRICAL_24_SCALE
    else:
        t = min(PSF_TEMPERATURES_K, key=lambda tk: abs(np.log(tk) - np.log(max(temperature_k, 1.0))))
        path = resources.files("data") / "psf" / f"mips_{band}_{t}K.fits"
        with fits.open(str(path)) as hdul:
            psf, scale = np.array(hdul[0].data, dtype=float), float(hdul[0].header["PIXSCALE"])
    psf = psf / psf.sum()
    psf.setflags(write=False)
    return psf, scale


def load_psf(band: int, temperature_k: float) -> tuple[np.ndarray, float]:
    """The oversampled PSF image of ``band`` (sum 1, read-only) and its sample size in arcsec.

    The same choice as :func:`load_prf`: the shipped STinyTim PSF nearest in log temperature at 70
    and 160 um, the empirical GOODS-S PSF at 24 um.  Its centre is its brightest sample.
    """
    return _load_psf_cached(int(band), float(temperature_k))


# photon-weighted mean wavelength of the 25 K blackbody of the shipped STinyTim 24 um PSF through the
# MIPS 24 um bandpass (calibration.photometric.mean_photon_wavelength_um(24, temperature=25.0))
STINYTIM_24_WAVELENGTH_UM = 27.1689


@lru_cache(maxsize=1)
def _stinytim_24() -> tuple[np.ndarray, float, float]:
    path = resources.files("data") / "psf" / "mips_24_stinytim_25K.fits.gz"
    with fits.open(str(path)) as hdul:
        psf = np.array(hdul[0].data, dtype=float)
        scale, enclosed = float(hdul[0].header["PIXSCALE"]), float(hdul[0].header["ENCLOSED"])
    psf *= enclosed / psf.sum()
    psf.setflags(write=False)
    return psf, scale, enclosed


def load_stinytim_24(wavelength_um: float = STINYTIM_24_WAVELENGTH_UM) -> tuple[np.ndarray, float]:
    """The STinyTim 24 um PSF (Aniano et al. 2011), to +-120", scaled to another mean wavelength.

    The shipped model is for a 25 K blackbody (mean photon wavelength 27.17 um).  A diffraction
    pattern scales with wavelength, so a source whose photons have mean wavelength ``wavelength_um``
    gets the same image with its angular scale multiplied by ``wavelength_um / 27.17`` (3000 K:
    23.37 um, a factor 0.860; this moves the model's Airy rings onto those of the empirical GOODS-S
    PSF and reproduces the Handbook's 10^4 K aperture corrections).

    Returns
    -------
    psf : 2-D array
        Flux per sample (read-only); it sums to the fraction of the light within the image (0.992).
    scale : float
        Sample size, arcsec.
    """
    psf, scale, _ = _stinytim_24()
    return psf, scale * float(wavelength_um) / STINYTIM_24_WAVELENGTH_UM


def pixel_integrated(psf: np.ndarray, scale_arcsec: float, pixel_arcsec: float) -> np.ndarray:
    """The PSF integrated over a square detector pixel centred on each of its samples.

    This is the image a point source makes in a detector's pixels (the PRF), sampled finely: the same
    integral-image construction as :class:`PRF`, per unit sample area, so it sums to ``psf.sum()``
    less what the pixel carries beyond the image edge.
    """
    prf = PRF(psf, psf_scale_arcsec=scale_arcsec, pixel_arcsec=pixel_arcsec)
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    dy = (np.arange(psf.shape[0]) - cy) * scale_arcsec / pixel_arcsec
    dx = (np.arange(psf.shape[1]) - cx) * scale_arcsec / pixel_arcsec
    out = prf(dy[:, None] + 0 * dx[None, :], 0 * dy[:, None] + dx[None, :])
    return out * float(np.sum(psf)) * (scale_arcsec / pixel_arcsec) ** 2
