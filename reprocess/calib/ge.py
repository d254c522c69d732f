"""A Ge (70, 160 um) product set from a dark AOR (with stim flashes) and a sky-flat AOR.

The order follows what each step needs: read noise and reset level from the
dark ramps; the nonlinearity from the flashes on the dark (they need the reset
level); the permanent mask from read noise and stim response; then the
ordinary pipeline (:func:`reprocess.ge_pipeline.reprocess_ge`) with these
provisional products, ``DARK = 0``, ``ILLUM = 1`` and ``FLUXCONV = 1``, turns
the dark AOR into the dark in MIPS units, and, with that dark, the sky-flat
AOR into the illumination correction (:mod:`.ge_maps` explains each).
``FLUXCONV`` needs standard stars and is left at 1 with no error here.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

from calibration.bitmask import PMASK_FATAL
from calibration.instrument import band_spec
from calibration.products import CalProducts

from ..ge_pipeline import reprocess_ge
from ..io import raw_files, read_all, read_raw_dce
from .ge_maps import (MapEstimate, batch_mean, nonlinearity_beta, normalised_flat, permanent_mask,
                      dark_ramp_maps)

__all__ = ["derive_ge_products"]

log = logging.getLogger(__name__)


def derive_ge_products(dark_dir: str | Path, skyflat_dir: str | Path, *, band: int, calid: str,
                       batch: int = 10, overwrite: bool = False) -> CalProducts:
    """Derive a Ge product set (every map with its error) from calibration observations.

    Parameters
    ----------
    dark_dir : path
        Observation folder (``raw/``) of an AOR on the dark with stim flashes.
    skyflat_dir : path
        Observation folder of a dithered low-background field with stim flashes.
    band : {70, 160}
    calid : str
        Id of the product set.
    batch : int
        DCEs (or ramps) per block of the batch-means errors (two stim cycles).
    overwrite : bool
        Replace the folders' existing ``bcd/`` (the intermediate BCDs are written there).

    Returns
    -------
    CalProducts with ``FLUXCONV = 1`` (MIPS units) and ``errors`` for every map.
    """
    spec = band_spec(band)
    dces = read_all(raw_files(Path(dark_dir)), read_raw_dce, keep_going=False, failures=[])
    try:
        noise, beta, pmask = _ramp_maps(dces, band)
    except ValueError as exc:
        raise ValueError(f"{dark_dir}: {exc}") from None
    ones = np.ones(spec.shape)
    prov = CalProducts(band=band, calid=calid, fluxconv=1.0, gain=spec.gain_e_per_dn,
                       saturation_dn=spec.saturation_dn, dark=0 * ones, illum=ones,
                       enl_beta=np.nan_to_num(beta.value), enl_zero=np.nan_to_num(noise.enl_zero.value),
                       pmask=pmask, read_noise=_filled(noise.read_noise.value),
                       excess_noise=_filled(noise.excess_noise.value))
    dark, illum, illum_enl = _dark_and_illum_with_nonlinearity(dark_dir, skyflat_dir, prov,
                                                               beta.error, batch, overwrite)
    good = (pmask & PMASK_FATAL) == 0
    maps = {"dark": dark, "illum": illum, "enl_beta": beta, "enl_zero": noise.enl_zero,
            "read_noise": noise.read_noise, "excess_noise": noise.excess_noise}
    for name, m in maps.items():
        if np.isnan(m.error[good]).any():
            raise ValueError(f"{dark_dir}, {skyflat_dir}: too few DCEs to estimate the error of "
                             f"{name} in {int(np.isnan(m.error[good]).sum())} good pixels")
    values = {k: np.where(good, np.nan_to_num(m.value, nan=_fill[k]), _fill[k])
              for k, m in maps.items()}
    errors = {k: np.where(good, m.error, 0.0) for k, m in maps.items()}
    errors["illum_enl"] = np.where(good, np.nan_to_num(illum_enl), 0.0)
    return dataclasses.replace(prov, **values, errors=errors,
                               meta={"n_dce_dark": len(dces), "n_flash": int(sum(d.stim for d in dces))})


def _ramp_maps(dces, band: int):
    """Read noise, reset level, nonlinearity and permanent mask from the dark AOR's raw ramps."""
    spec = band_spec(band)
    dark_cubes = [d.reads for d in dces if not d.stim]
    flashes = [d.reads for d in dces if d.stim]
    nramps = dces[0].nramps
    noise = dark_ramp_maps(dark_cubes, nramps=nramps, gain=spec.gain_e_per_dn,
                           read_time=dces[0].samptime)
    rn, zero = noise.read_noise, noise.enl_zero
    flash_t = np.array([(d.mjd_mid - dces[0].mjd_mid) * 86400.0 for d in dces if d.stim])
    beta = nonlinearity_beta(flashes, flash_t, nramps=nramps, read_time=dces[0].samptime,
                             enl_zero=zero.value, saturation_dn=spec.saturation_dn)
    pmask = permanent_mask(rn.value, _stim_step(flashes, dark_cubes),
                           halves=(slice(0, 16), slice(16, 32)) if band == 70 else None)
    log.info("band %d: %d dark DCEs, %d flashes; %d pixels masked", band, len(dark_cubes),
             len(flashes), int(((pmask & PMASK_FATAL) != 0).sum()))
    return noise, beta, pmask


