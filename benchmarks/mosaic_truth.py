"""A simulated observation's mosaic against the same mosaic of its true sky.

The true sky each DCE saw (``truth.h5``: ``/dce/<name>/sky_mjysr``) is written as a BCD with the
real BCD's header, uncertainty and mask, and mosaicked onto the same grid without background
matching or rejection: the truth on the mosaic grid, through the same resampling.  Printed: the
robust RMS of (mosaic - truth) / UNC over pixels covered by >= 3 BCDs, the median residual, and
the total flux ratio over the common footprint::

    mips simulate --band 70 --mode scan --seed 501 --out s70 && mips reprocess s70
    python benchmarks/mosaic_truth.py s70
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from reprocess.mosaic import make_mosaic


def truth_bcds(obs: Path, work: Path) -> list[Path]:
    """Copies of ``obs``'s BCD sets in ``work`` with the true sky as the data."""
    work.mkdir(parents=True, exist_ok=True)
    out = []
    with h5py.File(obs / "truth.h5", "r") as truth:
        for bcd in sorted((obs / "bcd").glob("*_bcd.fits")):
            stem = bcd.name[: -len("_bcd.fits")]
            for companion in (obs / "bcd").glob(f"{stem}_b*.fits"):
                if companion.name != bcd.name:
                    shutil.copy(companion, work / companion.name)
            header = fits.getheader(bcd)
            sky = truth["dce"][stem]["sky_mjysr"][()].astype(np.float32)
            fits.writeto(work / bcd.name, sky, header, overwrite=True)
            out.append(work / bcd.name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obs", help="a reprocessed simulated observation folder")
    args = ap.parse_args()
    obs = Path(args.obs)
    t0 = time.perf_counter()
    mosaic = make_mosaic(sorted((obs / "bcd").glob("*_bcd.fits")))
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        true = make_mosaic(truth_bcds(obs, Path(tmp)), match_background=False, reject_sigma=None)
    assert WCS(true[0].header).wcs.compare(WCS(mosaic[0].header).wcs)
    cov = mosaic["COV"].data
    ok = (cov >= 3) & np.isfinite(mosaic[0].data) & np.isfinite(true[0].data)
    resid = (mosaic[0].data - true[0].data)[ok]
    pull = resid / mosaic["UNC"].data[ok]
    robust = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    print(f"{obs}: {mosaic[0].header['NINPUT']} BCDs -> {mosaic[0].data.shape} mosaic in {t1 - t0:.1f} s")
    print(f"  pixels with coverage >= 3: {ok.sum()}; (mosaic - truth) / UNC robust RMS {robust:.3f}, "
          f"median {np.median(pull):+.3f}")
    print(f"  median residual {np.median(resid):+.4f} MJy/sr on a median sky of "
          f"{np.median(true[0].data[ok]):.3f} MJy/sr; total flux ratio "
          f"{mosaic[0].data[ok].sum() / true[0].data[ok].sum():.5f}")


if __name__ == "__main__":
    main()
