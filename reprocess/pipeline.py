"""Reprocess one observation folder, whatever its arrays: dispatch on the raw files' CHNLNUM.

A folder normally holds one array's DCEs; its band is that of most raw files
(so a stray file of another array is refused by name, not followed).  A
multi-array AOR (``mips simulate --band all``: M1, M2 and M3 files of one
AORKEY) is reprocessed only when asked (``band``):

* ``band=None`` on a folder of several arrays (two or more bands with more than
  one raw file each, :func:`reprocess.io.several_arrays`) is refused with one
  line naming the arrays and their DCE counts;
* ``band=B`` reprocesses the B files alone (the others are not read), exactly as
  a folder of B files would be;
* ``band="all"`` reprocesses every array present, each by its own pipeline and
  configuration, into ONE staging folder committed at once: ``bcd/`` then holds
  every array's products, the Ge arrays' ramp files as ``ramps_M2.h5`` and
  ``ramps_M3.h5`` (``ramps.h5`` would collide), and one manifest covering all
  of them (:class:`reprocess.batch.Manifest`).  Any array's failure fails the
  folder: nothing is committed.

Several folders, in parallel and resumably, are :mod:`reprocess.batch`'s job;
this module does one folder's work and commits its products with their
manifest (inputs' checksums, configuration, calibration, software).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from calibration.configuration import resolve
from calibration.folders import folder_lock

from .ge_pipeline import ReprocessConfig, ReprocessReport, load_reprocess_config, reprocess_ge
from .io import (InputError, majority_band, ramps_name, raw_files, raw_files_by_band, several_arrays,
                 staged_output)
from .si_pipeline import SiConfig, reprocess_si

__all__ = ["ALL", "Channel", "reprocess", "band_of", "configure", "options_for", "refuse_several_arrays",
           "run_pipeline"]

log = logging.getLogger(__name__)

ALL = "all"


@dataclass(frozen=True)
class Channel:
    """One array's share of a run: its band, resolved configuration and raw files."""

    band: int
    config: object               # ReprocessConfig (70/160) or SiConfig (24)
    paths: tuple                 # its raw files (a one-array folder: all of raw/)


def band_of(obs_dir: str | os.PathLike) -> int:
    """Band (24, 70, 160) of ``obs_dir``: that of most of its readable raw files.

    Deciding by the majority, not the first file, keeps a bad or foreign file
    from choosing the pipeline (the readers then refuse that file by name).
    """
    return majority_band(raw_files(Path(obs_dir)))


def reprocess(obs_dir, *, band=None, config_file=None, keep_going=False, overwrite=False,
              progress=None, **options) -> ReprocessReport:
    """Reprocess ``obs_dir``: the Ge pipeline for 70/160 um, the Si:As one for 24 um.

    ``band``: None (the folder's one array), 24/70/160 (that array's files only) or
    ``"all"`` (every array, one commit); see the module notes.  ``options`` are
    parameters of the pipelines' configurations (None values ignored);
    ``config_file`` a TOML file of them (defaults < file < options).  The folder
    is locked from the first read to the commit (another writer is refused).
    ``bcd/manifest.json`` is committed with the products (:class:`reprocess.batch.Manifest`).
    """
    from .batch import Manifest                 # batch schedules this module's work

    if not Path(obs_dir).is_dir():
        raw_files(Path(obs_dir))               # "no raw files to reprocess" names it
    with folder_lock(obs_dir):
        channels = configure(obs_dir, config_file, options, band=band)
        return run_pipeline(obs_dir, channels, keep_going=keep_going, overwrite=overwrite,
                            progress=progress, on_commit=Manifest.expected(obs_dir, channels).write)


def configure(obs_dir, config_file, options: dict, *, band=None) -> list[Channel]:
    """The arrays a run on ``obs_dir`` reprocesses (``band`` as in :func:`reprocess`), each with
    its pipeline's configuration, resolved.  InputError naming the raw folder when ``band`` is
    None and the folder holds several arrays, or when it holds no ``band`` files."""
    paths = raw_files(Path(obs_dir))
    if band is None:
        refuse_several_arrays(obs_dir, paths)
        one = majority_band(paths)
        return [Channel(one, _resolve(one, config_file, options), tuple(paths))]
    groups = raw_files_by_band(paths)
    if band == ALL:
        chosen = list(groups)
    elif band in groups:
        chosen = [band]
    else:
        held = ", ".join(f"{b} um: {len(g)}" for b, g in groups.items())
        raise InputError(Path(obs_dir) / "raw", f"no {band} um raw files (the folder holds {held})")
    return [Channel(b, _resolve(b, config_file, options_for_band(obs_dir, b, options, quiet=True)),
                    tuple(groups[b])) for b in chosen]


