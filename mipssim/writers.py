"""Writers of the observation files: raw DCEs (FITS) and the truth record (HDF5).

Formats follow the contracts in ``shared/DESIGN.md``.  Raw files are written
to a temporary name and renamed, so an interrupted run never leaves a
half-written file under a final name; the truth is written as it goes (its
size grows with the observation) inside the simulator's staging folder, which
is committed as a whole.

Raw FITS files are serialised here rather than by ``astropy.io.fits``: a scan
map writes thousands of small files, and building a ``fits.Header`` card by
card, verifying and writing it cost ~20 ms per DCE (astropy looks up its
configuration for every card), five times the read-by-read physics.  The bytes
are those astropy writes for the same cards and data (:func:`card` follows
``astropy.io.fits.Card``'s formatting and falls back to it for anything
unusual; ``tests/test_sim_bitwise.py`` checks both against astropy).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from calibration.folders import write_atomic

__all__ = ["raw_name", "card", "FitsImage", "fits_bytes", "write_hdus", "TruthWriter"]

SCHEMA = "mips-truth/1"


def raw_name(chnlnum: int, aorkey: int, expid: int, dcenum: int) -> str:
    """SSC file name of a raw DCE."""
    return f"SPITZER_M{chnlnum}_{aorkey}_{expid:04d}_{dcenum:04d}_0_raw.fits"


BLOCK = 2880                 # FITS logical record, bytes
_COMMENTARY = ("HISTORY", "COMMENT", "")


def card(keyword: str, value: str | bool | int | float, comment: str = "") -> str:
    """The 80-character image astropy gives the card ``(keyword, value, comment)``.

    Parameters
    ----------
    keyword : str
        Upper-case standard keyword (8 characters at most).
    value : str, bool, int or float
    comment : str

    Returns
    -------
    str
        The card image, exactly ``astropy.io.fits.Card(keyword, value, comment).image``.

    Notes
    -----
    The common cases are formatted here (as ``astropy.io.fits.card._format_value``
    does: strings quoted and padded to 8 characters then to 20, logicals and
    numbers right-aligned in 20 columns, floats as ``str`` with ``E`` and cut
    to 20 characters); anything else (other types, non-finite floats, a card
    that would not fit in 80 characters, commentary keywords) is left to
    astropy, which also warns or continues the value as it always did, and so
    is a blank comment (astropy may drop it, as ``conf.strip_header_whitespace`` says).
    """
    if isinstance(value, str):
        if not value or not value.isascii() or not value.isprintable():
            return _astropy_card(keyword, value, comment)
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"   # at least 8 characters inside
        text = quoted.ljust(20)
    elif type(value) is bool or isinstance(value, np.bool_):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        text = f"{int(value):>20d}"
    elif isinstance(value, (float, np.floating)) and np.isfinite(value):
        text = _float_text(float(value))
    else:
        return _astropy_card(keyword, value, comment)
    image = f"{keyword:8}= {text} / {comment}" if comment else f"{keyword:8}= {text}"
    if len(keyword) > 8 or keyword in _COMMENTARY or len(image) > 80 or (comment and comment.isspace()):
        return _astropy_card(keyword, value, comment)
    return f"{image:80}"


def _float_text(value: float) -> str:
    """A float value as astropy writes it: ``str``, ``E`` for ``e``, at most 20 characters."""
    text = str(value).replace("e", "E")
    if len(text) > 20:
        e = text.find("E")
        text = text[:20] if e < 0 else text[:20 - (len(text) - e)] + text[e:]
    return f"{text:>20}"


def _astropy_card(keyword: str, value, comment: str) -> str:
    """The card image(s) astropy writes for one card (several for a long string or commentary)."""
    header = fits.Header()
    header.append((keyword, value, comment))
    return header.tostring(endcard=False, padding=False)


@dataclass(frozen=True)
class FitsImage:
    """One image HDU to serialise.

    Attributes
    ----------
    cards : sequence of str
        Card images of the header without the structural cards (SIMPLE or
        XTENSION, BITPIX, NAXISn, EXTEND, PCOUNT, GCOUNT, BSCALE, BZERO,
        EXTNAME), which :func:`fits_bytes` adds where astropy puts them.
    data : ndarray
        uint16 (written as BITPIX 16 with BZERO 32768, like astropy), int16,
        int32, float32 or float64.
    extname : str, optional
        EXTNAME of an extension.
    """

    cards: Sequence[str]
    data: np.ndarray
    extname: str | None = None


# dtype -> (BITPIX, big-endian on-disk dtype, BZERO or None)
_BITPIX = {np.dtype(np.uint16): (16, ">i2", 32768), np.dtype(np.int16): (16, ">i2", None),
           np.dtype(np.int32): (32, ">i4", None), np.dtype(np.float32): (-32, ">f4", None),
           np.dtype(np.float64): (-64, ">f8", None)}


def fits_bytes(images: Sequence[FitsImage]) -> bytes:
    """The FITS file of ``images`` (the first is the primary HDU), as astropy's ``writeto`` writes it."""
    parts = []
    for n, image in enumerate(images):
        data = np.asarray(image.data)
        if data.dtype not in _BITPIX:
            raise TypeError(f"cannot write {data.dtype} data (uint16, int16, int32, float32, float64)")
        bitpix, disk, bzero = _BITPIX[data.dtype]
        head = ([card("SIMPLE", True, "conforms to FITS standard")] if n == 0 else
                [card("XTENSION", "IMAGE", "Image extension")])
        head.append(card("BITPIX", bitpix, "array data type"))
        head.append(card("NAXIS", data.ndim, "number of array dimensions"))
        head += [card(f"NAXIS{i + 1}", size) for i, size in enumerate(reversed(data.shape))]
        if n == 0 and len(images) > 1:
            head.append(card("EXTEND", True))
        if n > 0:
            head += [card("PCOUNT", 0, "number of parameters"), card("GCOUNT", 1, "number of groups")]
        # astropy adds new cards after the last non-commentary one: the scaling cards go there
        cards = list(image.cards)
        split = max((i + 1 for i, c in enumerate(cards) if c[:8].rstrip() not in _COMMENTARY), default=0)
        scaling = [card("BSCALE", 1), card("BZERO", bzero)] if bzero is not None else []
        if image.extname is not None:
            scaling.append(card("EXTNAME", image.extname, "extension name"))
        text = "".join(head + cards[:split] + scaling + cards[split:]) + f"{'END':80}"
        parts.append(text.encode("ascii") + b" " * (-len(text) % BLOCK))
        if bzero is not None:                    # v - 32768 as int16 is v with its top bit flipped
            raw = (data ^ np.uint16(0x8000)).astype(">u2").tobytes()
        else:
            raw = data.astype(disk).tobytes()
        parts.append(raw + b"\0" * (-len(raw) % BLOCK))
    return b"".join(parts)


