"""Reading raw MIPS DCEs and writing products, with clear errors and atomic writes.

Readers follow the SSC conventions (``mips-facts.md`` section 6): a raw Ge DCE
is a primary-HDU integer cube ``(NREADS, NY, NX)`` in DN with the identity,
timing and WCS keywords listed in ``REQUIRED_KEYWORDS``; a raw 24 um DCE holds
the on-board slope and read2 - read1 planes.  Each file is read once, as
bytes (its SHA-1 identifies it in every product, card ``RAWSHA1``), and
passes the checks of :mod:`reprocess.rawcheck` (types, ranges, data, WCS, file
name).  The folder as a whole is then checked by :func:`read_all`: its band
and frame shape are those of the majority of readable files (so a bad file
is blamed, never an innocent neighbour), no DCE appears twice and the DCEs'
times follow their EXPID/DCENUM order.  Anything else is refused with
:class:`InputError`, whose message names the file and the problem in one
line; nothing is guessed.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import io
import os
import re
import stat
import warnings
from collections import Counter
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
from .rawcheck import BAND_OF_CHANNEL as _BAND_OF_CHANNEL
from .rawcheck import (InputError, card_value, check_cards, check_exptime, check_ge_data,
                       check_header, check_name, check_samptime, check_si_data, check_wcs)

__all__ = ["InputError", "RawDCE", "REQUIRED_KEYWORDS", "read_raw_dce", "read_raw_si",
           "product_name", "raw_files", "read_all", "reread", "majority_band", "RAW_SUFFIX",
           "SUMMARY_KEYWORDS", "find_ramps", "ramps_name", "raw_files_by_band", "several_arrays"]

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
# what a DCE's summary keeps of its header (identity, timing, the stim flag)
SUMMARY_KEYWORDS = ("CHNLNUM", "AORKEY", "EXPID", "DCENUM", "SAMPTIME", "EXPTIME", "NREADS", "NRAMPS",
                    "MJD_OBS", "STIMFLSH")
RAW_SUFFIX = "_raw.fits"
# names in raw/ that look like raw DCEs but are not read as such: compressed, upper case, other
# extensions, leftovers of interrupted writes (".tmp"); reported, never skipped silently
_NEAR_MISS = re.compile(r"_raw\.f(its?|ts)", re.IGNORECASE)
# DCEs of one array cannot overlap in time; tolerance in read times for rounded MJD_OBS values
_OVERLAP_TOL_READS = 1.0


@dataclass
class RawDCE:
    """One raw DCE (Ge cube, or the two 24 um planes), checked by :mod:`reprocess.rawcheck`.

    Per-DCE timing is kept as read (``samptime``, ``nreads``, ``nramps``): DCEs
    of one observation may differ in it, so batch by these, never by the first DCE's.
    """

    path: Path
    reads: np.ndarray | None  # (NREADS, NY, NX) raw DN, as stored; 24 um: (2, 128, 128) planes;
    #   None in a summary (:meth:`summary`)
    header: fits.Header | dict  # a summary's: a dict of the keywords in SUMMARY_KEYWORDS
    card_images: tuple = ()  # the primary header's 80-character cards, as in the file
    sha1: str = ""           # SHA-1 hex digest of the file's bytes as read (RAWSHA1)
    data_shape: tuple = ()   # shape of ``reads`` (kept by a summary)

    def __post_init__(self):
        if self.reads is not None and not self.data_shape:
            self.data_shape = tuple(self.reads.shape)

    def summary(self) -> RawDCE:
        """This DCE without its data and cards, its header cut to :data:`SUMMARY_KEYWORDS`:
        what the folder checks, the time order and the pipelines' side tables need (~1 kB)."""
        header = {k: self.header[k] for k in SUMMARY_KEYWORDS if k in self.header}
        return RawDCE(path=self.path, reads=None, header=header, sha1=self.sha1,
                      data_shape=self.data_shape)

    @property
    def band(self) -> int:
        return _BAND_OF_CHANNEL[int(self.header["CHNLNUM"])]

    @property
    def stim(self) -> bool:
        return bool(self.header.get("STIMFLSH", False))

    @property
    def samptime(self) -> float:
        """Time between reads (SAMPTIME), s."""
        return float(self.header["SAMPTIME"])

    @property
    def nreads(self) -> int:
        """Reads in the DCE: the cube's length (Ge), the on-board fit's samples (24 um)."""
        return int(self.header.get("NREADS", self.data_shape[0]))

    @property
    def identity(self) -> tuple[int, int, int, int]:
        """(CHNLNUM, AORKEY, EXPID, DCENUM): what names a DCE in the archive."""
        h = self.header
        return int(h["CHNLNUM"]), int(h["AORKEY"]), int(h["EXPID"]), int(h["DCENUM"])

    @property
    def mjd_mid(self) -> float:
        """MJD at the middle of the DCE."""
        return float(self.header["MJD_OBS"]) + 0.5 * self.nreads * self.samptime / 86400.0

    @property
    def nramps(self) -> int:
        """Ramps in this DCE: the ``NRAMPS`` keyword when present and valid (a simulator's
        convenience; archive headers lack it), else the documented timing rule
        (:func:`calibration.instrument.ge_ramps_per_dce`: two at 160 um for 80 reads)."""
        from calibration.instrument import ge_ramps_per_dce

        nreads = self.data_shape[0]
        given = self.header.get("NRAMPS")
        if isinstance(given, (int, np.integer)) and not isinstance(given, bool) \
                and given >= 1 and nreads % given == 0:
            return int(given)
        return ge_ramps_per_dce(self.band, nreads)

    @property
    def stem(self) -> str:
        """File name without the ``_raw.fits`` suffix."""
        name = self.path.name
        return name[: -len("_raw.fits")] if name.endswith("_raw.fits") else self.path.stem


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; refuses, without blocking, anything but a regular file."""
    try:   # O_NONBLOCK: opening a named pipe must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, f"cannot open ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(path, f"not a regular file ({_file_kind(mode)})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(path, f"read error ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _card_images(path: Path, raw: bytes) -> tuple:
    """The primary header's cards as the 80-character strings of the file (up to END)."""
    cards = []
    for start in range(0, len(raw) - 2879, 2880):
        block = raw[start:start + 2880]
        for i in range(0, 2880, 80):
            card = block[i:i + 80].decode("ascii", "replace")
            if card.startswith("END     ") or card.rstrip() == "END":
                return tuple(cards)
            cards.append(card)
    raise InputError(path, "header ends before its END card")


