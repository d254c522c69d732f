"""Product sets made wrong on purpose, and the 24 um products from the simulator's detector.

:func:`perturbed_products` makes a set wrong on purpose (a per-pixel flat
error, a flux-conversion error) to show that validation catches it.

The 70 and 160 um products in ``data/cal`` come from simulated calibration
campaigns (``mips calibrate``; ``data/cal/PROVENANCE.md``).  The 24 um set is
still the simulator's true detector (``python -m mips.calproducts`` rewrites
``data/cal/mips24_cal.fits``): deriving it from a 24 um campaign is open work
(issue 11).  Lives in ``mips/`` because it uses both the simulator and the
calibration package.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from calibration.products import CalProducts, SiProducts, write_si_products
from mipssim.config import load_config
from mipssim.si_as import default_si_detector, read2_deficit

CAL_VERSION = 1


def perturbed_products(prod: CalProducts, *, illum_rms: float = 0.0, fluxconv_factor: float = 1.0,
                       seed: int = 0) -> CalProducts:
    """A copy of ``prod`` made wrong on purpose, to show what validation catches.

    Parameters
    ----------
    prod : CalProducts
        The product set to perturb (not modified).
    illum_rms : float
        Fractional RMS of a per-pixel Gaussian error multiplied into ``ILLUM``
        (0.01: a 1 % flat-field error).
    fluxconv_factor : float
        ``FLUXCONV`` is multiplied by this (1.02: a 2 % flux-calibration error).
    seed : int
        Seed of the per-pixel error.

    Returns
    -------
    CalProducts whose ``CALID`` says what was done.
    """
    rng = np.random.default_rng(seed)
    illum = prod.illum * (1.0 + illum_rms * rng.standard_normal(prod.illum.shape))
    tags = ([f"ILLUMx(1+{illum_rms:g}N)s{seed}"] if illum_rms else []) + (
        [f"FLUXCONVx{fluxconv_factor:g}"] if fluxconv_factor != 1.0 else [])
    return dataclasses.replace(prod, calid="+".join([prod.calid, *tags]), illum=illum.astype(np.float32),
                               fluxconv=prod.fluxconv * fluxconv_factor, meta=dict(prod.meta))


def si_products_from_detector() -> SiProducts:
    """The 24 um product set of the simulator's default detector and photometry dithers."""
    cfg = load_config(band=24)
    det = default_si_detector(cfg)
    spec = det.spec
    csm = np.unique([d[1] * spec.pixel_arcsec for d in cfg.dither_pix])
    darks = np.stack([det.dark(n, cfg.jailbar_factors) for n in range(len(cfg.jailbar_factors))])
    flats = np.stack([det.gainflat * det.spot_map(c) for c in csm])
    return SiProducts(
        calid=f"MIPS24-SIM-CAL-v{CAL_VERSION}", fluxconv=1.0 / spec.dn_s_per_mjysr,
        gain=spec.gain_e_per_dn, droop=cfg.droop_coeff, row_droop=cfg.row_droop_coeff,
        first_frame=np.asarray(cfg.first_frame_factors, dtype=float), csm_arcsec=csm, dark=darks,
        flats=flats, read2=read2_deficit(spec.shape, cfg.read2_dn, cfg.read2_scale_rows),
        read_noise=det.read_noise, pmask=det.pmask, saturation_dn=spec.saturation_dn)


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "data" / "cal"
    out.mkdir(parents=True, exist_ok=True)
    si = si_products_from_detector()
    write_si_products(si, out / "mips24_cal.fits",
                      provenance="Derived by mips.calproducts from mipssim.si_as.default_si_detector "
                                 "and the default 24 um photometry dithers.")
    print(f"wrote {out / 'mips24_cal.fits'} ({si.calid})")


if __name__ == "__main__":
    main()
