"""FLUXCONV of a Ge product set from simulated standard stars (simulate, reprocess, measure, fit).

Uses the simulator (:mod:`mipssim.campaign.stars`) for the observations and
the reprocessor (:mod:`reprocess.calib.fluxconv`) for everything after; only
the stars' known fluxes and positions pass from one to the other, as from a
standard-star catalogue.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS, FITSFixedWarning

from calibration.instrument import band_spec, ge_ramps_per_dce
from calibration.nonlinearity import Q_FULL_DN
from calibration.products import CalProducts
from mipssim.campaign.stars import simulate_standard_stars
from reprocess.bcd import GE_FATAL
from reprocess.calib.fluxconv import fluxconv_posterior, measure_star, persistent_error
from reprocess.calib.posterior import Posterior
from reprocess.ge_pipeline import reprocess_ge
from reprocess.si_pipeline import reprocess_si

from .validate_si import SI_BAD

__all__ = ["fluxconv_campaign", "measure_folder"]

# BCD mask file and the bits that make a pixel unusable, per band
_MASK = {24: ("_bbmsk.fits", SI_BAD), 70: ("_bmask.fits", GE_FATAL), 160: ("_bmask.fits", GE_FATAL)}


def fluxconv_campaign(band: int, *, seed: int, workdir: str | Path, products: CalProducts,
                      fluxes_jy=None, n_dce: int = 36, block: int = 5, chains=None,
                      true_fluxconv=None, overwrite: bool = False
                      ) -> tuple[Posterior, QTable, float]:
    """Posterior of FLUXCONV for ``products`` (whose own FLUXCONV is ignored) from standard stars.

    Returns the posterior (parameters ``fluxconv``, ``log_jitter``), the table
    of per-BCD measurements (``block``: ``block`` consecutive BCDs of one star,
    which share stim flashes: 5, one stim cycle, gave the right coverage over
    30 seeds where 10, 15 and 30 gave too little, ``benchmarks/fluxconv_coverage.py
    --block``), and the relative error the product set's flat field and
    nonlinearity add (the same in every BCD: to be added in quadrature to the
    posterior's width).
    """
    stars = simulate_standard_stars(band, workdir, seed=seed, fluxes_jy=fluxes_jy,
                                    n_dce=n_dce, true_fluxconv=true_fluxconv, overwrite=overwrite)
    unit = dataclasses.replace(products, fluxconv=1.0,
                               errors={k: v for k, v in products.errors.items() if k != "fluxconv"})
    reprocess = reprocess_si if band == 24 else reprocess_ge
    rows, influences, nonlinear = [], [], []
    for k, star in enumerate(stars):
        reprocess(star.folder, products=unit, overwrite=overwrite)
        for i, (name, m) in enumerate(measure_folder(star.folder / "bcd", star.ra_deg, star.dec_deg,
                                                     band=band)):
            rows.append((k, f"{k}-{i // block}", name, star.flux_jy, m.value, m.error,
                         m.aperture_correction, m.x, m.y))
            influences.append(m.influence)
            if band != 24:
                nonlinear.append(m.influence * _charge_above_sky(star.folder / "bcd", name, band))
    table = QTable(rows=rows, names=("star", "block", "bcd", "flux", "value", "error",
                                     "aperture_correction", "x", "y"))
    for col in ("flux", "value", "error"):
        table[col].unit = u.Jy
    post = fluxconv_posterior(table, seed=seed, chains=chains)
    with np.errstate(invalid="ignore", divide="ignore"):
        if band == 24:      # the flats' mean relative error over the scan-mirror positions
            rel = np.mean(np.asarray(products.error("flats")) / products.flats, axis=0)
        else:
            rel = np.asarray(products.error("illum")) / products.illum
        systematic = persistent_error(influences, rel)
        if nonlinear:
            systematic = float(np.hypot(systematic, persistent_error(
                nonlinear, np.asarray(products.error("enl_beta")))))
    return post, table, systematic


def _charge_above_sky(bcd_dir: Path, bcd_name: str, band: int) -> np.ndarray:
    """(q - q_sky) / Q_FULL per pixel of one Ge DCE, from its ramps in ``ramps.h5``.

    A slope linearised with a coefficient off by ``d`` is off by ``d q_end / Q`` (relative);
    the sky's part cancels against FLUXCONV's use on sky BCDs, the star's excess does not.
    """
    with h5py.File(bcd_dir / "ramps.h5", "r") as f:
        g = f["dce"][bcd_name[: -len("_bcd.fits")]]
        slope, used = g["slope_dn_s"][()], g["first_unusable_read"][()]
        nreads = g["jumps"].shape[0]
    per_ramp = nreads // ge_ramps_per_dce(band, nreads)
    q = np.nan_to_num(slope) * band_spec(band).read_time_s * np.minimum(used, per_ramp)
    return (q - np.nanmedian(q)) / Q_FULL_DN


def measure_folder(bcd_dir: Path, ra_deg: float, dec_deg: float, *, band: int) -> list:
    """``(BCD name, StarMeasurement)`` of the star at (ra, dec) on every BCD of ``bcd_dir`` (in
    time order, FLUXCONV = 1 BCDs), where it can be measured."""
    rows = []
    star = SkyCoord(ra_deg * u.deg, dec_deg * u.deg)
    for path in sorted(Path(bcd_dir).glob("*_bcd.fits")):
        image = fits.getdata(path).astype(float)
        header = fits.getheader(path)
        error = fits.getdata(str(path).replace("_bcd.fits", "_bunc.fits")).astype(float)
        mask = fits.getdata(str(path).replace("_bcd.fits", _MASK[band][0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            x, y = WCS(header).world_to_pixel(star)
        m = measure_star(image, error, (mask & _MASK[band][1]) == 0, float(x), float(y), band=band)
        if m is not None:
            rows.append((path.name, m))
    return rows
