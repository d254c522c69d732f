"""Photometric calibration chain for MIPS point sources (public API).

A calibrated MIPS image gives, for each source, the flux density a 10^4 K blackbody of the same
signal would have at the band's reference wavelength.  Turning that into a physical flux density
takes four steps, each a function here:

1. **Units** (:func:`ujy_per_mjysr`).  Images are in MJy/sr; a square pixel of side ``p`` arcsec
   subtends ``(p pi / 648000)^2`` sr, so 1 MJy/sr is ``23.50443 p^2`` uJy per pixel (141.085, 376.071,
   1504.28 for the 2.45", 4" and 8" mosaic pixels).  [HB 4.3.1: "multiply by 23.5045"]
2. **Aperture correction** (:func:`aperture_correction`), multiplicative: total flux =
   (aperture sum - annulus median x aperture area) x correction.  It is the inverse of the fraction
   of a point source's light that this measures, from the curve of growth of the image PSF: the
   optical PSF integrated over a detector pixel (the PRF, sampled finely).  The annulus holds PSF
   light too; its median is subtracted with the sky, and the correction restores it.
3. **Colour correction** (:func:`colour_correction`): ``F_true(lambda_0) = F_quoted / K``.
4. **Magnitudes** (:func:`vega_magnitude`, :func:`flux_from_vega_magnitude`) from the Vega
   zero points :data:`VEGA_ZERO_POINT_JY`.

Colour-correction convention (the SSC's, as the Handbook defines it)
--------------------------------------------------------------------
The bandpasses ``data/filters/MIPS{1,2,3}.txt`` give R(lambda), the response per photon.  The
Handbook [HB 4.3.5] calibrates on a 10^4 K blackbody (stars) and quotes the flux density at the
reference wavelengths 23.68, 71.42 and 155.9 um, which are ``lambda_0 = int R dlambda / int
(R / lambda) dlambda`` of those curves (23.675, 71.419, 155.894).  It writes the correction with
``R_lambda = R / lambda`` as the weight::

    K = int (F_nu / F_nu(nu_0)) (nu / nu_0)^-1 R_lambda dnu
        / int (B_nu(10^4 K) / B_nu(nu_0, 10^4 K)) (nu / nu_0)^-1 R_lambda dnu

Since ``R_lambda (nu / nu_0)^-1`` is proportional to R itself, this is ``K = int (F_nu / F_nu0) R
dnu / int (B_nu / B_nu0) R dnu``: the curves weighted as an energy response.  (A photon counter
would weight by ``R / nu``; that gives K larger by 0.002-0.09 at 1000-50 K and does *not* reproduce
the Handbook's table, which this convention does to 0.003 -- see tests/test_photometric.py.)  So
K = 1 for a 10^4 K blackbody; a ``nu F_nu = const`` source (alpha = -1) has K = 0.961, 0.918,
0.959 at 24, 70, 160 um.  The per-photon response is used where physics needs it: the mean photon
wavelength that sets the 24 um PSF's angular scale (:func:`mean_photon_wavelength_um`).

Aperture-correction PSFs
------------------------
``psf="model"`` (default, for real data): at 70 and 160 um the STinyTim PSF of the shipped
temperature nearest the source's; at 24 um the STinyTim PSF of Aniano et al. (2011) (25 K
blackbody, to +-120", 0.8% of the light beyond) with its angular scale multiplied by
``mean_photon_wavelength_um(24, T) / 27.17``.  That scaling puts the model's Airy rings on those
of the empirical GOODS-S PSF (best fit for that PSF's red sources: 0.89; stars: 0.860) and gives
the Handbook's 10^4 K table 4.13 to 1% at r >= 7" (1.619 at r = 7" with a 20-32" annulus, HB
1.61).  The empirical GOODS-S PSF itself is only 76" across and normalised within it, which misses
the 5-6% of the light beyond 38" (1.53 at r = 7").  ``psf="simulator"``: what :mod:`mipssim` renders
(the PRFs of :func:`calibration.psf.load_prf`: GOODS-S at 24 um), for photometry of simulated data.

References
----------
HB: MIPS Instrument Handbook v3 (2011), https://irsa.ipac.caltech.edu/data/SPITZER/docs/mips/
mipsinstrumenthandbook/ -- 4.3.1 units (/48/), 4.3.4 aperture corrections (/50/), 4.3.5 colour
corrections (/51/).  Bandpasses: data/filters/PROVENANCE.md; PSFs: data/psf/PROVENANCE.md.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.integrate import trapezoid

from .instrument import band_spec
from .psf import CALIBRATOR_TEMPERATURE_K, load_psf, load_stinytim_24, pixel_integrated

__all__ = ["BANDS", "CALIBRATION_APERTURES", "REFERENCE_TEMPERATURE_K", "REFERENCE_WAVELENGTH_UM",
           "VEGA_ZERO_POINT_JY", "aperture_correction", "bandpass", "colour_correction", "flux_from_vega_magnitude",
           "mean_photon_wavelength_um", "ujy_per_mjysr", "vega_magnitude"]

BANDS = (24, 70, 160)
ARCSEC_PER_RADIAN = 648000.0 / np.pi
REFERENCE_WAVELENGTH_UM = {24: 23.68, 70: 71.42, 160: 155.9}   # [HB 4.3.5 /51]
REFERENCE_TEMPERATURE_K = 1.0e4                               # calibrators: a 10^4 K blackbody [HB 4.3.5]
# zero-magnitude flux densities [HB, zero points as quoted in issue 15; shared/docs/mips-facts.md
# marks them UNCONFIRMED; the CALSPEC Vega model (Bohlin 2014) through the bandpasses, quoted in this
# convention, gives 7.03, 0.765, 0.157 Jy: 2.0, 1.6, 1.2% lower]
VEGA_ZERO_POINT_JY = {24: 7.17, 70: 0.778, 160: 0.159}
PSF_KINDS = ("model", "simulator")
# the flux calibrators' apertures, band: (radius, sky annulus) arcsec, and the published correction
# [SSC http://ssc.spitzer.caltech.edu/mips/apercorr/; 160 um radius as printed there]
CALIBRATION_APERTURES = {24: (35.0, (40.0, 50.0), 1.082), 70: (35.0, (39.0, 65.0), 1.22),
                         160: (24.0, (64.0, 128.0), 2.603)}
_HC_OVER_K_UM_K = 14387.7688                                  # h c / k_B, um K


def _check_band(band) -> int:
    """``band`` as an int, or a ValueError naming the valid bands."""
    try:
        b = int(band)
        ok = b in BANDS and float(band) == b
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"band {band!r} is not a MIPS band; use one of {BANDS} (um)")
    return b


def _check_spectrum(temperature, alpha) -> tuple[float | None, float | None]:
    """Exactly one of a blackbody temperature (K, > 0) or a power-law index (finite)."""
    if (temperature is None) == (alpha is None):
        raise ValueError("give exactly one of temperature (K, blackbody) or alpha (F_nu ~ nu^alpha)")
    if temperature is not None:
        t = float(temperature)
        if not np.isfinite(t) or t <= 0:
            raise ValueError(f"temperature {temperature!r} K must be positive and finite")
        return t, None
    a = float(alpha)
    if not np.isfinite(a):
        raise ValueError(f"spectral index alpha {alpha!r} must be finite")
    return None, a


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


# --------------------------------------------------------------------------- bandpasses and colours

@lru_cache(maxsize=3)
def bandpass(band: int) -> tuple[np.ndarray, np.ndarray]:
    """The SSC bandpass of ``band``: wavelength (um, increasing) and response per photon (read-only)."""
    b = _check_band(band)
    path = resources.files("data") / "filters" / f"MIPS{BANDS.index(b) + 1}.txt"
    table = np.loadtxt(str(path), comments="#")
    wavelength, response = table[:, 0], table[:, 1]
    order = np.argsort(wavelength)
    wavelength, response = wavelength[order], response[order]
    wavelength.setflags(write=False)
    response.setflags(write=False)
    return wavelength, response


def _spectrum_ratio(wavelength_um: np.ndarray, reference_um: float, temperature: float | None,
                    alpha: float | None) -> np.ndarray:
    """``F_nu(lambda) / F_nu(reference)`` of a blackbody or a power law, overflow-free."""
    if alpha is not None:
        return (reference_um / wavelength_um) ** alpha
    x = _HC_OVER_K_UM_K / (wavelength_um * temperature)
    x0 = _HC_OVER_K_UM_K / (reference_um * temperature)
    # B_nu ~ nu^3 e^-x / (1 - e^-x)
    return (reference_um / wavelength_um) ** 3 * np.exp(x0 - x) * (-np.expm1(-x0)) / (-np.expm1(-x))


def _trapezoid_nu(wavelength_um: np.ndarray, y: np.ndarray) -> float:
    """``int y dnu`` over a wavelength grid, nu in units of c / um."""
    nu = 1.0 / wavelength_um
    return float(-trapezoid(y, nu))


def colour_correction(band: int, *, temperature: float | None = None,
                      alpha: float | None = None) -> float:
    """Colour correction K of a blackbody or power-law source: ``F_true(lambda_0) = F_quoted / K``.

    Parameters
    ----------
    band : int
        24, 70 or 160 (um); the flux is quoted at :data:`REFERENCE_WAVELENGTH_UM`.
    temperature : float, optional
        Blackbody temperature, K.
    alpha : float, optional
        Power-law index, ``F_nu ~ nu^alpha`` (``nu F_nu = const`` is ``alpha = -1``).

    Returns
    -------
    float
        K in the SSC convention (module docstring): 1 for a 10^4 K blackbody.

    Raises
    ------
    ValueError
        Unknown band, or not exactly one of ``temperature`` and ``alpha``, or a non-physical value.
    """
    b = _check_band(band)
    t, a = _check_spectrum(temperature, alpha)
    wavelength, response = bandpass(b)
    lam0 = REFERENCE_WAVELENGTH_UM[b]
    source = _trapezoid_nu(wavelength, _spectrum_ratio(wavelength, lam0, t, a) * response)
    reference = _trapezoid_nu(wavelength, _spectrum_ratio(wavelength, lam0, REFERENCE_TEMPERATURE_K,
                                                          None) * response)
    return source / reference


def mean_photon_wavelength_um(band: int, *, temperature: float | None = None,
                              alpha: float | None = None) -> float:
    """Mean wavelength of the detected photons (per-photon response), um.

    The photon rate per unit wavelength is ``R(lambda) F_nu / lambda`` (up to constants); this is
    its mean wavelength, which sets the angular scale of a diffraction-limited PSF.  A 3000 K
    blackbody gives 23.37 um at 24 um, a 25 K one 27.17 um.
    """
    b = _check_band(band)
    t, a = _check_spectrum(temperature, alpha)
    wavelength, response = bandpass(b)
    rate = response * _spectrum_ratio(wavelength, REFERENCE_WAVELENGTH_UM[b], t, a) / wavelength
    return float(trapezoid(wavelength * rate, wavelength) / trapezoid(rate, wavelength))


# --------------------------------------------------------------------------- aperture corrections

@lru_cache(maxsize=32)
def _image_psf(band: int, temperature_k: float, psf: str) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The image PSF (optical PSF integrated over a detector pixel), its sample size and centre (x, y).

    It sums to the fraction of the source's light that falls within it.
    """
    if psf == "model" and band == 24:
        optical, scale = load_stinytim_24(mean_photon_wavelength_um(24, temperature=temperature_k))
    else:
        optical, scale = load_psf(band, temperature_k)
    image = pixel_integrated(optical, scale, band_spec(band).pixel_arcsec)
    image.setflags(write=False)
    return image, scale, _peak_centre(image)


