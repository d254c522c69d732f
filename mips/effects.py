"""What each Ge detector effect costs and what each correction buys: the effect table.

The 24 um validation recalibrates every DCE in memory with each correction off
(:mod:`mips.validate_si`).  A Ge effect lives in the raw reads, so its cost is
measured by simulating the same observation again with that one effect off --
the same seed gives the same noise for every other effect, because each effect
draws from its own stream per DCE (:mod:`mipssim.streams`) -- and reprocessing
and validating it like the original.  A correction's gain is measured the other
way round: the original raw data reprocessed with that one correction off.
Each row of the table holds the validation figures of one such variant beside
the original's ("all on"), so the difference is the effect's cost or the
correction's gain.

This is slow by nature (a simulation and a reprocessing per row: about 20 s
each for the default 240-DCE 70 um observation); ``mips validate DIR --effects``
runs it on request and writes the table beside the validation.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import h5py
from astropy.table import Table

from mips.validate import validate
from mipssim.config import SimConfig, load_config
from mipssim.observe import simulate
from reprocess.ge_pipeline import ReprocessConfig, reprocess_ge

__all__ = ["GE_EFFECTS", "GE_CORRECTIONS", "effect_table", "format_table"]

log = logging.getLogger(__name__)

# simulator switches (SimConfig.include_<name>) whose cost the table measures
GE_EFFECTS = ("poisson", "read_noise", "excess_noise", "reset_noise", "dark", "drift",
              "cosmic_rays", "cr_responsivity", "anneals", "nonlinearity", "pointing_jitter",
              "first_stim", "transient")   # (those off in the observation are skipped)
# reprocessing switched off, as ReprocessConfig overrides
GE_CORRECTIONS = {
    "nonlinearity": {"nonlinearity": False},
    "stim tracking": {"stim_mode": "constant"},
    "first-flash check": {"first_stim": "keep"},
    "jump detection": {"jump_threshold": 1e6},
}
FIGURES = ("cal_error_mean", "cal_error_rms", "bcd_pull_median", "bcd_pull_spread",
           "pixel_bias_spread", "pull_spread")


def effect_table(obs_dir: str | os.PathLike, *, effects=GE_EFFECTS, corrections=GE_CORRECTIONS,
                 work_dir: str | os.PathLike | None = None) -> Table:
    """The effect table of the reprocessed Ge observation ``obs_dir`` (see the module notes).

    Parameters
    ----------
    obs_dir : path
        A simulated (``truth.h5``) and reprocessed (``bcd/``) 70 or 160 um observation.
    effects : sequence of str
        Simulator effects to switch off in turn (names of ``SimConfig.include_*``).
    corrections : dict
        Name -> :class:`~reprocess.ge_pipeline.ReprocessConfig` overrides, one row each.
    work_dir : path, optional
        Where the variants are simulated and reprocessed (a temporary folder by default,
        removed afterwards).

    Returns
    -------
    astropy.table.Table
        One row per variant: ``variant`` ("all on", "<effect> off in the simulator",
        "<correction> off"), the figures of :data:`FIGURES` and ``goals_met``.
    """
    obs = Path(obs_dir)
    cfg = _config_of(obs)
    if cfg.band not in (70, 160):
        raise ValueError(f"{obs}: the Ge effect table is for 70 or 160 um, not {cfg.band}")
    rows = [_row("all on", validate(obs))]
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for name in effects:
            if not getattr(cfg, f"include_{name}"):
                continue
            var = Path(tmp) / f"{name}_off"
            log.info("effect table: simulating with %s off", name)
            simulate(_with(cfg, **{f"include_{name}": False}), var)
            reprocess_ge(var)
            rows.append(_row(f"{name} off in the simulator", validate(var)))
        for name, overrides in corrections.items():
            var = Path(tmp) / name.replace(" ", "_")
            var.mkdir()
            (var / "raw").symlink_to((obs / "raw").resolve())
            (var / "truth.h5").symlink_to((obs / "truth.h5").resolve())
            log.info("effect table: reprocessing with %s off", name)
            reprocess_ge(var, config=ReprocessConfig(**overrides))
            rows.append(_row(f"{name} off", validate(var)))
    table = Table(rows=rows, names=("variant", *FIGURES, "goals_met"))
    table.meta["observation"] = str(obs)
    table.meta["note"] = ("validation figures of each variant; the difference from 'all on' is the "
                          "effect's cost or the correction's gain")
    return table


def _config_of(obs: Path) -> SimConfig:
    """The simulator configuration recorded in ``obs/truth.h5``."""
    with h5py.File(obs / "truth.h5", "r") as truth:
        text = truth.attrs["config"]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(text)
    try:
        return load_config(fh.name)
    finally:
        os.unlink(fh.name)


def _with(cfg: SimConfig, **changes) -> SimConfig:
    return dataclasses.replace(cfg, **changes)


def _row(variant: str, res: dict) -> tuple:
    met = sum(c["met"] is True for c in res["checks"])
    judged = sum(c["met"] is not None for c in res["checks"])
    return (variant, *(float(res.get(f, float("nan"))) for f in FIGURES), f"{met}/{judged}")


def format_table(table: Table) -> list[str]:
    """Report lines of :func:`effect_table`."""
    lines = ["    each effect off in the simulator, or each correction off (same seed):",
             f"      {'variant':<36} {'cal mean':>9} {'cal RMS':>8} {'pull med':>9} "
             f"{'pull spr':>9} {'pix bias':>9} {'slope spr':>9} {'goals':>6}"]
    for r in table:
        lines.append(f"      {r['variant']:<36} {100 * r['cal_error_mean']:+8.3f}% "
                     f"{100 * r['cal_error_rms']:7.3f}% {r['bcd_pull_median']:+9.4f} "
                     f"{r['bcd_pull_spread']:9.4f} {r['pixel_bias_spread']:9.3f} "
                     f"{r['pull_spread']:9.4f} {r['goals_met']:>6}")
    return lines
