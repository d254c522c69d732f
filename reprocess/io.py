"""Reading raw Ge DCEs and writing products, with clear errors and atomic writes.

Readers follow the SSC conventions (``mips-facts.md`` section 6): a raw Ge DCE
is a primary-HDU integer cube ``(NREADS, NY, NX)`` in DN with the identity,
timing and WCS keywords listed in ``REQUIRED_KEYWORDS``.  Anything else is
refused with :class:`InputError`, whose message names the file and the
problem in one line; nothing is guessed.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["InputError", "RawDCE", "REQUIRED_KEYWORDS", "read_raw_dce", "write_hdul",
           "product_name"]

REQUIRED_KEYWORDS = ("INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "SAMPTIME", "EXPTIME",
                     "MJD_OBS", "STIMFLSH", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CTYPE1",
                     "CTYPE2")
IDENTITY_KEYWORDS = ("TELESCOP", "INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "AOT_TYPE",
                     "EXPTYPE", "FOVNAME", "SAMPTIME", "EXPTIME", "NRAMPS", "MJD_OBS", "DATE_OBS",
                     "STIMFLSH", "PA", "PXSCAL1", "PXSCAL2")
_BAND_OF_CHANNEL = {1: 24, 2: 70, 3: 160}


class InputError(ValueError):
    """A raw input that cannot be processed; ``str()`` is a one-line '<file>: <problem>'."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class RawDCE:
    """One raw Ge DCE."""

    path: Path
    reads: np.ndarray        # (NREADS, NY, NX) raw DN, as stored
    header: fits.Header

    @property
    def band(self) -> int:
        return _BAND_OF_CHANNEL[int(self.header["CHNLNUM"])]

    @property
    def stim(self) -> bool:
        return bool(self.header["STIMFLSH"])

    @property
    def mjd_mid(self) -> float:
        """MJD at the middle of the DCE."""
        return float(self.header["MJD_OBS"]) + 0.5 * self.reads.shape[0] * float(
            self.header["SAMPTIME"]) / 86400.0

    @property
    def nramps(self) -> int:
        return int(self.header.get("NRAMPS", 1))

    @property
    def stem(self) -> str:
        """File name without the ``_raw.fits`` suffix."""
        name = self.path.name
        return name[: -len("_raw.fits")] if name.endswith("_raw.fits") else self.path.stem


def read_raw_dce(path: str | os.PathLike, *, expected_shape: tuple[int, int] | None = None) -> RawDCE:
    """Read and check a raw Ge DCE; raise :class:`InputError` on anything unusable."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)   # e.g. "File may have been truncated"
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header.copy()
                data = hdul[0].data
                data = None if data is None else np.array(data)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, TypeError, ValueError, fits.VerifyError, AstropyUserWarning) as exc:
        raise InputError(path, f"not a readable FITS file ({_first_line(exc)})") from None
    missing = [k for k in REQUIRED_KEYWORDS if k not in header]
    if missing:
        raise InputError(path, f"missing keyword(s) {', '.join(missing)}")
    if str(header["INSTRUME"]).strip() != "MIPS":
        raise InputError(path, f"INSTRUME is {header['INSTRUME']!r}, not 'MIPS'")
    chnl = header["CHNLNUM"]
    if chnl not in (2, 3):
        raise InputError(path, f"CHNLNUM={chnl}: only Ge channels 2 (70 um) and 3 (160 um) are "
                               "supported by this reader")
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise InputError(path, f"expected a (NREADS, NY, NX) cube in the primary HDU, got shape {shape}")
    if expected_shape is not None and data.shape[1:] != tuple(expected_shape):
        raise InputError(path, f"frame shape {data.shape[1:]} does not match the band's "
                               f"{tuple(expected_shape)}")
    if data.shape[0] < 4:
        raise InputError(path, f"only {data.shape[0]} reads; a ramp needs at least 4")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all():
            raise InputError(path, f"{int((~np.isfinite(data)).sum())} NaN/inf values in the raw cube")
    nramps = int(header.get("NRAMPS", 1))
    if nramps < 1 or data.shape[0] % nramps:
        raise InputError(path, f"NRAMPS={nramps} does not divide NREADS={data.shape[0]}")
    if not float(header["SAMPTIME"]) > 0:
        raise InputError(path, f"SAMPTIME={header['SAMPTIME']} is not positive")
    return RawDCE(path=path, reads=data, header=header)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def product_name(stem: str, kind: str) -> str:
    """File name of a product of a DCE, e.g. ``product_name(stem, 'bcd')``."""
    return f"{stem}_{kind}.fits"


def write_hdul(hdul: fits.HDUList, path: Path, *, overwrite: bool) -> None:
    """Write ``hdul`` to ``path`` through a temporary file; refuse to replace without ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (use --overwrite to replace it)")
    tmp = path.with_name(path.name + ".tmp")
    hdul.writeto(tmp, overwrite=True, output_verify="ignore")   # headers are built here, valid
    os.replace(tmp, path)
