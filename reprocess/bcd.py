"""Reading a BCD with its uncertainty and bit mask as one astropy object.

``load_bcd(path)`` returns an :class:`astropy.nddata.CCDData` in MJy/sr with
the celestial WCS (SIP distortion included), ``uncertainty`` (1 sigma, from
``_bunc``), ``flags`` (the bit mask, ``_bmask`` for Ge or ``_bbmsk`` for
24 um) and ``mask`` (True where a bit of ``fatal`` is set): what mosaicking
and photometry (photutils, reproject) take directly.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS

from calibration.bitmask import BBMSK, BMASK

from .io import InputError

__all__ = ["load_bcd", "GE_FATAL", "SI_FATAL"]

GE_FATAL = BMASK["NO_SLOPE"] | BMASK["NO_STIM"] | BMASK["PMASK"]
SI_FATAL = BBMSK["SATURATED_HARD"] | BBMSK["PMASK"]


def load_bcd(path: str | os.PathLike, *, fatal: int | None = None, wcs: WCS | None = None) -> CCDData:
    """The BCD at ``path`` (``*_bcd.fits``) with its ``_bunc`` and bit mask beside it.

    ``fatal`` is the bit pattern that makes ``mask`` True (default: no slope, no
    responsivity or a permanent bad pixel for Ge; hard saturation or a bad pixel at 24 um).
    ``wcs``: the BCD's WCS if the caller has already parsed its header (a SIP header
    costs astropy ~3 ms to parse).
    """
    path = Path(path)
    if not path.name.endswith("_bcd.fits"):
        raise InputError(path, "not a BCD (*_bcd.fits)")
    stem = path.name[: -len("_bcd.fits")]
    masks = [path.with_name(f"{stem}_{kind}.fits") for kind in ("bmask", "bbmsk")]
    mask_path = next((m for m in masks if m.exists()), None)
    unc_path = path.with_name(f"{stem}_bunc.fits")
    for need in (path, unc_path, mask_path):
        if need is None or not need.exists():
            raise InputError(need or masks[0], "missing product next to the BCD")
    with fits.open(path) as hdul:
        header = hdul[0].header.copy()
        data = np.array(hdul[0].data, dtype=np.float32)
    unc = np.array(fits.getdata(unc_path), dtype=np.float32)
    bits = np.array(fits.getdata(mask_path), dtype=np.int32)
    if fatal is None:
        fatal = SI_FATAL if int(header.get("CHNLNUM", 2)) == 1 else GE_FATAL
    return CCDData(data, unit=u.MJy / u.sr, wcs=WCS(header) if wcs is None else wcs, meta=header,
                   uncertainty=StdDevUncertainty(unc), flags=bits,
                   mask=((bits & fatal) != 0) | ~np.isfinite(data))