def _open_primary(path: Path, raw: bytes):
    """(header, data) of the primary HDU in ``raw``, or InputError for an unreadable/truncated file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)   # e.g. "File may have been truncated"
            with fits.open(io.BytesIO(raw), memmap=False) as hdul:
                header = hdul[0].header
                data = hdul[0].data
                return header, (None if data is None else np.array(data))
    except Exception as exc:   # noqa: BLE001 -- astropy raises many kinds on malformed files
        raise InputError(path, f"not a readable FITS file ({_first_line(exc)})") from None


def _read_checked(path: Path, required, channels):
    """A raw file's bytes, header, data, card images and checked values, and its band (um)."""
    raw = _read_bytes(path)
    header, data = _open_primary(path, raw)
    cards = _card_images(path, raw)
    values = check_cards(path, cards)
    return raw, header, data, cards, values, check_header(path, values, required, channels)


def _checked_dce(path, raw, header, data, cards, values, band, nreads) -> RawDCE:
    """The checks both readers end with (exposure, WCS, file name), then the :class:`RawDCE`."""
    check_exptime(path, values, nreads)
    check_wcs(path, values, band)
    check_name(path, values)
    return RawDCE(path=path, reads=data, header=header, card_images=cards,
                  sha1=hashlib.sha1(raw).hexdigest())


