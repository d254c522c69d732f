"""FLUXCONV from standard stars: aperture photometry on BCDs and an emcee posterior.

A star of known flux ``F`` (Jy) lands on BCDs made with ``FLUXCONV = 1``
(values in "MJy/sr per FLUXCONV unit").  Each BCD gives an aperture sum minus
the annulus mean, times the pixel solid angle: ``m_i`` (Jy per FLUXCONV unit),
divided by the fraction ``f_i`` of a point source's flux that the same
estimator returns on the PRF at the star's sub-pixel position (the aperture
correction, computed with the same exact-overlap weights and the same masked
pixels, so the ratio is exact for a source that follows the PRF).  Then
``F = FLUXCONV * m_i / f_i``.

The estimator is linear in the data (a weighted mean for the background, not
a median), so star light in the annulus is corrected exactly by ``f_i``.
Geometry comes from photutils (exact aperture overlaps); the PRF from
:mod:`calibration.psf`, the one the simulator renders with -- a real PSF's
mismatch with its model is not represented.

The BCDs between the same stim flashes share those flashes' noise, so the
ratios ``F f_i / m_i`` are combined per block of consecutive BCDs first; the
posterior of ``FLUXCONV`` and of an extra fractional scatter ``jitter``
between blocks is sampled with emcee (:mod:`.posterior`): ``ratio_b ~
N(FLUXCONV, sigma_b^2 + (jitter FLUXCONV)^2)``, flat priors on ``FLUXCONV >
0`` and on ``log jitter`` in [-12, -1.5].  The flat field's per-pixel errors
are the same in every BCD and do not average down over blocks: their effect
on the mean (:func:`persistent_error`) is added to the posterior's width, and so
is the nonlinearity coefficient's: a star's pixels climb higher than the sky's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.table import QTable
from photutils.aperture import CircularAnnulus, CircularAperture

from calibration.instrument import band_spec
from calibration.psf import CALIBRATOR_TEMPERATURE_K, load_prf

from .posterior import Posterior, sample_posterior

__all__ = ["APERTURES_PIX", "StarMeasurement", "measure_star", "fit_prf", "fluxconv_posterior",
           "persistent_error"]

# aperture radius, annulus inner and outer radii, detector pixels (UNCONFIRMED choice)
APERTURES_PIX = {24: (3.0, 8.0, 13.0), 70: (1.6, 3.0, 5.0), 160: (1.2, 2.5, 4.0)}


@dataclass(frozen=True)
class StarMeasurement:
    """One BCD's measurement of a star.

    ``value`` = m / f (Jy per FLUXCONV unit) and its 1-sigma ``error``;
    ``influence`` (NY, NX): d value / value per unit relative change of each
    pixel's data, i.e. how a flat-field error in a pixel moves this measurement.
    """

    value: float
    error: float
    aperture_correction: float
    x: float
    y: float
    influence: np.ndarray


def _weights(shape, x: float, y: float, radii) -> tuple[np.ndarray, np.ndarray]:
    """Exact-overlap weights of the aperture and of the annulus centred at (x, y) (0-based pixels)."""
    r, r_in, r_out = radii
    ap = CircularAperture((x, y), r).to_mask(method="exact").to_image(shape)
    ann = CircularAnnulus((x, y), r_in, r_out).to_mask(method="exact").to_image(shape)
    return tuple(np.zeros(shape) if w is None else np.nan_to_num(w) for w in (ap, ann))


def _estimate(data, var, w_ap, w_ann):
    """Aperture sum minus area x annulus weighted mean, and its variance."""
    area = w_ap.sum()
    k = area / w_ann.sum()
    value = (w_ap * data).sum() - k * (w_ann * data).sum()
    return value, (w_ap ** 2 * var).sum() + k ** 2 * (w_ann ** 2 * var).sum()


def measure_star(image: np.ndarray, error: np.ndarray, good: np.ndarray, x: float, y: float, *,
                 band: int, radii: tuple[float, float, float] | None = None,
                 temperature_k: float | None = None) -> StarMeasurement | None:
    """Photometry of a point source at pixel (x, y) (0-based) of a BCD: aperture photometry,
    or at 160 um (two usable rows either side of a blank one: no aperture fits) a PRF fit
    (:func:`fit_prf`).

    Parameters
    ----------
    image, error : (NY, NX) arrays
        BCD and its 1-sigma uncertainty (any surface-brightness unit; the result
        is that unit times sr, times 1e6, i.e. Jy for MJy/sr).
    good : (NY, NX) bool
        Usable pixels; others are left out of both aperture and annulus (and of
        the aperture correction).
    band : int
        Selects the PRF and the default radii (:data:`APERTURES_PIX`).

    Returns
    -------
    StarMeasurement, or None when the aperture is not fully on good pixels or the
    annulus has fewer than 8 good pixels.
    """
    if band == 160:
        return fit_prf(image, error, good, x, y, band=band, temperature_k=temperature_k)
    radii = radii or APERTURES_PIX[band]
    spec = band_spec(band)
    w_ap, w_ann = _weights(image.shape, x, y, radii)
    full_ap = CircularAperture((x, y), radii[0]).area
    good = good & np.isfinite(image) & np.isfinite(error)
    w_ap, w_ann = w_ap * good, w_ann * good
    if w_ap.sum() < 0.999 * full_ap or (w_ann > 0.5).sum() < 8:
        return None
    prf = load_prf(band, temperature_k or CALIBRATOR_TEMPERATURE_K[band], spec.pixel_arcsec)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    model = prf(yy - y, xx - x)
    frac, _ = _estimate(model, 0 * model, w_ap, w_ann)
    data = np.where(good, image, 0.0)
    value, var = _estimate(data, np.where(good, error ** 2, 0.0), w_ap, w_ann)
    coeff = w_ap - w_ap.sum() / w_ann.sum() * w_ann
    scale = spec.pixel_sr * 1e6 / frac
    return StarMeasurement(value * scale, np.sqrt(var) * scale, frac, x, y, coeff * data / value)


def fit_prf(image: np.ndarray, error: np.ndarray, good: np.ndarray, x: float, y: float, *,
            band: int, radius_pix: float = 4.0, min_pixels: int = 8,
            temperature_k: float | None = None) -> StarMeasurement | None:
    """Flux of a point source at (x, y) by a weighted least-squares fit of ``A * PRF + B``.

    The fit uses the good pixels within ``radius_pix``; ``A`` is the flux (image
    unit x sr x 1e6: Jy for MJy/sr), its error from the fit's covariance.
    ``aperture_correction`` records the PRF's flux fraction on the fitted pixels.
    """
    spec = band_spec(band)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    use = (good & np.isfinite(image) & np.isfinite(error) & (error > 0)
           & (np.hypot(yy - y, xx - x) <= radius_pix))
    if use.sum() < min_pixels:
        return None
    prf = load_prf(band, temperature_k or CALIBRATOR_TEMPERATURE_K[band],
                   spec.pixel_arcsec)(yy[use] - y, xx[use] - x)
    if prf.sum() < 0.3:
        return None
    w = 1.0 / error[use]
    design = np.c_[prf / (spec.pixel_sr * 1e6), np.ones(use.sum())] * w[:, None]
    coef, *_ = np.linalg.lstsq(design, image[use] * w, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    influence = np.zeros(image.shape)
    influence[use] = (cov @ design.T)[0] * w * image[use] / coef[0]
    return StarMeasurement(float(coef[0]), float(np.sqrt(cov[0, 0])), float(prf.sum()), x, y,
                           influence)


def fluxconv_posterior(measurements: QTable, *, seed: int, chains=None,
                       group: str = "fluxconv") -> Posterior:
    """Posterior of ``fluxconv`` (and ``log_jitter``) from star measurements.

    ``measurements`` has columns ``flux`` (the star's known flux), ``value`` and
    ``error`` (the BCD measurements m / f and their errors), all in Jy (per
    FLUXCONV unit for the last two), and ``block``: BCDs of one block (one AOR's
    BCDs between the same few stim flashes) share the flashes' noise, which no
    per-BCD error can average down.  So each block's measurements are first
    combined, and the fit runs over blocks, whose scatter beyond their errors
    the ``jitter`` (relative) absorbs.

    The combination is linear in the measurements: ``s = <value / flux>``
    weighted by its inverse variance ``(flux / error)^2``, whose model is
    ``1 / fluxconv``; weights that do not hold the measured value do not favour
    blocks that came out high.  (This replaced a mean of ``flux / value`` whose
    weights were off by the star's flux squared, which counted the faint stars
    as much as the bright: 0.30 % instead of 0.18 % over 100 simulated 70 um
    campaigns.)
    """
    f = np.asarray(measurements["flux"].to_value(u.Jy), dtype=float)
    v = np.asarray(measurements["value"].to_value(u.Jy), dtype=float)
    e = np.asarray(measurements["error"].to_value(u.Jy), dtype=float)
    _, block = np.unique(np.asarray(measurements["block"]), return_inverse=True)
    w = (f / e) ** 2
    sw = np.bincount(block.ravel(), w)
    s, s_err = np.bincount(block.ravel(), w * v / f) / sw, 1.0 / np.sqrt(sw)
    if len(s) < 3:
        raise ValueError(f"star measurements in {len(s)} blocks: FLUXCONV needs 3")
    level = float(np.median(s))

    def log_prob(p):
        fc, lj = p[:, 0:1], p[:, 1:2]
        var = s_err[None, :] ** 2 + (np.exp(lj) * level) ** 2
        with np.errstate(divide="ignore"):
            lp = -0.5 * np.sum((s[None, :] - 1.0 / fc) ** 2 / var + np.log(var), axis=1)
        ok = (p[:, 0] > 0) & (p[:, 1] > -12) & (p[:, 1] < -1.5)
        return np.where(ok, lp, -np.inf)

    guess = 1.0 / level
    spread = max(guess * float(np.std(s)) / level / np.sqrt(len(s)), 1e-4 * guess)
    return sample_posterior(log_prob, [guess, -6.0], [spread, 0.5], names=["fluxconv", "log_jitter"],
                            seed=seed, vectorize=True, nsteps=4000, burn=1000, chains=chains,
                            group=group)


def persistent_error(influences: list[np.ndarray], pixel_err: np.ndarray) -> float:
    """Relative error of the mean of measurements with these ``influence`` maps caused by
    independent per-pixel errors ``pixel_err`` that are the same in every BCD (a flat field's,
    a nonlinearity coefficient's): they do not average down over BCDs, only over the pixels
    the star covered."""
    mean = np.mean(influences, axis=0)
    return float(np.sqrt(np.sum((mean * np.nan_to_num(pixel_err)) ** 2)))
