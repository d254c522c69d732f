"""Celestial WCS of a MIPS Ge frame, in the SSC convention (TAN with SIP distortion).

The SSC writes ``CTYPE = 'RA---TAN-SIP'``, ``CRPIX``, ``CRVAL`` averaged over
the DCE, a CD matrix, ``PA`` (position angle of axis 2, E of N), ``PXSCAL1/2``
and third-order SIP ``A_``/``B_`` (with inverse ``AP_``/``BP_``) terms (see
``shared/data/real/headers``).  The real MIPS Ge distortion coefficients were
not available: the defaults below are illustrative (UNCONFIRMED), of the
size (~0.1 px at the array edge) that matters for mosaics.  Pixel axis 1 is x
(columns), axis 2 is y (rows).
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from .instrument import band_spec

__all__ = ["REFERENCE_PIXEL", "SIP_COEFFS", "array_wcs"]

# 1-based reference pixel: the centre of the usable part of the array
REFERENCE_PIXEL = {24: (64.5, 64.5), 70: (8.5, 16.5), 160: (10.5, 2.0)}

# forward SIP terms (pixel offsets from CRPIX -> distortion, pixels); UNCONFIRMED
SIP_COEFFS = {
    24: {"A_2_0": 2.0e-5, "A_1_1": -1.0e-5, "A_0_2": 1.0e-5,
         "B_2_0": -1.0e-5, "B_1_1": 2.0e-5, "B_0_2": 1.5e-5},
    70: {"A_2_0": 2.0e-4, "A_1_1": -1.5e-4, "A_0_2": 1.0e-4,
         "B_2_0": -1.0e-4, "B_1_1": 2.0e-4, "B_0_2": 1.5e-4},
    160: {"A_2_0": 1.0e-4, "A_1_1": 0.0, "A_0_2": 0.5e-4,
          "B_2_0": -0.5e-4, "B_1_1": 1.0e-4, "B_0_2": 0.0},
}


def array_wcs(band: int, crval: tuple[float, float], pa_deg: float, *,
              distortion: bool = True) -> fits.Header:
    """FITS header cards of the WCS of ``band`` pointed at ``crval`` (deg) with ``pa_deg``.

    Returns a :class:`~astropy.io.fits.Header` (use ``astropy.wcs.WCS(header)``).
    """
    spec = band_spec(band)
    scale = spec.pixel_arcsec / 3600.0
    pa = np.deg2rad(pa_deg)
    hdr = fits.Header()
    sip = "-SIP" if distortion else ""
    hdr["CTYPE1"] = ("RA---TAN" + sip, "RA---TAN with distortion in pixel space")
    hdr["CTYPE2"] = ("DEC--TAN" + sip, "DEC--TAN with distortion in pixel space")
    hdr["CRPIX1"], hdr["CRPIX2"] = REFERENCE_PIXEL[band]
    hdr["CRVAL1"] = (float(crval[0]), "[deg] RA at CRPIX1,CRPIX2")
    hdr["CRVAL2"] = (float(crval[1]), "[deg] DEC at CRPIX1,CRPIX2")
    hdr["RADESYS"] = "ICRS"
    hdr["EQUINOX"] = 2000.0
    # axis 2 points PA east of north; axis 1 to the west of it (RA increases to the left)
    hdr["CD1_1"] = (-scale * np.cos(pa), "[deg/pix] CD matrix element 1_1")
    hdr["CD1_2"] = (scale * np.sin(pa), "[deg/pix] CD matrix element 1_2")
    hdr["CD2_1"] = (scale * np.sin(pa), "[deg/pix] CD matrix element 2_1")
    hdr["CD2_2"] = (scale * np.cos(pa), "[deg/pix] CD matrix element 2_2")
    hdr["PA"] = (float(pa_deg), "[deg] Position angle of axis 2 (E of N,+=CCW)")
    hdr["PXSCAL1"] = (-spec.pixel_arcsec, "[arcsec/pix] Scale for axis 1 at CRPIX1,CRPIX2")
    hdr["PXSCAL2"] = (spec.pixel_arcsec, "[arcsec/pix] Scale for axis 2 at CRPIX1,CRPIX2")
    if distortion:
        coeffs = SIP_COEFFS[band]
        hdr["A_ORDER"] = 2
        hdr["B_ORDER"] = 2
        for key, value in coeffs.items():
            hdr[key] = (value, "distortion coefficient")
        for key, value in _inverse_sip(coeffs, spec.shape, REFERENCE_PIXEL[band]).items():
            hdr[key] = (value, "inverse distortion coefficient")
    return hdr


def _inverse_sip(coeffs: dict, shape, crpix, order: int = 2) -> dict:
    """Least-squares AP_/BP_ terms inverting the forward SIP polynomial over the array."""
    ny, nx = shape
    y, x = np.mgrid[-1:ny + 1:0.5, -1:nx + 1:0.5]
    u = x.ravel() + 1 - crpix[0]
    v = y.ravel() + 1 - crpix[1]
    fu = u + sum(c * u ** int(k[2]) * v ** int(k[4]) for k, c in coeffs.items() if k[0] == "A")
    fv = v + sum(c * u ** int(k[2]) * v ** int(k[4]) for k, c in coeffs.items() if k[0] == "B")
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1) if 1 <= p + q <= order]
    design = np.column_stack([fu ** p * fv ** q for p, q in terms])
    ap, *_ = np.linalg.lstsq(design, u - fu, rcond=None)
    bp, *_ = np.linalg.lstsq(design, v - fv, rcond=None)
    out = {"AP_ORDER": order, "BP_ORDER": order}
    for (p, q), a, b in zip(terms, ap, bp):
        out[f"AP_{p}_{q}"] = float(a)
        out[f"BP_{p}_{q}"] = float(b)
    return out
