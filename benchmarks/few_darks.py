"""The cost in BCD error of products derived from a campaign with too few darks.

    python benchmarks/few_darks.py --band 70 --seed 1 --n-dark-few 24 --obs-seeds 101 102

Two product sets are made by ``mips calibrate`` (:func:`mips.calibrate.run_calibrate`)
from the same campaign seed: the default campaign (``--n-dark 120`` DCEs on the dark)
and one whose dark AOR is cut to ``--n-dark-few`` DCEs (the same sky flat and
standard stars; the dark AOR is the default one's first DCEs, as the simulator draws
each DCE from its own streams).  The dark AOR gives the dark, the reset level, the
read and excess noise and, from its stim flashes, the nonlinearity, so all of these
lose precision.

Printed, per product set:

* the maps against the campaign truth: stated error (median, relative to the
  default set's), actual RMS error, pull median and spread (honest errors: the
  stated error grows as the actual one does, spread ~1);
* per science observation (the default ``mips simulate`` observation of each
  ``--obs-seeds`` seed, reprocessed with the true products, the default set and the
  few-darks set): ``mips validate``'s figures (BCD pull median and spread, per-pixel
  bias spread, per-DCE calibration error mean and RMS), the median relative ``_bunc``,
  and the per-pixel calibration error measured directly: the mean over DCEs of
  ``(BCD - BCD_true) / sky``, where ``BCD_true`` is the same raw data calibrated with
  the true products (so the observation's noise cancels), its median over pixels
  (the common FLUXCONV part) taken out; its RMS over pixels, the RMS the set's
  stated ILLUM and DARK errors predict, and the spread of the per-pixel ratio
  (honest: ~1).

``--keep DIR`` keeps the two product sets (``DIR/default``, ``DIR/few``) for
``benchmarks/derived_vs_true.py``.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from calibration.bitmask import PMASK_FATAL
from calibration.products import EXTNAMES, load_products, write_products
from mips.calibrate import run_calibrate
from mips.validate import validate
from mipssim.campaign.ge import true_products
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.bcd import GE_FATAL
from reprocess.ge_pipeline import ReprocessConfig, reprocess_ge

MAPS = ("dark", "illum", "enl_zero", "enl_beta", "read_noise")
FIGURES = ("bcd_pull_median", "bcd_pull_spread", "pixel_bias_spread", "cal_error_mean", "cal_error_rms",
           "bcd_rel_unc_median")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(70, 160), default=70)
    ap.add_argument("--seed", type=int, default=1, help="campaign seed (both product sets)")
    ap.add_argument("--n-dark", type=int, default=120, help="DCEs of the default dark AOR")
    ap.add_argument("--n-dark-few", type=int, default=24, help="DCEs of the too-short dark AOR")
    ap.add_argument("--obs-seeds", type=int, nargs="+", default=[101, 102])
    ap.add_argument("--keep", type=Path, help="keep the product sets in this folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        sets = {"true": Path(tmp) / "true.fits"}
        write_products(true_products(args.band), sets["true"])
        for name, n_dark in (("default", args.n_dark), ("few", args.n_dark_few)):
            t0 = time.perf_counter()
            summary = run_calibrate(args.band, root / name, seed=args.seed, n_dark=n_dark, overwrite=True)
            sets[name] = Path(summary["products"])
            print(f"{name}: mips calibrate --band {args.band} --seed {args.seed} --n-dark {n_dark} "
                  f"({time.perf_counter() - t0:.0f} s) -> {sets[name]}")
        print_maps(args.band, {k: load_products(args.band, p) for k, p in sets.items() if k != "true"},
                   root / "default" / "campaign" / "campaign_truth.h5",
                   n_dark={"default": args.n_dark, "few": args.n_dark_few})
        for seed in args.obs_seeds:
            print_observation(args.band, seed, sets, Path(tmp) / f"obs{seed}")


def print_maps(band: int, prods: dict, truth_path: Path, *, n_dark: dict) -> None:
    """Stated vs actual errors of the maps the dark AOR gives, per product set."""
    with h5py.File(truth_path, "r") as f:
        g = f["calibration"]
        truth = {k: g[EXTNAMES[k]][()] for k in (*MAPS, "pmask")}
        fluxconv = float(g.attrs["FLUXCONV"])
    print(f"\nmaps against the campaign truth (band {band}; stated = median error; actual = RMS of "
          "derived - true; pull = (derived - true) / error, median / spread)")
    print(f"{'map':10s} {'set':8s} {'n_dark':>6s} {'stated':>10s} {'x default':>9s} {'actual':>10s} "
          f"{'x default':>9s} {'pull median':>11s} {'spread':>7s}")
    ref = {}
    for k in MAPS:
        for name, p in prods.items():
            good = ((truth["pmask"] & PMASK_FATAL) == 0) & ((p.pmask & PMASK_FATAL) == 0)
            true = truth[k]
            if k == "illum":        # only the shape is defined
                true = true * np.median((p.illum / true)[good])
            err = np.asarray(p.error(k))
            if k == "illum":
                err = np.hypot(err, p.error("illum_enl"))
            diff = (getattr(p, k) - true)[good]
            stated, actual = float(np.median(err[good])), float(np.sqrt(np.mean(diff ** 2)))
            ref.setdefault(k, (stated, actual))
            pull = diff / err[good]
            med = float(np.median(pull))
            print(f"{k:10s} {name:8s} {n_dark[name]:6d} {stated:10.4g} "
                  f"{stated / ref[k][0]:9.2f} {actual:10.4g} {actual / ref[k][1]:9.2f} "
                  f"{med:+11.3f} {1.4826 * np.median(np.abs(pull - med)):7.3f}")
    for name, p in prods.items():
        print(f"FLUXCONV {name:8s} {p.fluxconv:.5g} +- {p.error('fluxconv'):.2g} "
              f"({100 * p.error('fluxconv') / p.fluxconv:.2f} %; true {fluxconv:.5g}, "
              f"{(p.fluxconv - fluxconv) / p.error('fluxconv'):+.2f} sigma)")


def print_observation(band: int, seed: int, sets: dict, obs: Path) -> None:
    """Reprocess one science observation with every set; validation and per-pixel figures."""
    simulate(load_config(band=band, seed=seed), obs)
    res, stacks = {}, {}
    for name, path in sets.items():
        reprocess_ge(obs, config=ReprocessConfig(products=str(path)), overwrite=True)
        res[name] = validate(obs)
        stacks[name] = _bcd_stack(obs)
    sky = stacks["true"][1]
    print(f"\nobservation seed {seed} ({len(sky)} BCDs)")
    print(f"{'figure':34s}" + "".join(f"{n:>12s}" for n in sets))
    for fig in FIGURES:
        print(f"{fig:34s}" + "".join(f"{res[n][fig]:12.4f}" for n in sets))
    print(f"{'goals met':34s}" + "".join(
        f"{sum(c['met'] is not False for c in res[n]['checks']):>9d}/{len(res[n]['checks'])}" for n in sets))
    rows = {n: _pixel_cal_error(stacks[n], stacks["true"], load_products(band, sets[n]))
            for n in sets if n != "true"}
    for label, key, fmt in (("per-pixel cal. error RMS, % sky", "rms", "12.4f"),
                            ("  stated (ILLUM, DARK), % sky", "stated", "12.4f"),
                            ("  ratio spread (honest ~1)", "spread", "12.3f")):
        print(f"{label:34s}{'-':>12s}" + "".join(f"{rows[n][key]:{fmt}}" for n in rows))


def _bcd_stack(obs: Path):
    """(BCDs, true sky, usable) stacks of the observation's BCDs, time order by name."""
    bcds, skies, ok = [], [], []
    with h5py.File(obs / "truth.h5", "r") as truth:
        for path in sorted((obs / "bcd").glob("*_bcd.fits")):
            stem = path.name[: -len("_bcd.fits")]
            bcd = fits.getdata(path).astype(float)
            mask = fits.getdata(obs / "bcd" / f"{stem}_bmask.fits").astype(np.int64)
            bcds.append(bcd)
            skies.append(truth["dce"][stem]["sky_mjysr"][()])
            ok.append(((mask & GE_FATAL) == 0) & np.isfinite(bcd))
    return np.array(bcds), np.array(skies), np.array(ok)


