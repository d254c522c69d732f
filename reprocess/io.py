"""Reading raw Ge DCEs and writing products, with clear errors and atomic writes.

Readers follow the SSC conventions (``mips-facts.md`` section 6): a raw Ge DCE
is a primary-HDU integer cube ``(NREADS, NY, NX)`` in DN with the identity,
timing and WCS keywords listed in ``REQUIRED_KEYWORDS``.  Anything else is
refused with :class:`InputError`, whose message names the file and the
problem in one line; nothing is guessed.
"""
from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import __version__ as astropy_version
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from calibration.folders import transaction

from .fitswrite import format_cards, write_image

__all__ = ["InputError", "RawDCE", "REQUIRED_KEYWORDS", "read_raw_dce", "read_raw_si",
           "product_name"]

REQUIRED_KEYWORDS = ("INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "SAMPTIME", "EXPTIME",
                     "MJD_OBS", "STIMFLSH", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CTYPE1",
                     "CTYPE2")
SI_REQUIRED_KEYWORDS = ("INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "SAMPTIME", "EXPTIME",
                        "MJD_OBS", "CSM_PRED", "SATTHDIF", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2",
                        "CTYPE1", "CTYPE2")
IDENTITY_KEYWORDS = ("TELESCOP", "INSTRUME", "CHNLNUM", "AORKEY", "EXPID", "DCENUM", "AOT_TYPE",
                     "EXPTYPE", "FOVNAME", "SAMPTIME", "EXPTIME", "NRAMPS", "MJD_OBS", "DATE_OBS",
                     "STIMFLSH", "PA", "PXSCAL1", "PXSCAL2", "NREADS", "CSM_PRED", "RDOUTMOD",
                     "SATTHDIF")
_BAND_OF_CHANNEL = {1: 24, 2: 70, 3: 160}


class InputError(ValueError):
    """A raw input that cannot be processed; ``str()`` is a one-line '<file>: <problem>'."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):   # picklable, so worker processes can report it
        return (type(self), (self.path, self.problem))


@dataclass
class RawDCE:
    """One raw Ge DCE."""

    path: Path
    reads: np.ndarray        # (NREADS, NY, NX) raw DN, as stored
    header: fits.Header
    card_images: tuple = ()  # the primary header's 80-character cards, as in the file

    @property
    def band(self) -> int:
        return _BAND_OF_CHANNEL[int(self.header["CHNLNUM"])]

    @property
    def stim(self) -> bool:
        return bool(self.header.get("STIMFLSH", False))

    @property
    def mjd_mid(self) -> float:
        """MJD at the middle of the DCE."""
        nreads = int(self.header.get("NREADS", self.reads.shape[0]))
        return float(self.header["MJD_OBS"]) + 0.5 * nreads * float(self.header["SAMPTIME"]) / 86400.0

    @property
    def nramps(self) -> int:
        return int(self.header.get("NRAMPS", 1))

    @property
    def stem(self) -> str:
        """File name without the ``_raw.fits`` suffix."""
        name = self.path.name
        return name[: -len("_raw.fits")] if name.endswith("_raw.fits") else self.path.stem


def _card_images(path: Path) -> tuple:
    """The primary header's cards as the 80-character strings of the file (up to END)."""
    cards = []
    with open(path, "rb") as fh:
        while True:
            block = fh.read(2880)
            if len(block) < 2880:
                raise InputError(path, "header ends before its END card")
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii", "replace")
                if card.startswith("END     ") or card.rstrip() == "END":
                    return tuple(cards)
                cards.append(card)


