"""Coverage of the 24 um calibration scalars' credible intervals over campaign seeds.

For each seed: simulate a 24 um campaign, derive the products, and record
whether the 68 % and 95 % credible intervals of DROOP, RDROOP, the read-2 law
(READ2, READ2SCL) and the first-frame factors hold the truth, with the map pull
medians and spreads.  Prints coverage per scalar with its binomial error
(sqrt(p (1 - p) / n) at the nominal p).

    PYTHONPATH=. python benchmarks/si_calib_coverage.py --seeds 50 [--small] [--out DIR]

``--small`` uses the reduced campaign of tests/test_calib_si.py (~20 s a seed
instead of ~45 s).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from mips.calib_si import calibrate_si, si_pulls
from mipssim.campaign.si import SiCampaignPlan

SMALL = SiCampaignPlan(n_dark_aors=6, n_dark3_aors=1, n_flat_dce=12, n_droop_dce=14,
                       flat_csm_pix=(0.0, 11.0, -11.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write per-seed results (JSON) here")
    args = ap.parse_args()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            prod = calibrate_si(seed=seed, workdir=Path(tmp) / "c", chains=Path(tmp) / "chains.h5",
                                plan=SMALL if args.small else None)
            pulls = si_pulls(prod, prod.meta["truth"])
        pulls.pop("pmask")
        rows.append({"seed": seed, **pulls})
        print(seed, " ".join(f"{k}:{v['pull']:+.2f}" for k, v in pulls["scalars"].items()), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "si_calib_coverage.json").write_text(json.dumps(rows, indent=1))
    n = len(rows)
    print(f"\n{n} seeds ({'small' if args.small else 'default'} campaign)")
    print("scalar      in 68% (nominal 0.68 +- {:.3f})   in 95% (nominal 0.95 +- {:.3f})".format(
        np.sqrt(0.68 * 0.32 / n), np.sqrt(0.95 * 0.05 / n)))
    for key in rows[0]["scalars"]:
        c68 = np.mean([r["scalars"][key]["in68"] for r in rows])
        c95 = np.mean([r["scalars"][key]["in95"] for r in rows])
        print(f"  {key:10s}  {c68:.3f}                           {c95:.3f}")
    print("map        pull median (mean over seeds)   spread (mean over seeds)")
    for ext in rows[0]["maps"]:
        med = np.mean([r["maps"][ext]["median"] for r in rows])
        spr = np.mean([r["maps"][ext]["spread"] for r in rows])
        print(f"  {ext:9s}  {med:+.3f}                          {spr:.3f}")


if __name__ == "__main__":
    main()
