"""Coverage of the FLUXCONV credible intervals over many standard-star campaigns.

    python benchmarks/fluxconv_coverage.py --band 70 --seeds 50

For each seed, the standard-star AORs are simulated and reprocessed with the
simulator's true maps (so the only unknown is FLUXCONV itself), FLUXCONV's
posterior is sampled (``reprocess.calib.fluxconv``), and its 68 % and 95 %
central intervals are checked against the true value.  Prints the coverage
fractions with their binomial standard errors, the median fractional 1-sigma
and the mean pull.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np

from mips.calib_stars import fluxconv_campaign
from mipssim.campaign.ge import true_products


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(70, 160), default=70)
    ap.add_argument("--seeds", type=int, default=50, help="number of campaigns")
    ap.add_argument("--first-seed", type=int, default=1, help="seeds FIRST .. FIRST + N - 1")
    ap.add_argument("--block", type=int, default=5, help="consecutive BCDs combined before the fit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    prod = true_products(args.band)
    in68, in95, rel, pulls = [], [], [], []
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            post, _, _ = fluxconv_campaign(args.band, seed=seed, workdir=tmp, products=prod,
                                           block=args.block)
        lo68, hi68 = post.interval("fluxconv", 0.68)
        lo95, hi95 = post.interval("fluxconv", 0.95)
        in68.append(lo68 <= prod.fluxconv <= hi68)
        in95.append(lo95 <= prod.fluxconv <= hi95)
        rel.append(post.sigma("fluxconv") / post.median("fluxconv"))
        pulls.append((post.median("fluxconv") - prod.fluxconv) / post.sigma("fluxconv"))
    n = len(in68)
    for level, hits in ((0.68, in68), (0.95, in95)):
        f = np.mean(hits)
        print(f"band {args.band}: {100 * level:.0f}% intervals cover the truth in {f:.3f} of {n} "
              f"campaigns (binomial s.e. {np.sqrt(level * (1 - level) / n):.3f})")
    print(f"band {args.band}: median 1-sigma {100 * np.median(rel):.3f}% of FLUXCONV; pulls mean "
          f"{np.mean(pulls):+.2f}, std {np.std(pulls):.2f}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
