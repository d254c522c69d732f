"""Point-source photometry of an observation's BCDs against the simulator's input fluxes.

The archive's Ge pipeline left the detectors' slow response in the BCDs, which
makes 70 um aperture photometry flux-nonlinear [HB 7.2.5 /81]; this measures
what a reprocessing leaves: each true source (``truth.h5`` sources table) is
measured on every BCD that holds it whole, with the calibration aperture and
its aperture correction (:func:`reprocess.calib.fluxconv.measure_star`; PRF fit
at 160 um), and the measurements are combined with inverse-variance weights.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import h5py
import numpy as np
from astropy import units as u
from astropy.table import QTable

from mips.calib_stars import measure_folder

__all__ = ["point_source_flux_ratios"]


def point_source_flux_ratios(obs_dir: str | Path) -> QTable:
    """Measured / input flux of every source of a reprocessed simulated observation.

    Returns
    -------
    QTable
        ``ra``, ``dec`` (deg), ``flux_in`` and ``flux_out`` (Jy), ``flux_err`` (Jy, the
        combined measurement's 1-sigma), ``ratio`` and ``n_bcd`` (BCDs measured), one row per
        source measured at least once.
    """
    obs = Path(obs_dir)
    with h5py.File(obs / "truth.h5", "r") as truth:
        band = int(tomllib.loads(truth.attrs["config"])["band"])
        src = truth["sources"][()]
    rows = []
    for s in src:
        found = measure_folder(obs / "bcd", float(s["ra"]), float(s["dec"]), band=band)
        if not found:
            continue
        value = np.array([m.value for _, m in found])
        w = 1.0 / np.array([m.error for _, m in found]) ** 2
        flux = float(np.sum(w * value) / np.sum(w))
        f_in = float(s[f"flux_jy_{band}"])
        rows.append((float(s["ra"]), float(s["dec"]), f_in, flux, float(1 / np.sqrt(w.sum())),
                     flux / f_in, len(found)))
    table = QTable(rows=rows, names=("ra", "dec", "flux_in", "flux_out", "flux_err", "ratio",
                                     "n_bcd"))
    for col, unit in (("ra", u.deg), ("dec", u.deg), ("flux_in", u.Jy), ("flux_out", u.Jy),
                      ("flux_err", u.Jy)):
        table[col].unit = unit
    return table
