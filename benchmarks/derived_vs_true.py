"""Validation figures of the same observations reprocessed with two product sets side by side.

    python benchmarks/derived_vs_true.py --band 70 --products cal70/mips70_cal.fits --seeds 101 102

Each seed's default observation is simulated once, reprocessed with the simulator's
true products (``mipssim.campaign.ge.true_products``: what perfect calibration gives)
and with ``--products`` (e.g. made by ``mips calibrate``), and both are validated;
the table prints every figure for both, and the derived set's stated FLUXCONV error.
Add ``--also NAME=PATH`` for more product sets (e.g. one from a campaign with too
few darks).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from calibration.products import load_products, write_products
from mips.validate import validate
from mipssim.campaign.ge import true_products
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.ge_pipeline import ReprocessConfig, reprocess_ge

FIGURES = ("bcd_pull_median", "bcd_pull_spread", "pixel_bias_spread", "pixel_bias_robust_spread",
           "cal_error_mean", "cal_error_rms", "pull_spread")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(70, 160), default=70)
    ap.add_argument("--products", required=True, help="product set to compare with the true one")
    ap.add_argument("--also", nargs="*", default=[], metavar="NAME=PATH")
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        true_path = tmp / "true.fits"
        write_products(true_products(args.band), true_path)
        sets = {"true": true_path, "derived": Path(args.products)}
        sets.update(dict(a.split("=", 1) for a in args.also))
        for name, path in sets.items():
            prod = load_products(args.band, path)
            fc = prod.error("fluxconv") / prod.fluxconv
            print(f"{name:>10s}: {path} ({prod.calid}; FLUXCONV error {100 * fc:.2f}%)")
        print(f"{'seed':>4s} {'figure':26s}" + "".join(f"{n:>12s}" for n in sets))
        for seed in args.seeds:
            obs = tmp / f"obs{seed}"
            simulate(load_config(band=args.band, seed=seed), obs)
            res = {}
            for name, path in sets.items():
                reprocess_ge(obs, config=ReprocessConfig(products=str(path)), overwrite=True)
                res[name] = validate(obs)
            for fig in FIGURES:
                print(f"{seed:4d} {fig:26s}" + "".join(f"{res[n][fig]:12.4f}" for n in sets))
            print(f"{seed:4d} {'goals met':26s}" + "".join(
                f"{sum(c['met'] is not False for c in res[n]['checks']):>9d}/{len(res[n]['checks'])}"
                for n in sets))


if __name__ == "__main__":
    main()