def _peak_centre(image: np.ndarray) -> tuple[float, float]:
    """(x, y) of the PSF's peak, refined by a quadratic fit to the 5x5 samples around the maximum."""
    from photutils.centroids import centroid_quadratic

    cy, cx = np.unravel_index(np.argmax(image), image.shape)
    x, y = centroid_quadratic(image[cy - 3:cy + 4, cx - 3:cx + 4], fit_boxsize=5)
    return float(cx - 3 + x), float(cy - 3 + y)


@lru_cache(maxsize=1024)
def _measured_fraction(band: int, temperature_k: float, psf: str, radius_arcsec: float,
                       annulus_arcsec: tuple[float, float] | None) -> float:
    """Fraction of a point source's flux an annulus-subtracted aperture measures."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    image, scale, centre = _image_psf(band, temperature_k, psf)
    outer = radius_arcsec if annulus_arcsec is None else annulus_arcsec[1]
    reach = scale * min(centre[0], centre[1], image.shape[1] - 1 - centre[0], image.shape[0] - 1 - centre[1])
    if outer > reach:
        raise ValueError(f"radius {outer}\" reaches beyond the {band} um PSF model ({reach:.1f}\" from "
                         f"its centre)")
    aperture = CircularAperture(centre, radius_arcsec / scale)
    fraction = float(ApertureStats(image, aperture, sum_method="exact").sum)
    if annulus_arcsec is not None:
        annulus = CircularAnnulus(centre, annulus_arcsec[0] / scale, annulus_arcsec[1] / scale)
        fraction -= float(ApertureStats(image, annulus).median) * aperture.area
    return fraction


def aperture_correction(band: int, radius_arcsec: float, *,
                        annulus_arcsec: tuple[float, float] | None = None,
                        temperature: float | None = None, psf: str = "model") -> float:
    """Multiplicative aperture correction of a point source, from the PSF's curve of growth.

    Parameters
    ----------
    band : int
        24, 70 or 160 (um).
    radius_arcsec : float
        Aperture radius, arcsec.
    annulus_arcsec : (float, float), optional
        Inner and outer radius of the sky annulus, arcsec (inner >= radius); the sky is its median.
        The PSF light in the annulus is subtracted with the sky, and the correction puts it back.
        None: no sky subtraction.
    temperature : float, optional
        Source blackbody temperature, K: scales the 24 um model PSF continuously, picks the nearest
        shipped PSF at 70 and 160 um.  Default: the flux calibrators'
        (:data:`calibration.psf.CALIBRATOR_TEMPERATURE_K`).
    psf : {"model", "simulator"}
        "model" for real data; "simulator" for data made by :mod:`mipssim` (module docstring).

    Returns
    -------
    float
        ``total flux / (aperture sum - annulus median x aperture area)`` for a point source centred
        in the aperture.
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
    if psf not in PSF_KINDS:
        raise ValueError(f"psf {psf!r} is not one of {PSF_KINDS}")
    fraction = _measured_fraction(b, t, psf, r, annulus)
    if fraction <= 0:
        raise ValueError(f"aperture r={r}\" with annulus {annulus} measures no flux of the {b} um PSF")
    return 1.0 / fraction


