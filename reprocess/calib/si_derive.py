"""The 24 um product set from a calibration campaign's raw observation folders.

Order matters because each product is measured on data the earlier ones
correct: the read-2 law (3 vs 10 MIPS-s darks: needs nothing), read noise
(dark scatter), droop (on/off differences: dark and read-2 cancel), darks
per DCENUM (read-2 and droop removed), then on the flat-field AORs the
first-frame factors and the flats (all of the above removed), and last the
permanent mask (dead pixels in the gain flat, noisy ones in the read noise).
FLUXCONV, GAIN and SATLEVEL are not measured here: they come from ``base``
(FLUXCONV from standard stars is another derivation).  See :mod:`.si` for
the physics of each step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration import si_as
from calibration.products import SiProducts

from . import si

__all__ = ["SiDeriveConfig", "derive_si_products"]


@dataclass
class SiDeriveConfig:
    """Derivation parameters (defaults UNCONFIRMED, chosen for the simulated campaign)."""

    n_dark_planes: int = 5         # DCENUM 0..3, then >= 4 (the jailbar is stable from DCENUM 3 on)
    n_first: int = 3               # first-frame factors of DCENUM 0, 1, 2
    droop_margin_px: int = 12      # blank-sky margin around the droop source
    flat_margin_px: int = 4        # mask dilation around field sources in flats
    nsteps: int = 2000             # emcee steps per walker


def derive_si_products(*, dark_long: list[Path], dark_short: list[Path], flats: list[Path],
                       droop: list[Path], base: SiProducts, calid: str, seed: int,
                       chains: str | Path | None = None,
                       config: SiDeriveConfig | None = None) -> SiProducts:
    """Derive the 24 um product set (with ``errors``) from raw observation folders.

    Parameters
    ----------
    dark_long, dark_short : lists of folders
        Dark AORs of the long (e.g. 10 MIPS-s) and short (3 MIPS-s) exposure.
    flats : list of folders
        One uniform-field AOR per scan-mirror position (DCENUM 0..2 at one pointing).
    droop : list of folders
        AORs alternating a bright source on and off the array.
    base : SiProducts
        Gives FLUXCONV, GAIN and SATLEVEL (kept), and the gain used in noise laws.
    calid : str
        Id of the derived set.
    seed : int
        Seeds the emcee runs.
    chains : path, optional
        HDF5 file of the emcee chains (groups ``read2``, ``droop``, ``first_frame``).
    """
    cfg = config or SiDeriveConfig()
    long = si.si_rates([d for f in dark_long for d in si.read_si_dces(f)])
    short = si.si_rates([d for f in dark_short for d in si.read_si_dces(f)])
    shape = long.rate.shape[1:]
    every = np.ones(shape, dtype=bool)
    last = cfg.n_dark_planes - 1
    # read-2 law: same DCENUM plane (>= last), different nreads
    prof, perr, k = si.read2_profile(short.select(short.dcenum >= last),
                                     long.select(long.dcenum >= last), every)
    p_r2 = si.fit_read2(prof, perr, k, seed=seed, chains=chains, nsteps=cfg.nsteps)
    amp, scale = p_r2.median("amplitude"), p_r2.median("scale")
    read2 = si.read2_law(shape, amp, scale)
    read2_err = si.read2_error_map(p_r2, shape)
    # droop
    pairs = []
    for f in droop:
        stack = si.si_rates(si.read_si_dces(f))
        pairs += si.droop_pairs(stack, every, first_dcenum=last, margin_px=cfg.droop_margin_px)
    p_dr = si.fit_droop(pairs, seed=seed + 1, chains=chains, nsteps=cfg.nsteps)
    c, c_err, cr = p_dr.median("droop"), p_dr.sigma("droop"), p_dr.median("row_droop")
    # read noise from all darks, read-2 and droop removed (the Poisson term needs the charge rate)
    both = si.SiRates(np.concatenate([si.corrected_rates(x, read2, c, cr) for x in (long, short)]),
                      np.r_[long.nreads, short.nreads], np.r_[long.dcenum, short.dcenum],
                      np.r_[long.csm, short.csm], long.read_time)
    rn, rn_err = si.read_noise_map(both, gain=base.gain, n_planes=cfg.n_dark_planes)
    # darks per DCENUM
    dark, dark_err = si.dark_planes(long, read2=read2, read2_err=read2_err, droop=c, droop_err=c_err,
                                    row_droop=cr, read_noise=rn, gain=base.gain,
                                    n_planes=cfg.n_dark_planes)
    # flat-field AORs: first-frame samples and per-position flats
    ratios, ratio_errs, planes, plane_errs, csm = [], [], [], [], []
    for f in flats:
        stack = si.si_rates(si.read_si_dces(f))
        if len(set(stack.csm)) != 1:
            raise ValueError(f"{f}: a flat AOR must stay at one scan-mirror position")
        photo = si.photocurrent(stack, dark, read2=read2, droop=c, row_droop=cr)
        r, e = si.first_frame_samples(photo, stack.dcenum, every, cfg.n_first,
                                      pointing=stack.pointing)
        ratios.append(r)
        ratio_errs.append(e)
        late = stack.dcenum >= cfg.n_first
        var = np.stack([si_as.sur_variance(p + dark[min(d, last)], nreads=int(n),
                                           read_time=stack.read_time, gain=base.gain, read_noise=rn)
                        + dark_err[min(d, last)] ** 2
                        for p, d, n in zip(photo[late], stack.dcenum[late], stack.nreads[late])])
        fl, fe = si.flat_for_position(photo[late], var, every, margin_px=cfg.flat_margin_px)
        planes.append(fl)
        plane_errs.append(fe)
        csm.append(float(stack.csm[0]))
    p_ff = si.fit_first_frame(np.array(ratios), np.array(ratio_errs), seed=seed + 2, chains=chains,
                              nsteps=cfg.nsteps)
    order = np.argsort(csm)
    planes, plane_errs = np.array(planes)[order], np.array(plane_errs)[order]
    pmask = si.permanent_mask(np.median(planes, axis=0), rn)
    good = pmask == 0
    flat_cube, flat_err, _ = si.gain_and_spot_flats(planes, plane_errs, good)
    names = [f"f{d}" for d in range(cfg.n_first)]
    first = np.array([p_ff.median(n) for n in names])
    errors = {"dark": dark_err, "flats": flat_err, "read2": read2_err, "read_noise": rn_err,
              "first_frame": np.array([p_ff.sigma(n) for n in names]),
              "droop": c_err, "row_droop": p_dr.sigma("row_droop"),
              "read2_amplitude": p_r2.sigma("amplitude"), "read2_scale_rows": p_r2.sigma("scale")}
    meta = {"read2_amplitude": amp, "read2_scale_rows": scale,
            "posteriors": {"read2": p_r2, "droop": p_dr, "first_frame": p_ff}}
    return dataclasses.replace(
        base, calid=calid, droop=c, row_droop=cr, first_frame=first,
        csm_arcsec=np.array(csm)[order], dark=dark, flats=flat_cube, read2=read2, read_noise=rn,
        pmask=pmask, meta=meta, errors=errors)
