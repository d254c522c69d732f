"""Stim flashes in a scan map: each flash's error against truth, moving-sky background vs the archive's.

Simulates a Ge scan map, reprocesses it twice -- flashes' backgrounds from the sky their pixels saw in
the neighbouring DCEs (``moving_sky``, the default) and from the same pixels' values there (the
archive's way) -- and prints, per flash, the array-median and the RMS over pixels of
``measured / true - 1`` for both, where the true stim-minus-background is the responsivity in force
times the stim's brightness and pattern (truth.h5).  Then both runs' validation figures.

    python benchmarks/scan_stim.py --band 70 --seed 501 [--rate medium] [--legs 2 --leg-arcmin 5]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mips.validate import validate
from mips.validate_flashes import flash_errors
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.pipeline import reprocess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(70, 160), default=70)
    ap.add_argument("--seed", type=int, default=501)
    ap.add_argument("--rate", default="medium")
    ap.add_argument("--legs", type=int, default=None)
    ap.add_argument("--leg-arcmin", type=float, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    overrides = {k: v for k, v in (("scan_legs", args.legs), ("scan_leg_arcmin", args.leg_arcmin))
                 if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "moving"
        simulate(load_config(band=args.band, seed=args.seed, mode="scan", scan_rate=args.rate,
                             **overrides), base)
        archive = Path(tmp) / "archive"
        shutil.copytree(base, archive)
        reprocess(base)
        reprocess(archive, moving_sky=False)
        runs = {"moving sky": base, "same pixels (archive)": archive}
        errors = {label: flash_errors(obs) for label, obs in runs.items()}
        print(f"band {args.band}, seed {args.seed}, {args.rate} rate: flash error against truth "
              f"(median over pixels / RMS over pixels), %")
        print(f"{'flash':>5}  " + "  ".join(f"{label:>28}" for label in runs))
        n = min(len(m) for m, _ in errors.values())
        for k in range(n):
            print(f"{k:>5}  " + "  ".join(f"{100 * m[k]:>+13.3f} / {100 * r[k]:>11.3f}"
                                          for m, r in errors.values()))
        print(f"{'RMS':>5}  " + "  ".join(f"{100 * np.sqrt(np.mean(m ** 2)):>13.3f} / "
                                          f"{100 * np.sqrt(np.mean(r ** 2)):>11.3f}"
                                          for m, r in errors.values()))
        for label, obs in runs.items():
            r = validate(obs)
            missed = [c["figure"] for c in r["checks"] if c["met"] is False]
            print(f"{label:<24} cal mean {100 * r['cal_error_mean']:+.3f} %  RMS {100 * r['cal_error_rms']:.3f} %"
                  f"  BCD pulls {r['bcd_pull_median']:+.3f} / {r['bcd_pull_spread']:.3f}  "
                  f"missed: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
