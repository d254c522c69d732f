"""Point-source detection on a mosaic: a matched filter with the UNC map as the noise.

Method
------
The smooth background (zodiacal light, cirrus) is removed first with photutils' ``Background2D``
(sigma-clipped medians in boxes of ~8 FWHM, median-filtered), so that the filter sees sources on
a zero level.  The matched filter for a point source of PRF ``P`` on pixels with variance
``sigma^2`` is the least-squares flux of a source centred on each pixel,
``F(p) = sum_q P(q - p) d_q / sigma_q^2 / sum_q P(q - p)^2 / sigma_q^2``, whose independent-noise
variance is ``1 / sum_q P^2 / sigma^2``; a resampled mosaic's correlated noise multiplies that by
``kappa = (P/sigma)^T R (P/sigma) / |P/sigma|^2`` (:mod:`.mosaic_prf`), computed for the kernel.
``F / sqrt(var)`` is then a significance map in units of sigma of a point source's flux: a source
of PRF-fit S/N ``s`` peaks at ``s`` (plus noise), so a threshold of ``nsigma`` is a threshold on
the flux S/N, which is what completeness is quoted against.  Peaks above it are found with
photutils' ``find_peaks`` (local maxima in a box of ~1 FWHM) and centroided with a quadratic fit
on the significance map.

Trade-offs: a matched filter finds faint isolated sources at the lowest threshold any linear
detector can (segmentation of the raw image needs more pixels above a lower per-pixel cut), but it
smooths, so two sources closer than ~1.2 FWHM make one peak: the PRF fit's residual pass
(:func:`reprocess.photometry.catalog.measure`) looks for them again.  Detection ignores the
coverage edge beyond requiring 70 % of the filter's weight on valid pixels.
"""
from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import SigmaClip
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning
from photutils.background import Background2D, MedianBackground
from photutils.centroids import centroid_quadratic
from photutils.detection import find_peaks
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import ndimage

from .mosaic_prf import correlated_variance_factor
from .prf_fit import prf_fwhm_pix

__all__ = ["background_map", "detect_sources", "significance_map"]

_MIN_FILTER_WEIGHT = 0.7     # fraction of the filter's weight that must fall on valid pixels