def refuse_several_arrays(obs_dir, paths) -> None:
    """InputError naming ``obs_dir/raw``, its arrays and their DCE counts, when ``paths`` are the
    raw files of several arrays (:func:`reprocess.io.several_arrays`)."""
    groups = raw_files_by_band(paths)
    if several_arrays(groups):
        counts = ", ".join(f"{b} um: {len(g)} DCE{'s' * (len(g) > 1)}" for b, g in groups.items())
        raise InputError(Path(obs_dir) / "raw",
                         f"raw files of {len(groups)} arrays ({counts}): reprocess them all "
                         f"with --band all, or one with --band {'|'.join(map(str, groups))}")


def _resolve(band: int, config_file, options: dict):
    if band == 24:
        return resolve(SiConfig, config_file, options)
    return load_reprocess_config(config_file, **options)


def run_pipeline(obs_dir, channels: list[Channel], *, keep_going: bool, overwrite: bool,
                 progress=None, on_commit=None) -> ReprocessReport:
    """Each array's pipeline on its raw files, committed at once (see the module notes)."""
    if len(channels) == 1:
        ch = channels[0]
        run = reprocess_si if ch.band == 24 else reprocess_ge
        return run(obs_dir, config=ch.config, keep_going=keep_going, overwrite=overwrite,
                   progress=progress, on_commit=on_commit, paths=ch.paths)
    bcd_dir = Path(obs_dir) / "bcd"
    total = sum(len(ch.paths) for ch in channels)
    report = ReprocessReport(out_dir=bcd_dir)
    with staged_output(bcd_dir, overwrite) as stage:
        done = 0
        for ch in channels:
            extra = {} if ch.band == 24 else {"ramps_name": ramps_name(ch.band, several=True)}
            run = reprocess_si if ch.band == 24 else reprocess_ge
            one = run(obs_dir, config=ch.config, keep_going=keep_going, overwrite=overwrite,
                      progress=_share(progress, done, len(ch.paths), total), paths=ch.paths,
                      stage=stage, **extra)
            report.n_bcd += one.n_bcd
            report.n_stim += one.n_stim
            report.failures += one.failures
            done += len(ch.paths)
            log.info("%d um: %d BCDs", ch.band, one.n_bcd)
        if on_commit is not None:
            on_commit(stage, report)
    return report


def _share(progress, before: int, n: int, total: int):
    """``progress`` of one array's run (its own done/total) as a share of all arrays' raw files."""
    if progress is None:
        return None
    return lambda done, of: progress(before + round(n * done / max(of, 1)), total)


# Options that belong to one pipeline, with the command-line flag that sets them.
_FLAGS = {"off": "--off", "keep_first_frame": "--keep-first-frame", "stim_mode": "--stim",
          "jump_threshold": "--jump-threshold", "leak_catalog": "--leak-catalog"}


def options_for(obs_dir, options: dict, *, band=None) -> dict:
    """The options that apply to the run (``band`` as in :func:`reprocess`); ValueError naming
    the folder for an option of a pipeline the run does not use."""
    if band is None:
        paths = raw_files(Path(obs_dir))
        refuse_several_arrays(obs_dir, paths)
        return options_for_band(obs_dir, majority_band(paths), options)
    if band != ALL:
        return options_for_band(obs_dir, band, options)
    bands = list(raw_files_by_band(raw_files(Path(obs_dir))))
    if options.get("products") is not None and len(bands) > 1:
        raise ValueError(f"{obs_dir}: --products names one array's calibration; with --band all "
                         f"each array uses its shipped products (or reprocess one with --band B)")
    keys = set().union(*({f.name for f in dataclasses.fields(_config_class(b))} for b in bands))
    foreign = [k for k, v in options.items() if k not in keys and v is not None]
    if foreign:
        raise ValueError(f"{obs_dir}: {', '.join(_FLAGS.get(k, k) for k in foreign)} applies to "
                         f"none of its arrays ({', '.join(f'{b} um' for b in bands)})")
    return {k: v for k, v in options.items() if k in keys}


def _config_class(band: int):
    return SiConfig if band == 24 else ReprocessConfig


def options_for_band(obs_dir, band: int, options: dict, *, quiet: bool = False) -> dict:
    """The options of ``band``'s pipeline; ValueError naming the folder for another band's
    (``quiet``: those are dropped, for a multi-array run whose options were checked as a whole)."""
    keys = {f.name for f in dataclasses.fields(_config_class(band))}
    foreign = [k for k, v in options.items() if k not in keys and v is not None]
    if foreign and not quiet:
        flags = ", ".join(_FLAGS.get(k, k) for k in foreign)
        applies = "70 and 160 um" if band == 24 else "24 um"
        raise ValueError(f"{obs_dir}: {flags} applies to {applies} only, and this folder is "
                         f"{band} um")
    return {k: v for k, v in options.items() if k in keys}
