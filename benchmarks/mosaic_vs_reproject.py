"""Mosaic of many BCDs: ``reprocess.mosaic.make_mosaic`` beside reproject's ``reproject_and_coadd``.

Both get the same BCDs (a reprocessed observation folder, e.g. the 1616-DCE 70 um scan map) and the
same output grid; reproject runs with ``match_background=True`` and ``combine_function="mean"`` (its
closest equivalent: no outlier rejection, no uncertainty).  Each (code, repeat) runs in a fresh
process; wall time of the mosaic alone and the peak RSS it added are printed, medians over repeats,
and their ratios::

    mips simulate --band 70 --mode scan --seed 501 --out s70 && mips reprocess s70
    python benchmarks/mosaic_vs_reproject.py s70 [--reps 3] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_ours(paths: list[Path]) -> dict:
    from reprocess.mosaic import make_mosaic
    before = _rss_mb()
    t0 = time.perf_counter()
    hdul = make_mosaic(paths)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": _rss_mb() - before, "shape": list(hdul[0].data.shape)}


def _run_reproject(paths: list[Path]) -> dict:
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    from reprocess.bcd import load_bcd
    from reprocess.mosaic.grid import mosaic_grid
    wcs_out, shape = mosaic_grid(paths, band=None, pixel_arcsec=None)
    before = _rss_mb()
    t0 = time.perf_counter()
    inputs = []
    for p in paths:
        bcd = load_bcd(p)
        inputs.append((np.where(bcd.mask, np.nan, bcd.data), WCS(fits.getheader(p))))
    array, _ = reproject_and_coadd(inputs, wcs_out, shape_out=shape, reproject_function=reproject_interp,
                                   match_background=True, combine_function="mean")
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": _rss_mb() - before, "shape": list(array.shape)}


def _child(code: str, folder: str, limit: int | None) -> None:
    paths = sorted((Path(folder) / "bcd").glob("*_bcd.fits"))[:limit]
    out = (_run_ours if code == "ours" else _run_reproject)(paths)
    out["n"] = len(paths)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="a reprocessed observation folder (its bcd/ is mosaicked)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N BCDs")
    ap.add_argument("--child", choices=("ours", "reproject"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.folder, args.limit)
        return
    results: dict = {"ours": [], "reproject": []}
    for _ in range(args.reps):
        for code in results:
            cmd = [sys.executable, __file__, args.folder, "--child", code]
            cmd += ["--limit", str(args.limit)] if args.limit else []
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[code].append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = {code: {k: float(np.median([r[k] for r in runs])) for k in ("wall_s", "rss_mb")}
           for code, runs in results.items()}
    n = results["ours"][0]["n"]
    print(f"{n} BCDs -> {results['ours'][0]['shape']} mosaic; median of {args.reps} runs, each in a fresh process")
    print(f"{'code':<44} {'wall s':>8} {'peak dRSS MB':>13}")
    print(f"{'reprocess.mosaic.make_mosaic (+ UNC, COV, rejection)':<44} {med['ours']['wall_s']:>8.1f} "
          f"{med['ours']['rss_mb']:>13.0f}")
    print(f"{'reproject_and_coadd(match_background=True)':<44} {med['reproject']['wall_s']:>8.1f} "
          f"{med['reproject']['rss_mb']:>13.0f}")
    print(f"speed ratio (reproject / ours) {med['reproject']['wall_s'] / med['ours']['wall_s']:.2f}; "
          f"memory ratio {med['reproject']['rss_mb'] / max(med['ours']['rss_mb'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
