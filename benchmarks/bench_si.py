"""24 um raw -> BCD throughput and peak memory on a scan-map-sized set of 1616 DCEs.

Hand-run; not part of the tests.  A 32-DCE photometry observation is simulated
once (``mips simulate --band 24``) and its raw files are replicated, with new
DCENUM/MJD_OBS, into a 1616-DCE folder (the size of a MIPS scan map, IOC-295).
Each run reprocesses the whole folder (read, calibrate, latent flags, write
BCD + bunc + bbmsk) in a fresh process pinned to one core, and reports wall
time, DCEs/s and peak RSS.  It runs twice: with the project's FITS writer
(``reprocess.fitswrite``) and with astropy's, to show what writing our own
buys.  The goal in issue 3 is >= 200 DCEs/s on one core.

    python benchmarks/bench_si.py [--n-dce 1616] [--reps 3] [--workdir /tmp/bench_si]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from astropy.time import Time

_CHILD = r"""
import json, os, resource, sys, time
os.sched_setaffinity(0, {0})
from pathlib import Path
import reprocess.io as rio
if sys.argv[2] == "astropy":
    from astropy.io import fits
    def write_image(path, data, cards, *, overwrite, atomic=True):
        hdr = fits.Header()
        for card in cards:
            if isinstance(card, str):                     # pre-formatted card images
                hdr.extend(fits.Header.fromstring(card).cards)
            elif card[0] == "HISTORY":
                hdr.add_history(card[1])
            else:
                hdr[card[0]] = card[1:]
        fits.PrimaryHDU(data, header=hdr).writeto(path, overwrite=overwrite)
    rio.write_image = write_image
from reprocess.pipeline import reprocess
obs = Path(sys.argv[1])
t0 = time.perf_counter()
rep = reprocess(obs, overwrite=True)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "n_bcd": rep.n_bcd,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_set(workdir: Path, n_dce: int) -> Path:
    """Simulate 32 DCEs once and replicate them into an ``n_dce`` folder."""
    from astropy.io import fits

    from mipssim.config import load_config
    from mipssim.observe import simulate
    seed_dir, big = workdir / "seed32", workdir / f"set{n_dce}"
    if not (seed_dir / "truth.h5").exists():
        simulate(load_config(band=24, n_dce=32, seed=3), seed_dir, overwrite=True)
    if (big / "raw").exists() and len(list((big / "raw").glob("*_raw.fits"))) == n_dce:
        return big
    shutil.rmtree(big, ignore_errors=True)
    (big / "raw").mkdir(parents=True)
    sources = sorted((seed_dir / "raw").glob("*_raw.fits"))
    cadence_d = 11.5 / 86400.0
    for i in range(n_dce):
        with fits.open(sources[1 + i % (len(sources) - 1)]) as h:   # DCENUM 0 is not replicated
            hdr = h[0].header.copy()
            data = h[0].data
        hdr["DCENUM"] = i + 1
        hdr["MJD_OBS"] = 54000.0 + i * cadence_d
        hdr["DATE_OBS"] = Time(hdr["MJD_OBS"], format="mjd").isot      # the reader checks they agree
        name = f"SPITZER_M1_{hdr['AORKEY']}_0000_{i + 1:04d}_0_raw.fits"
        fits.PrimaryHDU(data, header=hdr).writeto(big / "raw" / name)
    return big


def run(obs: Path, writer: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(obs), writer], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-dce", type=int, default=1616)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workdir", default="/tmp/bench_si")
    args = p.parse_args()
    t0 = time.perf_counter()
    obs = build_set(Path(args.workdir), args.n_dce)
    raw_mb = sum(f.stat().st_size for f in (obs / "raw").glob("*.fits")) / 2 ** 20
    print(f"bench_si  {time.strftime('%Y-%m-%dT%H:%M:%S')}  {os.cpu_count()} cores (runs pinned to 1)"
          f"  set of {args.n_dce} DCEs ({raw_mb:.0f} MB raw) built in {time.perf_counter() - t0:.0f} s")
    print(f"{'writer':<10} {'wall s (median, min-max)':>26} {'DCEs/s':>8} {'peak RSS MB':>12}")
    rows = {}
    for writer in ("fitswrite", "astropy"):
        res = [run(obs, writer) for _ in range(args.reps)]
        secs = sorted(r["seconds"] for r in res)
        med = secs[len(secs) // 2]
        rss = max(r["peak_rss_mb"] for r in res)
        rows[writer] = med
        print(f"{writer:<10} {med:10.2f} ({secs[0]:.2f}-{secs[-1]:.2f}) {' ':>6} "
              f"{res[0]['n_bcd'] / med:8.1f} {rss:12.0f}")
    print(f"fitswrite / astropy throughput: x{rows['astropy'] / rows['fitswrite']:.2f}  "
          f"(goal >= 200 DCEs/s on one core)")


if __name__ == "__main__":
    main()