def read_raw_dce(path: str | os.PathLike, *, expected_shape: tuple[int, int] | None = None) -> RawDCE:
    """Read and check a raw Ge DCE; raise :class:`InputError` on anything unusable."""
    path = Path(path)
    raw, header, data, cards, values, band = _read_checked(path, REQUIRED_KEYWORDS, (2, 3))
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise InputError(path, f"expected a (NREADS, NY, NX) cube in the primary HDU, got shape {shape}")
    if expected_shape is not None and data.shape[1:] != tuple(expected_shape):
        raise InputError(path, f"frame shape {data.shape[1:]} does not match the band's "
                               f"{tuple(expected_shape)}")
    nreads = data.shape[0]
    if nreads < 4:
        raise InputError(path, f"only {nreads} reads; a ramp needs at least 4")
    if "NREADS" in values and values["NREADS"] != nreads:
        raise InputError(path, f"NREADS={values['NREADS']} but the cube has {nreads} reads")
    nramps = values.get("NRAMPS", 1)
    if nramps < 1 or nreads % nramps:
        raise InputError(path, f"NRAMPS={nramps} does not divide NREADS={nreads}")
    check_samptime(path, values, band)
    check_ge_data(path, data, band)
    return _checked_dce(path, raw, header, data, cards, values, band, nreads)


def read_raw_si(path: str | os.PathLike) -> RawDCE:
    """Read and check a raw 24 um DCE (planes: on-board slope, read2 - read1)."""
    path = Path(path)
    raw, header, data, cards, values, band = _read_checked(path, SI_REQUIRED_KEYWORDS, (1,))
    if data is None or data.shape != (2, 128, 128):
        shape = None if data is None else data.shape
        raise InputError(path, f"expected (2, 128, 128) planes (slope, difference), got shape {shape}")
    check_samptime(path, values, band)
    if "NREADS" not in values:   # fall back on the exposure time, if it is a whole number of reads
        ratio = values["EXPTIME"] / values["SAMPTIME"]
        if abs(ratio - round(ratio)) > 1e-3:
            raise InputError(path, f"no NREADS, and EXPTIME={values['EXPTIME']} s is not a whole "
                                   f"number of SAMPTIME={values['SAMPTIME']} s")
        header["NREADS"] = values["NREADS"] = int(round(ratio))
    nreads = values["NREADS"]
    if nreads < 2:
        raise InputError(path, f"NREADS={nreads}: a slope needs at least 2 samples")
    check_si_data(path, data, nreads)
    return _checked_dce(path, raw, header, data, cards, values, band, nreads)


def header_band(path: str | os.PathLike) -> int:
    """Band (um) of a raw file from its CHNLNUM card alone (InputError if unreadable)."""
    path = Path(path)
    for card in _card_images(path, _read_bytes(path)):
        if card[:8].rstrip() == "CHNLNUM":
            try:
                chnl = card_value(card)
            except ValueError:
                raise InputError(path, f"unparsable header card {card.rstrip()!r}") from None
            if isinstance(chnl, bool) or chnl not in _BAND_OF_CHANNEL:
                raise InputError(path, f"CHNLNUM={chnl!r} is not a MIPS channel (1, 2, 3)")
            return _BAND_OF_CHANNEL[chnl]
    raise InputError(path, "missing keyword(s) CHNLNUM")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def product_name(stem: str, kind: str) -> str:
    """File name of a product of a DCE, e.g. ``product_name(stem, 'bcd')``."""
    return f"{stem}_{kind}.fits"


_WCS_PREFIXES = ("CTYPE", "CRPIX", "CRVAL", "CD1_", "CD2_", "A_", "B_", "AP_", "BP_", "RADESYS",
                 "EQUINOX")


@functools.cache
def software() -> str:
    """Name and version of this toolkit, for provenance keywords (looked up once per process)."""
    try:
        return f"mips-toolkit {version('mips-toolkit')}"
    except PackageNotFoundError:
        return "mips-toolkit (not installed)"


