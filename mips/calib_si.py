"""24 um calibration from a simulated campaign: simulate, derive, score against the truth.

The simulator makes the campaign (:mod:`mipssim.campaign.si`), the reprocessor
derives the products from its raw files alone (:mod:`reprocess.calib.si_derive`),
and only :func:`si_pulls` opens the campaign's truth, afterwards, to score
each derived map by its pulls ``(derived - true) / error`` and each scalar
by its pull and whether its 68 / 95 % credible intervals hold the truth.
FLUXCONV, GAIN and SATLEVEL are the shipped set's (FLUXCONV from standard
stars is derived elsewhere).  This module uses both halves, hence ``mips/``.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from calibration.bitmask import PMASK_FATAL
from calibration.products import SiProducts, load_si_products
from reprocess.calib.si_derive import SiDeriveConfig, derive_si_products

__all__ = ["calibrate_si", "si_pulls", "format_si_pulls"]

# derived attribute -> truth dataset, for the maps scored per pixel
_MAPS = {"dark": "DARK", "flats": "FLATS", "read_noise": "READNOIS", "read2": "READ2"}
# scalar name -> (truth attribute, posterior, parameter)
_SCALARS = {"DROOP": ("DROOP", "droop", "droop"), "RDROOP": ("RDROOP", "droop", "row_droop"),
            "READ2": ("READ2", "read2", "amplitude"), "READ2SCL": ("READ2SCL", "read2", "scale")}


def calibrate_si(*, seed: int, workdir: Path, chains: Path, config_overrides: dict | None = None,
                 plan=None, derive_config: SiDeriveConfig | None = None,
                 overwrite: bool = False, progress=None) -> SiProducts:
    """Simulate the 24 um campaign into ``workdir`` and derive its product set (with errors).

    Parameters
    ----------
    seed : int
        Campaign seed (AOR seeds and the emcee runs derive from it).
    workdir : path
        Campaign folder (AOR folders + ``campaign_truth.h5``).
    chains : path
        HDF5 file for the emcee chains (groups ``read2``, ``droop``, ``first_frame``).
    config_overrides : dict, optional
        Detector / effect parameters of every AOR (SimConfig keys).
    plan : mipssim.campaign.si.SiCampaignPlan, optional
        Campaign sizes (default: the full campaign).

    Returns
    -------
    SiProducts with ``errors`` and ``meta["posteriors"]``; ``meta["truth"]`` is
    the campaign truth file (for :func:`si_pulls`, not read here).
    """
    from mipssim.campaign.si import simulate_si_campaign

    camp = simulate_si_campaign(workdir, seed=seed, plan=plan, overrides=config_overrides,
                                overwrite=overwrite, progress=progress)
    prod = derive_si_products(dark_long=camp.aors["dark10"], dark_short=camp.aors["dark3"],
                              flats=camp.aors["flat"], droop=camp.aors["droop"],
                              base=load_si_products(), calid=f"MIPS24-CAMPAIGN-s{seed}", seed=seed,
                              chains=chains, config=derive_config)
    prod.meta["truth"] = str(camp.truth)
    return prod


def _pull_stats(p: np.ndarray) -> dict:
    p = p[np.isfinite(p)]
    med = float(np.median(p))
    return {"median": med, "spread": float(1.4826 * np.median(np.abs(p - med))), "n": int(p.size)}


def si_pulls(prod: SiProducts, truth_path: str | Path) -> dict:
    """Pulls of a derived 24 um set against its campaign truth.

    Maps: ``{EXTNAME: {"median", "spread", "n"}}`` over pixels good in both
    masks (spread = 1.4826 MAD; DARK over all planes, FLATS over all
    positions, which must match the truth's).  READ2 is a two-parameter law,
    its map pulls are correlated (the law's pulls are the meaningful ones).
    Scalars: ``{KEY: {"value", "error", "true", "pull", "in68", "in95"}}`` for
    DROOP, RDROOP, READ2 (amplitude), READ2SCL and FIRSTFRM0.. .  PMASK:
    counts of fatal pixels and agreement.
    """
    with h5py.File(truth_path, "r") as f:
        g = f["calibration"]
        truth = {k: g[k][()] for k in g}
        attrs = dict(g.attrs)
    if not np.allclose(truth["CSMPOS"], prod.csm_arcsec, atol=0.5):
        raise ValueError(f"{truth_path}: flat positions {truth['CSMPOS']} differ from the derived "
                         f"{prod.csm_arcsec}")
    good = ((truth["PMASK"] & PMASK_FATAL) == 0) & ((prod.pmask & PMASK_FATAL) == 0)
    out = {"maps": {}, "scalars": {}}
    for attr, ext in _MAPS.items():
        d, t, e = getattr(prod, attr), truth[ext], prod.error(attr)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = (d - t) / e
        out["maps"][ext] = _pull_stats(p[..., good])
    post = prod.meta.get("posteriors", {})
    for key, (tkey, pname, par) in _SCALARS.items():
        out["scalars"][key] = _scalar(post[pname], par, float(attrs[tkey]))
    for i, t in enumerate(np.atleast_1d(attrs["FIRSTFRM"])):
        if i < len(prod.first_frame):
            out["scalars"][f"FIRSTFRM{i}"] = _scalar(post["first_frame"], f"f{i}", float(t))
    ft, fd = (truth["PMASK"] & PMASK_FATAL) != 0, (prod.pmask & PMASK_FATAL) != 0
    out["pmask"] = {"fatal_true": int(ft.sum()), "fatal_derived": int(fd.sum()),
                    "agree": int((ft == fd).sum()), "pixels": int(ft.size)}
    return out


def _scalar(post, name: str, true: float) -> dict:
    value, err = post.median(name), post.sigma(name)
    lo68, hi68 = post.interval(name, 0.68)
    lo95, hi95 = post.interval(name, 0.95)
    return {"value": value, "error": err, "true": true, "pull": (value - true) / err,
            "in68": bool(lo68 <= true <= hi68), "in95": bool(lo95 <= true <= hi95)}


def format_si_pulls(pulls: dict) -> str:
    """The pulls as a small report (goals: |median| <= 0.1, spread 0.9-1.1)."""
    lines = ["  map        pull median   spread   n"]
    for ext, p in pulls["maps"].items():
        ok = abs(p["median"]) <= 0.1 and 0.9 <= p["spread"] <= 1.1
        note = " (2-parameter law: correlated)" if ext == "READ2" else ("" if ok else " MISSED")
        lines.append(f"  {ext:9s}  {p['median']:+.3f}        {p['spread']:.3f}    {p['n']}{note}")
    for key, s in pulls["scalars"].items():
        lines.append(f"  {key:9s}  {s['value']:.5g} +- {s['error']:.2g} (true {s['true']:.5g}; "
                     f"pull {s['pull']:+.2f})")
    m = pulls["pmask"]
    lines.append(f"  PMASK      fatal: derived {m['fatal_derived']}, true {m['fatal_true']}; "
                 f"agree on {m['agree']} of {m['pixels']}")
    return "\n".join(lines)
