"""Writers of the observation files: raw DCEs (FITS) and the truth record (HDF5).

Formats follow the contracts in ``shared/DESIGN.md``.  Every file is written to
a temporary name and renamed, so an interrupted run never leaves a
half-written file under a final name.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from calibration.folders import hdf5_in_memory, write_atomic, write_hdf5_image

__all__ = ["raw_name", "write_raw", "write_hdus", "TruthWriter"]

SCHEMA = "mips-truth/1"


def raw_name(chnlnum: int, aorkey: int, expid: int, dcenum: int) -> str:
    """SSC file name of a raw DCE."""
    return f"SPITZER_M{chnlnum}_{aorkey}_{expid:04d}_{dcenum:04d}_0_raw.fits"


def write_raw(path: Path, cube: np.ndarray, header: fits.Header) -> None:
    """Write a raw DCE cube (uint16 DN) atomically."""
    write_hdus(path, fits.HDUList([fits.PrimaryHDU(cube, header=header)]))


def write_hdus(path: Path, hdul: fits.HDUList) -> None:
    """Write ``hdul`` atomically (serialised in memory, then one write: see ``write_atomic``)."""
    buf = io.BytesIO()
    hdul.writeto(buf)
    write_atomic(path, buf.getvalue())


class TruthWriter:
    """Accumulates the truth of an observation in ``truth.h5`` (renamed into place on close)."""

    def __init__(self, path: Path, *, seed: int, config_toml: str, software: str):
        self.path = Path(path)
        self._h5 = hdf5_in_memory(str(self.path))   # a full disk is then an OSError, not a crash
        self._h5.attrs["schema"] = SCHEMA
        self._h5.attrs["seed"] = int(seed)
        self._h5.attrs["config"] = config_toml
        self._h5.attrs["software"] = software

    def add_dce(self, name: str, *, sky_mjysr, slope_dn_s, cr_events, responsivity,
                attrs: dict) -> None:
        """Record one DCE (``name`` is the raw file name without ``_raw.fits``)."""
        grp = self._h5.create_group(f"dce/{name}")
        grp.create_dataset("sky_mjysr", data=np.asarray(sky_mjysr, dtype=np.float64))
        grp.create_dataset("slope_dn_s", data=np.asarray(slope_dn_s, dtype=np.float64))
        grp.create_dataset("responsivity", data=np.asarray(responsivity, dtype=np.float64))
        grp.create_dataset("cr_events", data=cr_events)
        for k, v in attrs.items():
            grp.attrs[k] = v

    def add_sources(self, table: Table) -> None:
        """Record the source catalogue (ra, dec in deg; fluxes in Jy)."""
        cols = [(name, "f8") for name in table.colnames]
        arr = np.zeros(len(table), dtype=cols)
        for name in table.colnames:
            col = table[name]
            arr[name] = getattr(col, "value", np.asarray(col))
        self._h5.create_dataset("sources", data=arr)

    def add_array(self, name: str, data, **attrs) -> None:
        """Record any extra array (e.g. the drift curve or the detector's maps)."""
        ds = self._h5.create_dataset(name, data=np.asarray(data))
        for k, v in attrs.items():
            ds.attrs[k] = v

    def close(self) -> None:
        """Write the file (built in memory: a few MB per AOR) into place."""
        write_hdf5_image(self._h5, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        self._h5.close()
