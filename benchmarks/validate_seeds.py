"""The default scenario of each band over several seeds: the validation figures side by side.

Simulates the default observation of a band for each seed, reprocesses it with the shipped
products and prints ``mips validate``'s figures (BCD pulls, per-pixel bias, calibration error)
with the goals met, one line per seed. Hand-run (each 70 um seed takes ~30 s on one core)::

    python benchmarks/validate_seeds.py --band 70 --seeds 301 302 303 304 305
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from mips.validate import validate
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.pipeline import reprocess

FIGURES = ("bcd_pull_median", "bcd_pull_spread", "pixel_bias_spread", "cal_error_mean", "cal_error_rms")


def one_seed(band: int, seed: int, work: Path) -> dict:
    """Simulate, reprocess and validate the default ``band`` scenario for ``seed``."""
    obs = work / f"b{band}s{seed}"
    simulate(load_config(band=band, seed=seed), obs)
    reprocess(obs)
    return validate(obs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(24, 70, 160), default=70)
    ap.add_argument("--seeds", type=int, nargs="+", default=[301, 302, 303, 304, 305])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f"band {args.band}: " + " ".join(f"{f:>18}" for f in FIGURES) + "  goals met")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = one_seed(args.band, seed, Path(tmp))
            met = sum(c["met"] is not False for c in r["checks"])
            cells = " ".join(f"{r[f]:>+18.4f}" if f.startswith(("cal", "bcd_pull_median"))
                             else f"{r[f]:>18.4f}" for f in FIGURES)
            missed = [c["figure"] for c in r["checks"] if c["met"] is False]
            print(f"seed {seed:>4} {cells}  {met}/{len(r['checks'])} {' '.join(missed)}")


if __name__ == "__main__":
    main()