def _pixel_cal_error(stack, true_stack, prod) -> dict:
    """Per-pixel mean of (BCD - BCD_true) / sky over DCEs, its common median taken out, against
    the per-pixel error the set's ILLUM and DARK errors state (% of sky)."""
    bcd, sky, ok = stack
    ok = ok & true_stack[2]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)         # pixels never usable
        rel = np.where(ok, (bcd - true_stack[0]) / sky, np.nan)
        n = ok.sum(axis=0)
        mean = np.where(n > 0, np.nansum(rel, axis=0) / np.maximum(n, 1), np.nan)
        mean_sky = np.nanmean(np.where(ok, sky, np.nan), axis=0)
        stated = np.hypot(np.asarray(prod.error("illum")) / prod.illum,
                          prod.fluxconv / prod.illum * np.asarray(prod.error("dark")) / mean_sky)
    seen = (n >= 0.5 * len(bcd)) & np.isfinite(mean) & ((prod.pmask & PMASK_FATAL) == 0)
    dev = mean[seen] - np.median(mean[seen])
    ratio = dev / stated[seen]
    return {"rms": 100 * float(np.sqrt(np.mean(dev ** 2))),
            "stated": 100 * float(np.sqrt(np.mean(stated[seen] ** 2))),
            "spread": float(np.std(ratio))}


if __name__ == "__main__":
    main()
