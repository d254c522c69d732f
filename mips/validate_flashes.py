"""Each stim flash's stim-minus-background against the simulator's truth.

The true stim-minus-background of a flash DCE is the responsivity in force times the stim's
brightness and pattern (truth.h5: ``/dce/<name>/responsivity``, ``/detector/stim_pattern``); the
measured one is what the reprocessor kept (``bcd/ramps.h5``: ``/stim/response_dn_s`` at
``/stim/t_mjd``).  A scan map's flashes see a moving sky, so this is where the background method
shows (``benchmarks/scan_stim.py``, tests/test_scan_pipeline.py).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from calibration.bitmask import PMASK_FATAL
from calibration.instrument import band_spec

from .validate import truth_band

__all__ = ["flash_errors", "kept_flashes"]


def kept_flashes(ramps: h5py.File, flashes: list[str]) -> np.ndarray:
    """Indices into ``flashes`` (stim DCE names) of the flashes the reprocessor kept, in the order
    of ``ramps.h5``'s ``/stim`` (matched by the time of the reads each slope used)."""
    t_slope = np.array([ramps["dce"][n].attrs["mjd_slope"] for n in flashes])
    return np.array([int(np.argmin(np.abs(t_slope - t))) for t in ramps["stim/t_mjd"][()]], dtype=int)


def flash_errors(obs: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per usable flash: median and RMS over good pixels of measured / true stim-minus-background - 1."""
    with h5py.File(obs / "truth.h5", "r") as truth, h5py.File(obs / "bcd" / "ramps.h5", "r") as ramps:
        pattern = truth["detector/stim_pattern"][()]
        good = (truth["detector/pmask"][()] & PMASK_FATAL) == 0
        stim_dn_s = band_spec(truth_band(obs)).stim_dn_s
        flashes = [n for n in ramps["dce"] if ramps["dce"][n].attrs["stim"]]
        med, rms = [], []
        for k, value in zip(kept_flashes(ramps, flashes), ramps["stim/response_dn_s"][()]):
            name = flashes[k]
            true = truth["dce"][name]["responsivity"][()] * stim_dn_s * pattern
            err = (value / true - 1)[good & np.isfinite(value)]
            med.append(np.median(err))
            rms.append(np.sqrt(np.mean(err ** 2)))
    return np.array(med), np.array(rms)