def raw_files(obs_dir: Path) -> list[Path]:
    """The raw DCE files of an observation folder, sorted (InputError if there are none).

    Also lists near-miss names (``*_raw.fits.gz``, ``*_RAW.FITS``, ``*_raw.fits.tmp``, ...) and
    entries that are not regular files, so that :func:`read_all` reports them instead of
    skipping them silently; an unreadable ``raw/`` is a permission error naming it.
    """
    raw_dir = Path(obs_dir) / "raw"
    try:
        names = sorted(e.name for e in os.scandir(raw_dir))
    except FileNotFoundError:
        raise InputError(raw_dir, "no *_raw.fits files to reprocess (no such folder)") from None
    except NotADirectoryError:
        raise InputError(raw_dir, "not a folder") from None
    except PermissionError:
        raise InputError(raw_dir, "permission denied: cannot list the raw folder") from None
    except OSError as exc:
        raise InputError(raw_dir, f"cannot list the raw folder ({exc.strerror or exc})") from None
    paths = [raw_dir / n for n in names if n.endswith(RAW_SUFFIX) or _NEAR_MISS.search(n)]
    if not paths:
        raise InputError(raw_dir, "no *_raw.fits files to reprocess")
    return paths


def _check_raw_name(path: Path) -> None:
    """A near-miss name listed by :func:`raw_files` is refused, saying why."""
    name = path.name
    if name.endswith(RAW_SUFFIX):
        return
    tail = name[_NEAR_MISS.search(name).start():]
    if tail.lower().endswith((".gz", ".fz", ".bz2", ".z", ".zip", ".xz")):
        why = "a compressed raw file is not read: decompress it to *_raw.fits"
    elif tail.lower().endswith((".tmp", ".part", ".partial")):
        why = "a temporary file (an interrupted write?): remove it or finish the copy"
    else:
        why = "a raw DCE must be named *_raw.fits (lower case): rename it or move it out of raw/"
    raise InputError(path, f"name ends in {tail!r}: {why}")


def majority_band(paths) -> int:
    """Band (um) of most raw files in ``paths`` (each read from its CHNLNUM card).

    Unreadable files do not vote (the readers report them later); if no file is
    readable, the first one's error is raised; a tie is refused naming the folder.
    """
    votes: Counter = Counter()
    first_error = None
    for p in paths:
        try:
            _check_raw_name(Path(p))
            votes[header_band(p)] += 1
        except InputError as exc:
            first_error = first_error or exc
    if not votes:
        raise first_error
    return _majority(votes, Path(paths[0]).parent, "band", " um")


_CHANNEL_IN_NAME = re.compile(r"^SPITZER_M([123])_")
_CHANNEL_OF_BAND = {band: ch for ch, band in _BAND_OF_CHANNEL.items()}


def raw_files_by_band(paths) -> dict[int, list[Path]]:
    """The raw files ``paths`` grouped by band (um), each by its CHNLNUM card.

    A file whose card cannot be read (or a near-miss name) goes with the band its
    SSC name says (``SPITZER_M<ch>_``), else with the band of most files, so that
    the pipeline of that band reports it; bands in increasing order.
    """
    groups: dict[int, list[Path]] = {}
    unread = []
    for p in paths:
        try:
            _check_raw_name(Path(p))
            groups.setdefault(header_band(p), []).append(Path(p))
        except InputError:
            unread.append(Path(p))
    for p in unread:
        named = _CHANNEL_IN_NAME.match(p.name)
        band = _BAND_OF_CHANNEL[int(named.group(1))] if named else None
        if band not in groups:
            band = max(groups, key=lambda b: len(groups[b])) if groups else None
        if band is None:               # nothing readable: the first file's error says why
            majority_band(paths)
        groups[band].append(p)
    return {b: sorted(groups[b]) for b in sorted(groups)}


def several_arrays(groups: dict[int, list]) -> bool:
    """Whether files grouped by :func:`raw_files_by_band` are the arrays of a multi-array AOR.

    Two or more bands with more than one raw file each.  A single file of another
    band beside many is not an array of the AOR but a stray file (damage: refused,
    by name, as before); two or more are read as an array, and the folder is then
    refused as a whole unless a band is chosen (``--band``).
    """
    return sum(len(g) > 1 for g in groups.values()) >= 2


def ramps_name(band: int, *, several: bool) -> str:
    """Name of a Ge pipeline's ramp file: ``ramps.h5``, or ``ramps_M<ch>.h5`` when the products
    of several arrays share one ``bcd/`` (a multi-array run)."""
    return f"ramps_M{_CHANNEL_OF_BAND[band]}.h5" if several else "ramps.h5"