def write_hdus(path: Path, images: Sequence[FitsImage]) -> None:
    """Write the FITS file of ``images`` atomically (serialised in memory, then one write:
    see ``write_atomic``)."""
    write_atomic(path, fits_bytes(images))


class _Sink:
    """A file for h5py's ``fileobj`` driver whose writes never fail under HDF5.

    The HDF5 library may crash (SIGSEGV) when its own writes fail
    (:mod:`calibration.folders`), which is why HDF5 files were built in memory
    and written with one Python write; a scan map's truth (0.5 MB per 24 um
    DCE) is too large for that.  HDF5 writes through this object instead: the
    first write that fails (a full disk, a file-size limit) is recorded, and it
    and every later write are kept in memory, later reads seeing them, so the
    library never sees a failure; the writer stops at its next record, closes
    the file and raises the recorded OSError (:class:`TruthWriter`).  Memory:
    HDF5's own caches while writes succeed; after a failure, what is written
    while the file closes.
    """

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self._pos = self._size = 0
        self.error: OSError | None = None
        self._kept: list[tuple[int, bytes]] = []     # (offset, bytes) written after the failure

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self._size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int) -> bytes:
        """``size`` bytes at the position (zeros past the end of the file, as HDF5 expects)."""
        out = bytearray(os.pread(self._fd, size, self._pos))
        out.extend(bytes(size - len(out)))
        for offset, data in self._kept:
            lo, hi = max(offset, self._pos), min(offset + len(data), self._pos + size)
            if lo < hi:
                out[lo - self._pos:hi - self._pos] = data[lo - offset:hi - offset]
        self._pos += size
        return bytes(out)

    def write(self, data) -> int:
        data = bytes(data)
        if self.error is None:
            try:
                view, done = memoryview(data), 0
                while done < len(data):
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            self._kept.append((self._pos, data))
        self._pos += len(data)
        self._size = max(self._size, self._pos)
        return len(data)

    def truncate(self, size: int) -> int:
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self._fd)