# --------------------------------------------------------------------------- magnitudes

def _as_jy(flux_jy) -> np.ndarray:
    """Flux densities in Jy from numbers (Jy) or an astropy Quantity of any spectral flux density."""
    if hasattr(flux_jy, "unit"):
        import astropy.units as u
        try:
            return np.asarray(flux_jy.to_value(u.Jy), dtype=float)
        except u.UnitConversionError:
            raise ValueError(f"flux in {flux_jy.unit} is not a flux density (Jy)") from None
    return np.asarray(flux_jy, dtype=float)


def vega_magnitude(flux_jy, band: int):
    """Vega magnitude ``-2.5 log10(F / F_0)`` of flux densities.

    Parameters
    ----------
    flux_jy : float, array or astropy Quantity
        Flux density at the reference wavelength (Jy if plain numbers); non-positive -> NaN.
    band : int
        24, 70 or 160 (um); ``F_0`` is :data:`VEGA_ZERO_POINT_JY`.

    Returns
    -------
    float or ndarray
        Magnitudes (a float for a scalar input).
    """
    zero = VEGA_ZERO_POINT_JY[_check_band(band)]
    flux = _as_jy(flux_jy)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0) / zero), np.nan)
    return float(mag) if mag.ndim == 0 else mag


def flux_from_vega_magnitude(mag, band: int):
    """Flux density in Jy of Vega magnitudes: ``F_0 10^(-mag / 2.5)``.

    Parameters
    ----------
    mag : float, array or astropy Quantity (mag or dimensionless)
        Vega magnitudes.
    band : int
        24, 70 or 160 (um).

    Returns
    -------
    float or ndarray
        Jy (a float for a scalar input).
    """
    zero = VEGA_ZERO_POINT_JY[_check_band(band)]
    if hasattr(mag, "unit"):
        import astropy.units as u
        if mag.unit not in (u.mag, u.dimensionless_unscaled):
            raise ValueError(f"magnitudes in {mag.unit} are not Vega magnitudes")
        mag = mag.value
    flux = zero * 10.0 ** (-np.asarray(mag, dtype=float) / 2.5)
    return float(flux) if flux.ndim == 0 else flux
