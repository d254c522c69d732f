"""Flagging the 160 um near-IR leak of hot sources in BCDs (the SSC left it in, uncorrected).

A 160 um BCD alone cannot tell a hot source's near-IR ghost from far-infrared
emission, so the reprocessor needs to be told which sources are hot: a
catalogue of positions and near-infrared flux densities (e.g. 2MASS H band,
~1.6 um) in an ECSV file with columns ``ra``, ``dec`` (deg) and ``flux_nir_jy``
(Jy).  Each source's ghost is predicted with :func:`calibration.leak.predicted_leak_jy`;
where it exceeds ``min_jy`` the BCD pixels within ``radius_pix`` of the source
get the ``LEAK`` bit (they are not corrected: the ghost's offset and shape are
not known well enough, [S07]).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from calibration.leak import predicted_leak_jy

from .io import InputError

__all__ = ["read_leak_catalog", "leak_mask"]

_COLUMNS = ("ra", "dec", "flux_nir_jy")


def read_leak_catalog(path: str | Path) -> Table:
    """The catalogue at ``path`` (ECSV), with the predicted ghost ``leak_jy``; InputError naming
    the file when it cannot be read or lacks a column."""
    try:
        table = Table.read(path, format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the leak catalogue: {exc}") from None
    missing = [c for c in _COLUMNS if c not in table.colnames]
    if missing:
        raise InputError(path, f"leak catalogue lacks column(s) {', '.join(missing)} "
                               f"(needs {', '.join(_COLUMNS)})")
    table["leak_jy"] = predicted_leak_jy(np.asarray(table["flux_nir_jy"], dtype=float))
    return table


def leak_mask(header, shape: tuple[int, int], catalog: Table, *, min_jy: float = 0.01,
              radius_pix: float = 2.5) -> np.ndarray:
    """Pixels of a frame (WCS in ``header``) within ``radius_pix`` of a source whose predicted
    ghost is at least ``min_jy`` (bool, ``shape``)."""
    hot = catalog[np.asarray(catalog["leak_jy"]) >= min_jy]
    mask = np.zeros(shape, dtype=bool)
    if not len(hot):
        return mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2)
    coords = SkyCoord(np.asarray(hot["ra"], float) * u.deg, np.asarray(hot["dec"], float) * u.deg)
    xs, ys = wcs.world_to_pixel(coords)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys)):
        mask |= np.hypot(yy - y, xx - x) <= radius_pix
    return mask