class TruthWriter:
    """Writes the truth of an observation, or of a chunk of its DCEs, into an HDF5 file.

    Written as it goes (through :class:`_Sink`), so memory does not grow with
    the number of DCEs.  An observation's ``truth.h5`` is written inside the
    simulator's staging folder, committed with ``raw/`` as a whole
    (:func:`calibration.folders.transaction`); a chunk's file is copied into it
    by :meth:`add_part`.  A failed write raises its OSError at the next record
    or at :meth:`close`, and the file is removed.
    """

    def __init__(self, path: Path, *, seed: int | None = None, config_toml: str | None = None,
                 software: str | None = None):
        import h5py

        self.path = Path(path)
        self._sink = _Sink(self.path)
        try:
            self._h5 = h5py.File(self._sink, "w")
        except BaseException:
            self._sink.close()
            self.path.unlink(missing_ok=True)
            raise
        if seed is not None:                      # the observation's file (a chunk's has no attributes)
            self._h5.attrs["schema"] = SCHEMA
            self._h5.attrs["seed"] = int(seed)
            self._h5.attrs["config"] = config_toml
            self._h5.attrs["software"] = software

    def add_attrs(self, **attrs) -> None:
        """Further root attributes (e.g. a multi-array AOR's ``bands``)."""
        for key, value in attrs.items():
            self._h5.attrs[key] = value

    def _check(self) -> None:
        if self._sink.error is not None:
            raise self._sink.error

    def add_dce(self, name: str, *, sky_mjysr, slope_dn_s, cr_events, responsivity,
                attrs: dict) -> None:
        """Record one DCE (``name`` is the raw file name without ``_raw.fits``)."""
        self._check()
        grp = self._h5.create_group(f"dce/{name}")
        grp.create_dataset("sky_mjysr", data=np.asarray(sky_mjysr, dtype=np.float64))
        grp.create_dataset("slope_dn_s", data=np.asarray(slope_dn_s, dtype=np.float64))
        grp.create_dataset("responsivity", data=np.asarray(responsivity, dtype=np.float64))
        grp.create_dataset("cr_events", data=cr_events)
        for k, v in attrs.items():
            grp.attrs[k] = v

    def add_sources(self, table: Table) -> None:
        """Record the source catalogue (ra, dec in deg; fluxes in Jy)."""
        self._check()
        cols = [(name, "f8") for name in table.colnames]
        arr = np.zeros(len(table), dtype=cols)
        for name in table.colnames:
            col = table[name]
            arr[name] = getattr(col, "value", np.asarray(col))
        self._h5.create_dataset("sources", data=arr)

    def add_array(self, name: str, data, **attrs) -> None:
        """Record any extra array (e.g. the drift curve or the detector's maps)."""
        self._check()
        ds = self._h5.create_dataset(name, data=np.asarray(data))
        for k, v in attrs.items():
            ds.attrs[k] = v

    def add_part(self, path: Path, names: Sequence[str]) -> None:
        """Copy the DCE groups ``names`` (in that order) from the chunk file ``path``."""
        import h5py

        dce = self._h5.require_group("dce")
        with h5py.File(path, "r") as part:
            for name in names:
                self._check()
                part.copy(part["dce"][name], dce, name)

    def add_array_truth(self, path: Path, band: int) -> None:
        """Copy the truth file ``path`` of one array of a multi-array AOR into this one.

        Its DCE groups go into ``/dce`` (their names differ by channel, ``SPITZER_M<ch>_...``);
        its AOR-level arrays (``detector/...``, ``anneals``, ``responsivity_steps``) into
        ``/bands/<band>/``, with its ``config`` and ``seed`` as that group's attributes; its
        ``/sources`` becomes the AOR's, or must equal it (the arrays share one sky).
        """
        import h5py

        dce = self._h5.require_group("dce")
        group = self._h5.require_group(f"bands/{int(band)}")
        with h5py.File(path, "r") as one:
            for name in one["dce"]:
                self._check()
                one.copy(one["dce"][name], dce, name)
            for key in one:
                if key not in ("dce", "sources"):
                    one.copy(one[key], group, key)
            for key in ("config", "seed"):
                group.attrs[key] = one.attrs[key]
            if "sources" not in self._h5:
                one.copy(one["sources"], self._h5, "sources")
            elif not np.array_equal(self._h5["sources"][()], one["sources"][()]):
                raise ValueError(f"{path}: the {band} um array saw another sky than the others")

    def close(self) -> None:
        """Finish the file (removed, and its write error raised, if a write failed)."""
        self._h5.close()
        self._sink.close()
        if self._sink.error is not None:
            self.path.unlink(missing_ok=True)
            raise self._sink.error

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._h5.close()
        finally:
            self._sink.close()
            self.path.unlink(missing_ok=True)
