"""Photometric calibration chain for MIPS point sources (public API).

Units
-----
MIPS images are in MJy/sr.  A pixel of side ``p`` arcsec subtends ``(p / 206264.806...)^2`` sr, so one
MJy/sr in that pixel is ``1e12 * (p * pi / 648000)^2`` uJy (:func:`ujy_per_mjysr`; the Handbook's
"multiply by 23.5045 to get uJy/arcsec^2", MIPS Instrument Handbook v3 section 4.3.1,
https://irsa.ipac.caltech.edu/data/SPITZER/docs/mips/mipsinstrumenthandbook/48/).

Aperture corrections
--------------------
Multiplicative: total flux = (aperture sum - sky median x aperture area) x correction.  They are
curves of growth of the PSFs shipped in ``data/psf`` (see :func:`calibration.psf.load_psf`): the
fraction of the PSF inside the aperture, minus the PSF's own light in the sky annulus (its median
surface brightness times the aperture area, which the sky subtraction removes along with the sky).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .psf import CALIBRATOR_TEMPERATURE_K, load_psf

__all__ = ["BANDS", "aperture_correction", "ujy_per_mjysr"]

BANDS = (24, 70, 160)
ARCSEC_PER_RADIAN = 648000.0 / np.pi


def _check_band(band) -> int:
    """``band`` as an int, or a ValueError naming the valid bands."""
    try:
        b = int(band)
    except (TypeError, ValueError):
        b = None
    if b not in BANDS or float(band) != b:
        raise ValueError(f"band {band!r} is not a MIPS band; use one of {BANDS} (um)")
    return b


def ujy_per_mjysr(pixel_arcsec: float) -> float:
    """uJy in one pixel per MJy/sr of surface brightness.

    Parameters
    ----------
    pixel_arcsec : float
        Side of a square pixel, arcsec (2.45 for the 24 um mosaics, 4.0 and 8.0 for 70 and 160 um).

    Returns
    -------
    float
        ``1e12 * (pixel_arcsec / 206264.806)^2``: 141.085, 376.071 and 1504.28 for 2.45, 4.0 and 8.0".
    """
    p = float(pixel_arcsec)
    if not np.isfinite(p) or p <= 0:
        raise ValueError(f"pixel size {pixel_arcsec!r} arcsec must be positive and finite")
    return 1e12 * (p / ARCSEC_PER_RADIAN) ** 2


@lru_cache(maxsize=256)
def _psf_fraction(band: int, temperature_k: float, radius_arcsec: float,
                  annulus_arcsec: tuple[float, float] | None) -> float:
    """Fraction of a point source's flux an annulus-subtracted aperture measures."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    psf, scale = load_psf(band, temperature_k)
    half = 0.5 * min(psf.shape) * scale
    outer = radius_arcsec if annulus_arcsec is None else annulus_arcsec[1]
    if outer > half:
        raise ValueError(f"radius {outer}\" reaches beyond the {band} um PSF model ({half:.1f}\" half-size)")
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    aperture = CircularAperture((cx, cy), radius_arcsec / scale)
    fraction = float(ApertureStats(psf, aperture, sum_method="exact").sum)
    if annulus_arcsec is not None:
        annulus = CircularAnnulus((cx, cy), annulus_arcsec[0] / scale, annulus_arcsec[1] / scale)
        fraction -= float(ApertureStats(psf, annulus).median) * aperture.area
    return fraction


def aperture_correction(band: int, radius_arcsec: float, *,
                        annulus_arcsec: tuple[float, float] | None = None,
                        temperature: float | None = None) -> float:
    """Multiplicative aperture correction from the PSF's curve of growth.

    Parameters
    ----------
    band : int
        24, 70 or 160 (um).
    radius_arcsec : float
        Aperture radius, arcsec.
    annulus_arcsec : (float, float), optional
        Inner and outer radius of the sky annulus, arcsec; the sky is its median.  The PSF light in
        the annulus is subtracted with the sky, and the correction puts it back.  None: no sky.
    temperature : float, optional
        Source blackbody temperature, K, choosing the PSF (70 and 160 um; nearest shipped one).
        Default: the flux calibrators' (:data:`calibration.psf.CALIBRATOR_TEMPERATURE_K`).

    Returns
    -------
    float
        ``total flux / (aperture sum - sky median x aperture area)`` for a point source.
    """
    b = _check_band(band)
    r = float(radius_arcsec)
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"aperture radius {radius_arcsec!r} arcsec must be positive and finite")
    annulus = None
    if annulus_arcsec is not None:
        r_in, r_out = (float(v) for v in annulus_arcsec)
        if not (np.isfinite(r_in) and np.isfinite(r_out)) or r_in < r or r_out <= r_in:
            raise ValueError(f"sky annulus {tuple(annulus_arcsec)!r} arcsec must satisfy "
                             f"radius ({r}) <= inner < outer")
        annulus = (r_in, r_out)
    t = CALIBRATOR_TEMPERATURE_K[b] if temperature is None else float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature {temperature!r} K must be positive and finite")
    fraction = _psf_fraction(b, t, r, annulus)
    if fraction <= 0:
        raise ValueError(f"aperture r={r}\" with annulus {annulus} measures no flux of the {b} um PSF")
    return 1.0 / fraction
