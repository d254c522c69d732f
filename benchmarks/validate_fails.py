"""``mips validate`` against deliberately wrong products: the figures that make it exit 1.

The set-up of tests/test_validate_fail.py (a 48-DCE 70 um bright field, seed 29) reprocessed with the
shipped products, with a 1 % per-pixel ILLUM error and with a 2 % FLUXCONV error; prints the
per-pixel bias, the calibration error's mean and the goals each run misses::

    python benchmarks/validate_fails.py
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from calibration.products import load_products, write_products
from mips.calproducts import perturbed_products
from mips.validate import validate
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.pipeline import reprocess

RUNS = {"honest": None, "ILLUM 1 % per pixel": {"illum_rms": 0.01},
        "FLUXCONV +2 %": {"fluxconv_factor": 1.02}}


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        simulate(load_config(band=70, n_dce=48, seed=29, zodi_mjysr=300.0), raw)
        for n, (label, perturbation) in enumerate(RUNS.items()):
            products = None
            if perturbation:
                products = tmp / f"products{n}.fits"
                write_products(perturbed_products(load_products(70), seed=7, **perturbation), products,
                               provenance="benchmarks/validate_fails.py: wrong on purpose")
            obs = tmp / f"obs{n}"
            shutil.copytree(raw, obs)
            reprocess(obs, products=str(products) if products else None)
            r = validate(obs)
            missed = [c["figure"] for c in r["checks"] if c["met"] is False]
            print(f"{label:<22} per-pixel bias spread {r['pixel_bias_spread']:6.3f}   calibration mean "
                  f"{100 * r['cal_error_mean']:+7.3f} %   missed: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
