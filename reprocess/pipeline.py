"""Reprocess one observation folder, whatever its array: dispatch on the raw files' CHNLNUM."""
from __future__ import annotations

import os
from pathlib import Path

from astropy.io import fits

from calibration.configuration import resolve

from .ge_pipeline import ReprocessReport, load_reprocess_config, reprocess_ge
from .io import InputError, raw_files
from .si_pipeline import SiConfig, reprocess_si

__all__ = ["reprocess", "band_of"]


def band_of(obs_dir: str | os.PathLike) -> int:
    """Band (24, 70, 160) of the first raw file of ``obs_dir``."""
    first = raw_files(Path(obs_dir))[0]
    try:
        chnl = int(fits.getval(first, "CHNLNUM"))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(first, f"cannot read CHNLNUM ({exc})") from None
    try:
        return {1: 24, 2: 70, 3: 160}[chnl]
    except KeyError:
        raise InputError(first, f"CHNLNUM={chnl} is not a MIPS channel (1, 2, 3)") from None


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
