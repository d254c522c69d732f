"""``mips calibrate``: simulate a calibration campaign and derive a product set from it.

The simulator makes the campaign's raw data (:mod:`mipssim.campaign`); the
reprocessor derives the products from that raw data alone
(:mod:`reprocess.calib`); the campaign's truth is read only afterwards, to
score each derived map by its pulls ``(derived - true) / error``.  This is the
only module that sees both, which is why it lives in ``mips/``.

Output folder: ``mips<band>_cal.fits`` (the product set, with ``<EXT>_ERR``
maps and ``FLUXCONV_ERR``), ``chains.h5`` (emcee chains of the scalars),
``campaign/`` (the raw data, intermediate BCDs and ``campaign_truth.h5``) and
``calibration.json`` (the pulls).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np

from calibration.bitmask import PMASK_FATAL
from calibration.folders import write_atomic
from calibration.products import EXTNAMES, CalProducts, write_products
from reprocess.calib.ge import derive_ge_products

__all__ = ["run_calibrate", "map_pulls", "format_pulls"]

_SCORED = ("dark", "illum", "enl_beta", "enl_zero", "read_noise", "excess_noise")
_MIN_DARK, _MIN_FLAT = 18, 12     # 3 flashes at the default stim cycle of 6; 10 sky DCEs


def run_calibrate(band: int, out: str | Path, *, seed: int = 1, config_file=None,
                  n_dark: int = 120, n_flat: int = 240, overwrite: bool = False,
                  progress=None) -> dict:
    """Simulate the ``band`` campaign into ``out/campaign``, derive and write the products.

    ``n_dark`` and ``n_flat`` are the DCEs of the dark and sky-flat AORs (stim
    DCEs included).  Returns the summary written to ``out/calibration.json``
    (pulls per map, scalars).
    """
    out = Path(out)
    if band != 24 and (n_dark < _MIN_DARK or n_flat < _MIN_FLAT):
        raise ValueError(f"--n-dark {n_dark} / --n-flat {n_flat}: the campaign needs at least "
                         f"{_MIN_DARK} dark DCEs (3 stim flashes for the nonlinearity) and "
                         f"{_MIN_FLAT} sky-flat DCEs")
    products_path = out / f"mips{band}_cal.fits"
    if products_path.exists() and not overwrite:
        raise FileExistsError(f"{products_path}: exists (use --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    if band == 24:
        return _run_calibrate_si(out, products_path, seed=seed, overwrite=overwrite,
                                 progress=progress)
    from mipssim.campaign.ge import simulate_ge_campaign

    camp = simulate_ge_campaign(band, out / "campaign", seed=seed, config_file=config_file,
                                n_dark=n_dark, n_flat=n_flat, overwrite=overwrite, progress=progress)
    calid = f"MIPS{band}-CAMPAIGN-s{seed}"
    prod = derive_ge_products(camp.dark, camp.skyflat, band=band, calid=calid, overwrite=overwrite)
    prod = _with_fluxconv(prod, band, seed=seed, workdir=out / "campaign" / "stars",
                          chains=out / "chains.h5", overwrite=overwrite)
    command = f"mips calibrate --band {band} --seed {seed} --n-dark {n_dark} --n-flat {n_flat}" + (
        f" --config {config_file}" if config_file else "")
    write_products(prod, products_path, provenance=f"Derived from a simulated calibration campaign by "
                                                    f"'{command}' (reprocess.calib).")
    summary = {"band": band, "seed": seed, "calid": calid, "products": str(products_path),
               "pulls": map_pulls(prod, camp.truth),
               "fluxconv": {"value": prod.fluxconv, "error": prod.error("fluxconv"),
                            "true": _true_scalar(camp.truth, "FLUXCONV")}}
    write_atomic(out / "calibration.json", json.dumps(summary, indent=1).encode())
    return summary


def _run_calibrate_si(out: Path, products_path: Path, *, seed: int, overwrite: bool,
                      progress) -> dict:
    """The 24 um branch of :func:`run_calibrate` (:mod:`mips.calib_si`)."""
    from calibration.instrument import band_spec
    from calibration.products import write_si_products
    from mips.calib_si import calibrate_si, si_pulls

    prod = calibrate_si(seed=seed, workdir=out / "campaign", chains=out / "chains.h5",
                        overwrite=overwrite, progress=progress)
    truth = Path(prod.meta["truth"])
    prod = _with_fluxconv(prod, 24, seed=seed, workdir=out / "campaign" / "stars",
                          chains=out / "chains.h5", overwrite=overwrite)
    write_si_products(prod, products_path, provenance=f"Derived from a simulated calibration campaign "
                                                      f"by 'mips calibrate --band 24 --seed {seed}'.")
    summary = {"band": 24, "seed": seed, "calid": prod.calid, "products": str(products_path),
               "pulls": si_pulls(prod, truth),
               "fluxconv": {"value": prod.fluxconv, "error": prod.error("fluxconv"),
                            "true": 1.0 / band_spec(24).dn_s_per_mjysr}}
    write_atomic(out / "calibration.json", json.dumps(summary, indent=1, default=float).encode())
    return summary


def _with_fluxconv(prod, band: int, *, seed: int, workdir: Path, chains: Path, overwrite: bool):
    """``prod`` with FLUXCONV (and its error) from simulated standard stars."""
    from mips.calib_stars import fluxconv_campaign

    post, _, flat = fluxconv_campaign(band, seed=seed, workdir=workdir, products=prod, chains=chains,
                                      overwrite=overwrite)
    fluxconv = post.median("fluxconv")
    errors = dict(prod.errors, fluxconv=float(np.hypot(post.sigma("fluxconv"), flat * fluxconv)))
    return dataclasses.replace(prod, fluxconv=fluxconv, errors=errors)


def _true_scalar(truth_path: Path, key: str) -> float:
    with h5py.File(truth_path, "r") as f:
        return float(f["calibration"].attrs[key])


def map_pulls(prod: CalProducts, truth_path: str | Path, *, keep_values: bool = False) -> dict:
    """Pulls ``(derived - true) / error`` of each map over pixels good in both masks.

    ``ILLUM`` is compared after scaling the true map by the median ratio of the
    derived to the true map (a product set fixes only its shape; FLUXCONV
    carries the scale).  Returns ``{map: {"median", "spread",
    "n", "rel_error"}}`` with the spread as 1.4826 x MAD, plus the fatal-mask
    agreement under ``"pmask"``; ``keep_values`` adds the pulls themselves
    (``"values"``, to pool several campaigns).
    """
    with h5py.File(truth_path, "r") as f:
        truth = {k: f["calibration"][EXTNAMES[k]][()] for k in (*_SCORED, "pmask")}
    good = ((truth["pmask"] & PMASK_FATAL) == 0) & ((prod.pmask & PMASK_FATAL) == 0)
    out = {}
    for k in _SCORED:
        true = truth[k]
        err = prod.error(k)
        if k == "illum":     # only the shape is defined: scale the truth to the derived map
            true = true * np.median((prod.illum / true)[good])
            err = np.hypot(err, prod.error("illum_enl"))     # against the truth both parts count
        with np.errstate(invalid="ignore", divide="ignore"):
            p = ((getattr(prod, k) - true) / err)[good]
            rel = np.median((err / np.abs(true))[good])
        p = p[np.isfinite(p)]
        med = float(np.median(p))
        out[k] = {"median": med, "spread": float(1.4826 * np.median(np.abs(p - med))),
                  "n": int(p.size), "rel_error": float(rel)}
        if keep_values:
            out[k]["values"] = p
    fatal_t, fatal_d = (truth["pmask"] & PMASK_FATAL) != 0, (prod.pmask & PMASK_FATAL) != 0
    out["pmask"] = {"fatal_true": int(fatal_t.sum()), "fatal_derived": int(fatal_d.sum()),
                    "agree": int((fatal_t == fatal_d).sum()), "pixels": int(fatal_t.size)}
    return out


def pull_goals(n: int) -> tuple[float, float]:
    """Tolerances of a map's pull median and spread over ``n`` pixels: 0.1, or twice the
    statistic's standard error (1.2533 / sqrt(n), 1.1664 / sqrt(n)) when ``n`` is too small to
    resolve 0.1 (160 um: 35 pixels)."""
    n = max(n, 1)
    return max(0.1, 2 * 1.2533 / np.sqrt(n)), max(0.1, 2 * 1.1664 / np.sqrt(n))


def format_pulls(summary: dict) -> str:
    """The summary as a small report: one line per map with its goal, then FLUXCONV."""
    if summary["band"] == 24:
        from mips.calib_si import format_si_pulls
        return "\n".join([f"Calibration products {summary['calid']} -> {summary['products']}",
                          format_si_pulls(summary["pulls"]), _format_fluxconv(summary["fluxconv"])])
    lines = [f"Calibration products {summary['calid']} -> {summary['products']}",
             "  map         pull median   goal      spread   goal          pixels  median rel. error"]
    for k in _SCORED:
        p = summary["pulls"][k]
        tm, ts = pull_goals(p["n"])
        ok = abs(p["median"]) <= tm and abs(p["spread"] - 1) <= ts
        lines.append(f"  {EXTNAMES[k]:10s}  {p['median']:+.3f}        <={tm:.2f}    {p['spread']:.3f}    "
                     f"{1 - ts:.2f}-{1 + ts:.2f}     {p['n']:4d}    {p['rel_error']:.2e}  "
                     f"{'met' if ok else 'MISSED'}")
    m = summary["pulls"]["pmask"]
    lines.append(f"  PMASK       fatal pixels: derived {m['fatal_derived']}, true {m['fatal_true']}; "
                 f"agree on {m['agree']} of {m['pixels']}")
    lines.append(_format_fluxconv(summary["fluxconv"]))
    return "\n".join(lines)


def _format_fluxconv(fc: dict) -> str:
    rel = 100 * fc["error"] / fc["value"]
    return (f"  FLUXCONV    {fc['value']:.5g} +- {fc['error']:.2g} ({rel:.2f}%); true {fc['true']:.5g}: "
            f"off by {(fc['value'] - fc['true']) / fc['error']:+.2f} sigma")
