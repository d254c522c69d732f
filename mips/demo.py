"""``mips demo``: simulate a default observation, reprocess it, validate it, print the report.

Its exit status is validation's: 0 when every goal is met, 1 when one is missed.
"""
from __future__ import annotations

import time
from pathlib import Path

from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.pipeline import reprocess

from .cli import Progress
from .validate import format_report, plot_validation, validate, write_json

__all__ = ["run_demo"]


def run_demo(out: str | Path = "demo_out", *, band: int = 70, seed: int = 1,
             n_dce: int | None = None, overwrite: bool = False) -> int:
    """Run the whole chain into ``out``; returns 0 when every validation goal is met, else 1."""
    out = Path(out)
    cfg = load_config(band=band, seed=seed, n_dce=n_dce)
    t0 = time.monotonic()
    simulate(cfg, out, overwrite=overwrite, progress=Progress("simulate"))
    t1 = time.monotonic()
    rep = reprocess(out, overwrite=overwrite, progress=Progress("reprocess"))
    t2 = time.monotonic()
    res = validate(out)
    write_json(res, out / "validation.json")
    plot_validation(res, out / "validation.png")
    t3 = time.monotonic()
    print(f"\nMIPS {band} um demo: {cfg.n_dce} DCEs simulated in {t1 - t0:.1f} s, "
          f"{rep.n_bcd} BCDs reprocessed in {t2 - t1:.1f} s, validated in {t3 - t2:.1f} s\n")
    print(format_report(res))
    print(f"\nfiles: {out}/raw, {out}/truth.h5, {out}/bcd; report {out}/validation.json, "
          f"plot {out}/validation.png")
    return 0 if res["goals_met"] else 1
