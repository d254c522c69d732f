"""The extra flat field of a reprocessed 24 um observation against the flat error it really has.

A BCD divided by the product's flat at its scan-mirror position keeps the ratio
``true flat / product flat`` (the product's error, a mirror position the product
lacks).  The simulator knows the true flat (``gainflat x spot_map(csm)``), so each
group's extra flat (``reprocess.selfcal``) is scored against the mean true ratio
of its BCDs, both normalised to median 1::

    mips simulate --band 24 --mode scan --seed 601 --out s24 && mips reprocess s24
    python benchmarks/extra_flat.py s24 [--perturb 1.0]

``--perturb P`` reprocesses with the shipped products' flats multiplied by a
P % random pixel pattern and a 10 %-deep spot (a wrong product, as from another
scan rate), into a scratch copy, and scores the extra flat against that ratio.
Printed per group: pixels, median pull, pull spread (MAD), median error, RMS of
the true ratio (what the extra flat corrects) and of the ratio left after it.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from calibration.products import load_si_products, write_si_products
from mipssim.config import load_config
from mipssim.si_as import default_si_detector
from reprocess.selfcal import flatfield_observation
from reprocess.si_pipeline import reprocess_si


def true_ratio(obs: Path, products, members: list[Path]) -> np.ndarray:
    """What the extra flat of ``members`` should measure, median 1: the mean over the BCDs of
    ``true flat / product flat`` plus the dark the product gets wrong over the BCD's sky level
    (``FLUXCONV (dark_true - dark_product) / flat_product / level``: additive, so a flat made of
    normalised BCDs holds it at the group's mean ``1 / level``)."""
    with h5py.File(obs / "truth.h5", "r") as f:
        toml = f.attrs["config"]
        levels = {p.name: float(np.median(f["dce"][p.name[: -len("_bcd.fits")]]["sky_mjysr"][()]))
                  for p in members}
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as tmp:
        tmp.write(toml if isinstance(toml, str) else toml.decode())
        tmp.flush()
        cfg = load_config(tmp.name)
    det = default_si_detector(cfg)
    acc = 0.0
    for p in members:
        h = fits.getheader(p)
        csm, dcenum = float(h["CSM_PRED"]), int(h["DCENUM"])
        flat = products.flat_for(csm)[0]
        dark = det.dark(dcenum, cfg.jailbar_factors, include_jailbar=cfg.include_jailbar) \
            if cfg.include_dark else 0.0
        acc = acc + det.gainflat * det.spot_map(csm, include=cfg.include_spots) / flat \
            + products.fluxconv * (dark - products.dark_for(dcenum)) / flat / levels[p.name]
    ratio = acc / len(members)
    return ratio / np.nanmedian(ratio)


def perturbed(products, percent: float, seed: int = 7):
    rng = np.random.default_rng(seed)
    shape = products.flats.shape[1:]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pattern = (1 + percent / 100 * rng.standard_normal(shape)) * (
        1 - 0.1 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / (2 * 2.0 ** 2)))
    return dataclasses.replace(products, flats=products.flats * pattern)


def score(obs: Path, out: Path, products) -> None:
    t0 = time.perf_counter()
    report = flatfield_observation(obs, out, overwrite=True)
    dt = time.perf_counter() - t0
    for group, flat in report.flats.items():
        truth = true_ratio(obs, products, report.members[group])
        ok = np.isfinite(flat.value) & np.isfinite(truth)
        scale = np.median(flat.value[ok] / truth[ok])
        pull = (flat.value - scale * truth)[ok] / flat.error[ok]
        left = (truth / flat.value * scale)[ok]
        print(f"group {group}: {ok.sum()} px from {len(report.members[group])} BCDs; pull median "
              f"{np.median(pull):+.3f}, spread {1.4826 * np.median(np.abs(pull - np.median(pull))):.3f}; "
              f"median error {100 * np.median(flat.error[ok]):.4f} %; true ratio RMS "
              f"{100 * np.std(truth[ok]):.3f} % -> after {100 * np.std(left):.4f} %")
    print(f"{len(report.written)} BCDs in {dt:.1f} s; {100 * report.masked_fraction:.1f} % masked")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obs", type=Path, help="a reprocessed 24 um observation folder with truth.h5")
    ap.add_argument("--perturb", type=float, default=None, help="percent pixel error put into the flats")
    args = ap.parse_args()
    products = load_si_products()
    with tempfile.TemporaryDirectory() as tmp:
        obs = args.obs
        if args.perturb is not None:
            products = perturbed(products, args.perturb)
            obs = Path(tmp) / "obs"
            obs.mkdir()
            shutil.copytree(args.obs / "raw", obs / "raw")
            shutil.copy(args.obs / "truth.h5", obs / "truth.h5")
            cal = Path(tmp) / "perturbed_cal.fits"
            write_si_products(products, cal, provenance=f"shipped flats x {args.perturb} % pattern")
            reprocess_si(obs, products=load_si_products(cal))
        score(obs, Path(tmp) / "flat", products)


if __name__ == "__main__":
    main()
