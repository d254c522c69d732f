"""Reprocess one observation folder, whatever its array: dispatch on the raw files' CHNLNUM."""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from calibration.configuration import resolve

from .ge_pipeline import ReprocessConfig, ReprocessReport, load_reprocess_config, reprocess_ge
from .io import majority_band, raw_files
from .si_pipeline import SiConfig, reprocess_si

__all__ = ["reprocess", "reprocess_many", "band_of"]


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
    ``config_file`` a TOML file of them (defaults < file < options).
    """
    if band_of(obs_dir) == 24:
        return reprocess_si(obs_dir, config=resolve(SiConfig, config_file, options),
                            keep_going=keep_going, overwrite=overwrite, progress=progress)
    cfg = load_reprocess_config(config_file, **options)
    return reprocess_ge(obs_dir, config=cfg, keep_going=keep_going, overwrite=overwrite,
                        progress=progress)


def _options_for(obs_dir, options: dict) -> dict:
    """The options that apply to ``obs_dir``'s pipeline (Ge options are ignored at 24 um and back)."""
    si = band_of(obs_dir) == 24
    keys = {f.name for f in dataclasses.fields(SiConfig if si else ReprocessConfig)}
    return {k: v for k, v in options.items() if k in keys}


def _one(obs_dir, config_file, overwrite, keep_going, options, progress=None):
    try:
        return reprocess(obs_dir, config_file=config_file, keep_going=keep_going,
                         overwrite=overwrite, progress=progress, **_options_for(obs_dir, options))
    except (ValueError, OSError) as exc:        # InputError, FileExistsError, ... : reported per folder
        return exc


def reprocess_many(obs_dirs, *, workers: int = 1, config_file=None, keep_going: bool = False,
                   overwrite: bool = False, progress=None, **options) -> list:
    """Reprocess several observation folders, ``workers`` at a time (processes).

    Returns, in the order given, each folder's ReprocessReport or the exception
    that stopped it.  Without ``keep_going`` the first failure (in that order) is
    raised once the folders already running have finished.  Folders are
    independent, so the products do not depend on ``workers``.  ``progress``
    (a callable, see :func:`reprocess`) is used when running one at a time.
    """
    args = [(d, config_file, overwrite, keep_going, options) for d in obs_dirs]
    if workers <= 1 or len(args) <= 1:
        results = []
        for a in args:
            results.append(_one(*a, progress=progress))
            if isinstance(results[-1], Exception) and not keep_going:
                raise results[-1]
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_one, *zip(*args)))
    failed = [r for r in results if isinstance(r, Exception)]
    if failed and not keep_going:
        raise failed[0]
    return results