def background_map(image: np.ndarray, valid: np.ndarray, *, box_pix: int) -> np.ndarray:
    """Smooth background (photutils ``Background2D``: 3-sigma-clipped medians in ``box_pix``
    boxes, 3x3 median filter), same unit as ``image``; NaN where there is no data.

    Boxes with more than half their pixels without data are interpolated over; where coverage is
    so patchy that no box qualifies (a 160 um scan map's along-scan gaps), up to 90 %; failing
    that, the clipped median of the whole image.
    """
    box = int(max(8, min(box_pix, min(image.shape) // 2)))
    for exclude in (50.0, 90.0):
        try:
            bkg = Background2D(np.where(valid, image, 0.0), box, coverage_mask=~valid,
                               filter_size=3, sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                               bkg_estimator=MedianBackground(), exclude_percentile=exclude)
            return np.where(valid, bkg.background, np.nan)
        except ValueError:
            continue
    level = float(np.ma.median(SigmaClip(sigma=3.0, maxiters=10)(image[valid])))
    return np.where(valid, level, np.nan)


def _kernel(prf, radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    k = prf(oy.astype(float), ox.astype(float))
    return np.where(oy ** 2 + ox ** 2 <= radius ** 2, k, 0.0)


def significance_map(image: np.ndarray, uncertainty: np.ndarray, *, prf,
                     mask: np.ndarray | None = None, background: np.ndarray | None = None,
                     correlation: np.ndarray | None = None,
                     radius_pix: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter flux and significance of a point source centred on each pixel.

    Parameters
    ----------
    image, uncertainty : (NY, NX) arrays
        Image and its 1-sigma uncertainty (invalid pixels: NaN or non-positive uncertainty).
    prf : callable
        ``prf(dy, dx)``, the flux fraction per pixel (:class:`.mosaic_prf.MosaicPRF`).
    background : array, optional
        Subtracted first (default: none; :func:`detect_sources` passes :func:`background_map`).
    correlation : array, optional
        Noise correlation by pixel offset; default the PRF's ``correlation`` attribute, else none.
    radius_pix : float, optional
        Filter radius; default 1.5 FWHM.

    Returns
    -------
    flux, significance : (NY, NX) arrays
        Least-squares flux (image unit x pixel) and flux / its error; NaN where less than 70 %
        of the filter's weight falls on valid pixels.
    """
    image = np.asarray(image, dtype=float)
    unc = np.asarray(uncertainty, dtype=float)
    valid = np.isfinite(image) & np.isfinite(unc) & (unc > 0)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    if background is not None:
        valid &= np.isfinite(background)
        image = image - np.where(valid, background, 0.0)
    radius = 1.5 * prf_fwhm_pix(prf) if radius_pix is None else float(radius_pix)
    k = _kernel(prf, radius)
    corr = correlation if correlation is not None else getattr(prf, "correlation", None)
    kappa = 1.0 if corr is None else float(correlated_variance_factor(k, np.asarray(corr)))
    w = np.where(valid, 1.0 / np.where(valid, unc, 1.0) ** 2, 0.0)
    num = ndimage.correlate(np.where(valid, image, 0.0) * w, k, mode="constant")
    den = ndimage.correlate(w, k * k, mode="constant")
    weight = ndimage.correlate(valid.astype(float), k * k, mode="constant") / (k * k).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = num / den
        snr = num / np.sqrt(den * kappa)
    bad = (weight < _MIN_FILTER_WEIGHT) | ~(den > 0)
    flux[bad] = np.nan
    snr[bad] = np.nan
    return flux, snr


def detect_sources(image: np.ndarray, uncertainty: np.ndarray, *, prf, nsigma: float = 5.0,
                   wcs=None, mask: np.ndarray | None = None, background_box_pix: int | None = None,
                   subtract_background: bool = True,
                   correlation: np.ndarray | None = None) -> QTable:
    """Point sources above ``nsigma`` in the matched-filter significance map.

    Parameters
    ----------
    image, uncertainty : (NY, NX) arrays
        Mosaic (MJy/sr or any unit) and its 1-sigma uncertainty (the ``UNC`` extension).
    prf : callable
        The image's PRF (:func:`.mosaic_prf.mosaic_prf`).
    nsigma : float
        Threshold on the point-source significance.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image: adds ``ra``, ``dec`` (deg).
    background_box_pix : int, optional
        Box of the background map; default 8 FWHM.
    subtract_background : bool
        Estimate and subtract the smooth background first.

    Returns
    -------
    QTable
        ``id``, ``x``, ``y`` (0-based pixels, quadratic centroid of the significance peak),
        ``x_peak``, ``y_peak`` (its pixel), ``snr`` (peak significance), ``flux_mf`` (matched-filter
        flux there, image unit x pixel) and ``ra``, ``dec`` with a WCS; brightest first.
    """
    image = np.asarray(image, dtype=float)
    unc = np.asarray(uncertainty, dtype=float)
    if image.shape != unc.shape:
        raise ValueError(f"image {image.shape} and uncertainty {unc.shape} shapes differ")
    valid = np.isfinite(image) & np.isfinite(unc) & (unc > 0)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    fwhm = prf_fwhm_pix(prf)
    bkg = None
    if subtract_background and valid.any():
        bkg = background_map(image, valid, box_pix=int(np.ceil(8 * fwhm)) if background_box_pix
                             is None else int(background_box_pix))
    flux, snr = significance_map(image, unc, prf=prf, mask=~valid, background=bkg,
                                 correlation=correlation)
    box = max(3, int(2 * np.floor(fwhm / 2) + 1))
    finite = np.isfinite(snr)
    with warnings.catch_warnings():   # a peak on a coverage edge cannot take a quadratic: its
        warnings.simplefilter("ignore", AstropyUserWarning)     # centroid is NaN -> the peak pixel
        warnings.simplefilter("ignore", NoDetectionsWarning)    # an empty table says it
        peaks = find_peaks(np.where(finite, snr, 0.0), nsigma, box_size=box, mask=~finite,
                           centroid_func=centroid_quadratic) if finite.any() else None
    return _table(peaks, flux, snr, wcs)


def _table(peaks, flux, snr, wcs) -> QTable:
    out = QTable()
    if peaks is None or len(peaks) == 0:
        for name in ("x", "y", "x_peak", "y_peak", "snr", "flux_mf"):
            out[name] = np.zeros(0)
    else:
        xp = np.asarray(peaks["x_peak"], dtype=int)
        yp = np.asarray(peaks["y_peak"], dtype=int)
        xc = np.asarray(peaks["x_centroid"], dtype=float)
        yc = np.asarray(peaks["y_centroid"], dtype=float)
        # a centroid more than a pixel from its peak (a noisy quadratic) falls back to the peak
        off = ~np.isfinite(xc) | ~np.isfinite(yc) | (np.abs(xc - xp) > 1) | (np.abs(yc - yp) > 1)
        xc, yc = np.where(off, xp, xc), np.where(off, yp, yc)
        order = np.argsort(-snr[yp, xp], kind="stable")
        out["x"], out["y"] = xc[order], yc[order]
        out["x_peak"], out["y_peak"] = xp[order], yp[order]
        out["snr"] = snr[yp, xp][order]
        out["flux_mf"] = flux[yp, xp][order]
    out.add_column(np.arange(1, len(out) + 1), name="id", index=0)
    if wcs is not None:
        from astropy import units as u
        ra, dec = wcs.celestial.pixel_to_world_values(out["x"], out["y"])
        out["ra"] = np.atleast_1d(ra) * u.deg
        out["dec"] = np.atleast_1d(dec) * u.deg
    return out
