"""``mips demo``: simulate a default observation, reprocess it, validate it, print the report.

``--mode scan`` runs the default scan map (IOC-295's: 1616 DCEs) of the band instead and ends
with its mosaic (``DIR/mosaic.fits``).  ``--band all`` runs the three arrays of one AOR (one
sky) in one folder, reprocessed with ``--band all`` and validated array by array (scan maps:
one mosaic per array, ``DIR/mosaic_<band>um.fits``).  Its exit status is validation's: 0 when
every goal is met, 1 when one is missed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mipssim.config import aor_configs, load_config
from mipssim.observe import simulate, simulate_aor
from reprocess.pipeline import reprocess

from .cli import Progress
from .validate import format_report, plot_paths, plot_validation, validate, write_json

__all__ = ["run_demo"]


def run_demo(out: str | Path = "demo_out", *, band: int | str = 70, seed: int = 1,
             n_dce: int | None = None, mode: str = "photometry", overwrite: bool = False) -> int:
    """Run the whole chain into ``out`` (``band`` 24, 70, 160 or "all"); returns 0 when every
    validation goal is met, else 1."""
    out = Path(out)
    t0 = time.monotonic()
    if band == "all":
        simulate_aor(aor_configs(seed=seed, n_dce=n_dce, mode=mode), out, overwrite=overwrite,
                     progress=Progress("simulate"))
    else:
        simulate(load_config(band=band, seed=seed, n_dce=n_dce, mode=mode), out, overwrite=overwrite,
                 progress=Progress("simulate"))
    t1 = time.monotonic()
    rep = reprocess(out, band="all" if band == "all" else None, overwrite=overwrite,
                    progress=Progress("reprocess"))
    t2 = time.monotonic()
    res = validate(out)
    write_json(res, out / "validation.json")
    plot_validation(res, out / "validation.png")
    plots = ", ".join(map(str, plot_paths(res, out / "validation.png")))
    t3 = time.monotonic()
    n_raw = len(list((out / "raw").glob("*_raw.fits")))
    print(f"\nMIPS {band if band != 'all' else '24+70+160'} um {mode} demo: {n_raw} DCEs simulated in {t1 - t0:.1f} s, "
          f"{rep.n_bcd} BCDs reprocessed in {t2 - t1:.1f} s, validated in {t3 - t2:.1f} s\n")
    print(format_report(res))
    files = f"{out}/raw, {out}/truth.h5, {out}/bcd"
    if mode == "scan":
        for b in ((24, 70, 160) if band == "all" else (None,)):
            files += f", {_mosaic(out, overwrite, band=b)}"
    print(f"\nfiles: {files}; report {out}/validation.json, plot {plots}")
    return 0 if res["goals_met"] else 1


def _mosaic(out: Path, overwrite: bool, *, band: int | None = None) -> Path:
    """The scan map's mosaic, ``out/mosaic.fits`` (``mosaic_<band>um.fits`` for one array of
    several), written atomically."""
    from reprocess.mosaic import make_mosaic, write_mosaic
    path = out / ("mosaic.fits" if band is None else f"mosaic_{band}um.fits")
    if path.exists() and not overwrite:      # refused before the work, not after
        raise FileExistsError(f"{path}: exists (use --overwrite to replace it)")
    t0 = time.monotonic()
    pattern = "*_bcd.fits" if band is None else f"SPITZER_M{(24, 70, 160).index(band) + 1}_*_bcd.fits"
    hdul = make_mosaic(sorted((out / "bcd").glob(pattern)), band=band)
    write_mosaic(hdul, path, overwrite=overwrite)
    ny, nx = hdul[0].data.shape
    print(f"\nmosaic of {hdul[0].header['NINPUT']} BCDs: {nx} x {ny} pixels, median coverage "
          f"{float(np.median(hdul['COV'].data[hdul['COV'].data > 0])):.0f}, made in "
          f"{time.monotonic() - t0:.1f} s")
    return path