def find_ramps(bcd_dir: str | os.PathLike, band: int) -> Path:
    """The ramp file of ``band`` in ``bcd_dir``: ``ramps_M<ch>.h5`` if present, else ``ramps.h5``."""
    bcd_dir = Path(bcd_dir)
    own = bcd_dir / ramps_name(band, several=True)
    return own if own.exists() else bcd_dir / "ramps.h5"


def _majority(votes: Counter, folder: Path, what: str, unit: str = ""):
    """The value with most votes; InputError naming ``folder`` on a tie."""
    (best, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        counts = ", ".join(f"{k}{unit}: {v} file(s)" for k, v in votes.most_common())
        raise InputError(folder, f"no majority {what} among the raw files ({counts})")
    return best


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


def read_all(paths, reader, *, keep_going: bool, failures: list,
             band: int | None = None, keep_data: bool = True) -> list[RawDCE]:
    """Read every file with ``reader`` and check the folder; return the DCEs in time order.

    Without ``keep_data`` each DCE is kept as its :meth:`RawDCE.summary` (no
    data, ~1 kB), so the memory does not grow with the DCEs' data; the
    pipelines then read them again in batches (:func:`reread`).

    A bad file raises :class:`InputError`, or with ``keep_going`` goes to
    ``failures`` as ``(path, problem)``.  Folder checks, each blaming the odd
    file: the band (``band``, else that of most DCEs) and the frame shape of most
    DCEs; no DCE twice (same bytes, or same CHNLNUM/AORKEY/EXPID/DCENUM); DCE
    times follow the EXPID/DCENUM order without overlapping.
    """
    dces: list[RawDCE] = []
    folder = Path(paths[0]).parent if len(paths) else Path(".")
    for p in paths:
        try:
            _check_raw_name(Path(p))
            dce = reader(p)
            dces.append(dce if keep_data else dce.summary())
        except InputError as exc:
            if not keep_going:
                raise
            failures.append((str(p), exc.problem))
    for check in (_odd_band, _odd_shape, _duplicates, _out_of_sequence):
        odd = dict(check(dces, folder, band))          # path -> problem
        if not odd:
            continue
        if not keep_going:
            first = min(odd, key=lambda p: str(p))
            raise InputError(first, odd[first])
        failures += [(str(p), problem) for p, problem in sorted(odd.items(), key=lambda kv: str(kv[0]))]
        dces = [d for d in dces if d.path not in odd]
    if not dces:
        detail = f" ({len(failures)} failed; first: {failures[0][0]}: {failures[0][1]})" if failures else ""
        raise InputError(folder, f"no readable raw DCE{detail}")
    return sorted(dces, key=lambda d: d.mjd_mid)


def reread(summary: RawDCE) -> RawDCE:
    """The DCE of ``summary`` (made by :func:`read_all` from a checked file) read again, with its data.

    The bytes must be those checked the first time (same SHA-1), so the checks
    are not repeated; InputError naming the file if they changed (the folder is
    locked, but another program may still write into it).
    """
    path = summary.path
    raw = _read_bytes(path)
    if hashlib.sha1(raw).hexdigest() != summary.sha1:
        raise InputError(path, "changed while being reprocessed (its SHA-1 differs from the "
                               "first reading)")
    header, data = _open_primary(path, raw)
    if "NREADS" in summary.header and "NREADS" not in header:   # read_raw_si derived it
        header["NREADS"] = summary.header["NREADS"]
    return RawDCE(path=path, reads=data, header=header, card_images=_card_images(path, raw),
                  sha1=summary.sha1)


def _odd_band(dces, folder, band):
    """DCEs of another band than ``band`` (default: that of most DCEs)."""
    if not dces:
        return []
    want = band if band is not None else _majority(Counter(d.band for d in dces), folder, "band", " um")
    n = sum(d.band == want for d in dces)
    return [(d.path, f"CHNLNUM={d.header['CHNLNUM']} ({d.band} um) in a folder of {n} {want} um DCEs")
            for d in dces if d.band != want]


def _odd_shape(dces, folder, band):
    """DCEs whose frame shape differs from that of most DCEs."""
    if not dces:
        return []
    want = _majority(Counter(d.data_shape[1:] for d in dces), folder, "frame shape")
    n = sum(d.data_shape[1:] == want for d in dces)
    return [(d.path, f"frame shape {d.data_shape[1:]} differs from the {want} of {n} other DCEs")
            for d in dces if d.data_shape[1:] != want]


def _duplicates(dces, folder, band):
    """Later copies of identical bytes; every DCE whose identity another DCE also claims."""
    odd, first_of = [], {}
    for d in sorted(dces, key=lambda d: str(d.path)):
        if d.sha1 in first_of:
            odd.append((d.path, f"same bytes as {first_of[d.sha1].path.name} (duplicate DCE)"))
        else:
            first_of[d.sha1] = d
    by_id: dict = {}
    for d in first_of.values():
        by_id.setdefault(d.identity, []).append(d)
    for ident, group in by_id.items():
        if len(group) > 1:
            for d in group:
                others = ", ".join(o.path.name for o in group if o is not d)
                odd.append((d.path, f"CHNLNUM/AORKEY/EXPID/DCENUM {ident} also in {others} "
                                    f"(duplicate DCE)"))
    return odd


def _out_of_sequence(dces, folder, band):
    """DCEs whose MJD_OBS breaks the time order of (EXPID, DCENUM) in their AOR, or overlaps a neighbour.

    The DCEs kept in order are a longest increasing run of start times; the others are odd.
    """
    aors: dict = {}
    for d in dces:
        aors.setdefault(d.identity[:2], []).append(d)
    return [item for aor in aors.values() for item in _out_of_order(aor)]


def _out_of_order(dces):
    """:func:`_out_of_sequence` within one AOR."""
    odd = []
    order = sorted(dces, key=lambda d: d.identity[2:])
    starts = [float(d.header["MJD_OBS"]) for d in order]
    keep = _longest_increasing(starts)
    for i in sorted(set(range(len(order))) - set(keep)):
        clash = ([k for k in keep if k < i and starts[k] >= starts[i]][-1:]
                 + [k for k in keep if k > i and starts[k] <= starts[i]][:1])
        odd.append((order[i].path, f"MJD_OBS={starts[i]} is out of the EXPID/DCENUM time order "
                                   f"({order[clash[0]].path.name} starts at MJD {starts[clash[0]]})"))
    for a, b in zip(keep, keep[1:]):
        prev, this = order[a], order[b]
        end = starts[a] + prev.nreads * prev.samptime / 86400.0
        if starts[b] < end - _OVERLAP_TOL_READS * prev.samptime / 86400.0:
            odd.append((this.path, f"MJD_OBS={starts[b]} starts before the previous DCE "
                                   f"{prev.path.name} ends (MJD {end:.8f})"))
    return odd


def _longest_increasing(values) -> list[int]:
    """Indices of a longest strictly increasing subsequence of ``values`` (patience sorting)."""
    tails: list[float] = []
    tail_idx: list[int] = []
    prev = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tails, v)
        if k < len(tails) and tails[k] == v:   # a tie: keep the earlier element
            continue
        if k == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[k] = v
            tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    out, i = [], tail_idx[-1] if tail_idx else -1
    while i >= 0:
        out.append(i)
        i = prev[i]
    return out[::-1]


def bcd_header(dce: RawDCE, cards: dict) -> list:
    """Cards of a product of ``dce``: its identity and WCS cards (copied verbatim), then ``cards``.

    ``cards`` maps key -> (value, comment); the result is a list for
    :func:`reprocess.fitswrite.write_image`.
    """
    out: list = []
    copying = False
    for card in dce.card_images:   # a long string's CONTINUE cards go with it
        key = card[:8].rstrip()
        copying = (copying if key == "CONTINUE"
                   else key in IDENTITY_KEYWORDS or card.startswith(_WCS_PREFIXES))
        if copying:
            out.append(card)
    out.append(("RAWFILE", dce.path.name, "raw DCE"))
    out.append(("RAWSHA1", dce.sha1, "SHA-1 of the raw file's bytes"))
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
