"""Reprocess one observation folder, whatever its array: dispatch on the raw files' CHNLNUM.

Several folders, in parallel and resumably, are :mod:`reprocess.batch`'s job;
this module does one folder's work and commits its products with their
manifest (inputs' checksums, configuration, calibration, software).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from calibration.configuration import resolve
from calibration.folders import folder_lock

from .ge_pipeline import ReprocessConfig, ReprocessReport, load_reprocess_config, reprocess_ge
from .io import majority_band, raw_files
from .si_pipeline import SiConfig, reprocess_si

__all__ = ["reprocess", "band_of", "configure", "run_pipeline"]

log = logging.getLogger(__name__)


def band_of(obs_dir: str | os.PathLike) -> int:
    """Band (24, 70, 160) of ``obs_dir``: that of most of its readable raw files.

    Deciding by the majority, not the first file, keeps a bad or foreign file
    from choosing the pipeline (the readers then refuse that file by name).
    """
    return majority_band(raw_files(Path(obs_dir)))


def reprocess(obs_dir, *, config_file=None, keep_going=False, overwrite=False, progress=None,
              **options) -> ReprocessReport:
    """Reprocess ``obs_dir``: the Ge pipeline for 70/160 um, the Si:As one for 24 um.

    ``options`` are parameters of that pipeline's configuration (None values ignored);
    ``config_file`` a TOML file of them (defaults < file < options).  The folder
    is locked from the first read to the commit (another writer is refused).
    ``bcd/manifest.json`` is committed with the products (:class:`reprocess.batch.Manifest`).
    """
    from .batch import Manifest                 # batch schedules this module's work

    if not Path(obs_dir).is_dir():
        raw_files(Path(obs_dir))               # "no raw files to reprocess" names it
    with folder_lock(obs_dir):
        band, cfg = configure(obs_dir, config_file, options)
        return run_pipeline(obs_dir, band, cfg, keep_going=keep_going, overwrite=overwrite,
                            progress=progress, on_commit=Manifest.expected(obs_dir, band, cfg).write)


def configure(obs_dir, config_file, options: dict):
    """(band, configuration) of ``obs_dir``: its band's pipeline configuration, resolved."""
    band = band_of(obs_dir)
    if band == 24:
        return band, resolve(SiConfig, config_file, options)
    return band, load_reprocess_config(config_file, **options)


def run_pipeline(obs_dir, band: int, cfg, *, keep_going: bool, overwrite: bool, progress=None,
                 on_commit=None) -> ReprocessReport:
    """The ``band`` pipeline on ``obs_dir`` with the resolved ``cfg`` (see :func:`reprocess`)."""
    run = reprocess_si if band == 24 else reprocess_ge
    return run(obs_dir, config=cfg, keep_going=keep_going, overwrite=overwrite, progress=progress,
               on_commit=on_commit)


# Options that belong to one pipeline, with the command-line flag that sets them.
_FLAGS = {"off": "--off", "keep_first_frame": "--keep-first-frame", "stim_mode": "--stim",
          "jump_threshold": "--jump-threshold", "leak_catalog": "--leak-catalog"}


def options_for(obs_dir, options: dict) -> dict:
    """The options of ``obs_dir``'s pipeline; ValueError naming the folder for another band's."""
    band = band_of(obs_dir)
    cls = SiConfig if band == 24 else ReprocessConfig
    keys = {f.name for f in dataclasses.fields(cls)}
    foreign = [k for k, v in options.items() if k not in keys and v is not None]
    if foreign:
        flags = ", ".join(_FLAGS.get(k, k) for k in foreign)
        applies = "70 and 160 um" if band == 24 else "24 um"
        raise ValueError(f"{obs_dir}: {flags} applies to {applies} only, and this folder is "
                         f"{band} um")
    return {k: v for k, v in options.items() if k in keys}