def _dark_and_illum_with_nonlinearity(dark_dir, skyflat_dir, prov: CalProducts, beta_err,
                                      batch: int, overwrite: bool):
    """Dark and ILLUM, and the part of ILLUM's error that the nonlinearity's error causes.

    The flashes' linearisation carries the nonlinearity's error into both, the same in every
    DCE: propagated by central differences, beta one sigma up and down, the sign alternating
    from pixel to pixel so that the normalisations do not cancel the shift.  In ILLUM it
    cancels when BCDs are made with the same beta (their flashes share it), so it is returned
    apart (``ILLUM_ENL_ERR``); the dark's part is small and goes into its error.
    """
    dark, illum = _dark_and_illum(dark_dir, skyflat_dir, prov, batch, overwrite)
    sign = np.indices(prov.illum.shape).sum(axis=0) % 2 * 2 - 1
    step = sign * np.nan_to_num(beta_err)
    (dark_u, illum_u), (dark_d, illum_d) = (
        _dark_and_illum(dark_dir, skyflat_dir, dataclasses.replace(prov, enl_beta=prov.enl_beta + s),
                        batch, True) for s in (step, -step))
    dark = _with_systematic(dark, 0.5 * (dark_u.value - dark_d.value))
    return dark, illum, np.abs(0.5 * (illum_u.value - illum_d.value))


# what a masked pixel's product holds (never used: fatal pmask pixels are NaN in every BCD)
_fill = {"dark": 0.0, "illum": 1.0, "enl_beta": 0.0, "enl_zero": 0.0, "read_noise": 0.0,
         "excess_noise": 0.0}


def _filled(noise_map: np.ndarray) -> np.ndarray:
    """A provisional noise map for the intermediate BCDs: unmeasured pixels at the median."""
    return np.nan_to_num(noise_map, nan=np.nanmedian(noise_map))


def _dark_and_illum(dark_dir, skyflat_dir, prov: CalProducts, batch: int, overwrite: bool):
    """The dark (MIPS units) and the normalised illumination correction with provisional ``prov``."""
    dark = batch_mean(_bcd_stack(dark_dir, prov, overwrite), batch=batch)
    prov = dataclasses.replace(prov, dark=np.nan_to_num(dark.value))
    good = (prov.pmask & PMASK_FATAL) == 0
    return dark, normalised_flat(_bcd_stack(skyflat_dir, prov, overwrite), good, batch=batch,
                                 dark_err=np.nan_to_num(dark.error))


def _with_systematic(m: MapEstimate, shift: np.ndarray) -> MapEstimate:
    """``m`` with ``shift`` added in quadrature to its error."""
    return dataclasses.replace(m, error=np.hypot(m.error, shift))


def _stim_step(flashes: list[np.ndarray], darks: list[np.ndarray], n: int = 10) -> np.ndarray:
    """Median rise over the first ``n`` reads of the flashes minus that of the darks, DN."""
    rise = lambda cubes: np.median([c[n].astype(float) - c[0] for c in cubes], axis=0)  # noqa: E731
    return rise(flashes) - rise(darks)


def _bcd_stack(obs_dir, products: CalProducts, overwrite: bool) -> np.ndarray:
    """Reprocess ``obs_dir`` with ``products`` and return its BCDs in time order (N, NY, NX)."""
    report = reprocess_ge(obs_dir, products=products, overwrite=overwrite)
    if not report.n_bcd:
        raise ValueError(f"{obs_dir}: no BCD made, nothing to derive from")
    return np.array([fits.getdata(p).astype(float)
                     for p in sorted(report.out_dir.glob("*_bcd.fits"))])