def _open_primary(path: Path):
    """(header, data) of the primary HDU, or InputError for an unreadable/truncated file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)   # e.g. "File may have been truncated"
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header
                data = hdul[0].data
                return header, (None if data is None else np.array(data))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, TypeError, ValueError, fits.VerifyError, AstropyUserWarning) as exc:
        raise InputError(path, f"not a readable FITS file ({_first_line(exc)})") from None


def _check_header(path: Path, header: fits.Header, required, channels) -> None:
    missing = [k for k in required if k not in header]
    if missing:
        raise InputError(path, f"missing keyword(s) {', '.join(missing)}")
    if str(header["INSTRUME"]).strip() != "MIPS":
        raise InputError(path, f"INSTRUME is {header['INSTRUME']!r}, not 'MIPS'")
    if header["CHNLNUM"] not in channels:
        names = ", ".join(f"{c} ({_BAND_OF_CHANNEL[c]} um)" for c in channels)
        raise InputError(path, f"CHNLNUM={header['CHNLNUM']}: this reader takes channel {names}")
    if not float(header["SAMPTIME"]) > 0:
        raise InputError(path, f"SAMPTIME={header['SAMPTIME']} is not positive")


def _check_finite(path: Path, data: np.ndarray) -> None:
    if not np.issubdtype(data.dtype, np.integer) and not np.isfinite(data).all():
        raise InputError(path, f"{int((~np.isfinite(data)).sum())} NaN/inf values in the raw data")


def read_raw_dce(path: str | os.PathLike, *, expected_shape: tuple[int, int] | None = None) -> RawDCE:
    """Read and check a raw Ge DCE; raise :class:`InputError` on anything unusable."""
    path = Path(path)
    header, data = _open_primary(path)
    _check_header(path, header, REQUIRED_KEYWORDS, (2, 3))
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise InputError(path, f"expected a (NREADS, NY, NX) cube in the primary HDU, got shape {shape}")
    if expected_shape is not None and data.shape[1:] != tuple(expected_shape):
        raise InputError(path, f"frame shape {data.shape[1:]} does not match the band's "
                               f"{tuple(expected_shape)}")
    if data.shape[0] < 4:
        raise InputError(path, f"only {data.shape[0]} reads; a ramp needs at least 4")
    _check_finite(path, data)
    nramps = int(header.get("NRAMPS", 1))
    if nramps < 1 or data.shape[0] % nramps:
        raise InputError(path, f"NRAMPS={nramps} does not divide NREADS={data.shape[0]}")
    return RawDCE(path=path, reads=data, header=header, card_images=_card_images(path))


def read_raw_si(path: str | os.PathLike) -> RawDCE:
    """Read and check a raw 24 um DCE (planes: on-board slope, read2 - read1)."""
    path = Path(path)
    header, data = _open_primary(path)
    _check_header(path, header, SI_REQUIRED_KEYWORDS, (1,))
    if data is None or data.shape != (2, 128, 128):
        shape = None if data is None else data.shape
        raise InputError(path, f"expected (2, 128, 128) planes (slope, difference), got shape {shape}")
    _check_finite(path, data)
    if "NREADS" not in header:   # fall back on the exposure time
        header["NREADS"] = int(round(float(header["EXPTIME"]) / float(header["SAMPTIME"])))
    if int(header["NREADS"]) < 2:
        raise InputError(path, f"NREADS={header['NREADS']}: a slope needs at least 2 samples")
    return RawDCE(path=path, reads=data, header=header, card_images=_card_images(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def product_name(stem: str, kind: str) -> str:
    """File name of a product of a DCE, e.g. ``product_name(stem, 'bcd')``."""
    return f"{stem}_{kind}.fits"


_WCS_PREFIXES = ("CTYPE", "CRPIX", "CRVAL", "CD1_", "CD2_", "A_", "B_", "AP_", "BP_", "RADESYS",
                 "EQUINOX")


def software() -> str:
    """Name and version of this toolkit, for provenance keywords."""
    try:
        return f"mips-toolkit {version('mips-toolkit')}"
    except PackageNotFoundError:
        return "mips-toolkit (not installed)"


def raw_files(obs_dir: Path) -> list[Path]:
    """The raw DCE files of an observation folder (InputError if there are none)."""
    raw_dir = Path(obs_dir) / "raw"
    paths = sorted(raw_dir.glob("*_raw.fits")) if raw_dir.is_dir() else []
    if not paths:
        raise InputError(raw_dir, "no *_raw.fits files to reprocess")
    return paths


@contextmanager
def staged_output(bcd_dir: Path, overwrite: bool):
    """Write a product folder all at once: yields a staging folder that replaces ``bcd_dir`` on success.

    The observation folder (``bcd_dir``'s parent) is locked for the run (a
    concurrent run on it is refused), the staging folder is unique to the run
    and the commit survives being killed half-way: see
    :mod:`calibration.folders`.  Refuses to start if ``bcd_dir`` already holds
    products and not ``overwrite``, or is a symbolic link; on any error the
    staging folder is removed and ``bcd_dir`` is left as it was.
    """
    bcd_dir = Path(bcd_dir)
    with transaction(bcd_dir.parent, bcd_dir.name, replace=(bcd_dir.name,), overwrite=overwrite,
                     what="products") as stage:
        out = stage / bcd_dir.name
        out.mkdir()
        yield out


def read_all(paths, reader, *, keep_going: bool, failures: list) -> list[RawDCE]:
    """Read every file with ``reader``; bad ones raise, or with ``keep_going`` go to ``failures``.

    All DCEs must share the band and the shape of the first good one.
    """
    dces: list[RawDCE] = []
    for p in paths:
        try:
            dce = reader(p)
            if dces and dce.band != dces[0].band:
                raise InputError(p, f"band {dce.band} differs from the observation's {dces[0].band}")
            if dces and dce.reads.shape[1:] != dces[0].reads.shape[1:]:
                raise InputError(p, f"frame shape {dce.reads.shape[1:]} differs from "
                                    f"{dces[0].reads.shape[1:]} of the other DCEs")
            dces.append(dce)
        except InputError as exc:
            if not keep_going:
                raise
            failures.append((str(p), exc.problem))
    if not dces:
        raise InputError(Path(paths[0]).parent, "no readable raw DCE")
    return sorted(dces, key=lambda d: d.mjd_mid)


def bcd_header(dce: RawDCE, cards: dict) -> list:
    """Cards of a product of ``dce``: its identity and WCS cards (copied verbatim), then ``cards``.

    ``cards`` maps key -> (value, comment); the result is a list for
    :func:`reprocess.fitswrite.write_image`.
    """
    out: list = [card for card in dce.card_images
                 if card[:8].rstrip() in IDENTITY_KEYWORDS or card.startswith(_WCS_PREFIXES)]
    out.append(("RAWFILE", dce.path.name, "raw DCE"))
    out += [(key, *value) for key, value in cards.items()]
    out.append(("HISTORY", f"software: {software()}, numpy {np.__version__}, "
                           f"astropy {astropy_version}", ""))
    return out


def write_bcd_set(dce: RawDCE, cards: list, planes, stage_dir: Path) -> None:
    """Write each (kind, data, bunit) of ``planes`` as ``<stem>_<kind>.fits`` into a staging folder."""
    shared = format_cards(cards)
    for kind, data, bunit in planes:
        extra = [("FILETYPE", kind, "product type"), ("BUNIT", bunit, "units of the image"), shared]
        write_image(stage_dir / product_name(dce.stem, kind), data, extra, overwrite=False, atomic=False)
