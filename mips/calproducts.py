"""Product sets made wrong on purpose, to show what validation catches.

The shipped products in ``data/cal`` come from simulated calibration
campaigns (``mips calibrate``; ``data/cal/PROVENANCE.md``), never from the
simulator's truth.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from calibration.products import CalProducts



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
