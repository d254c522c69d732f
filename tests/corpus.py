"""Regression corpus of damaged raw inputs: never a silent wrong BCD.

From a clean simulated observation (70 um, 12 DCEs; 24 um, 6 DCEs) each case
makes one damaged copy -- a header card edited, the data changed, a file
added, renamed or replaced -- and runs ``mips reprocess`` on it in-process.
Every case states what must happen:

``REFUSE``
    without ``--keep-going``: exit 2, one line on stderr naming the damaged
    file (or, for a folder-wide problem, the folder), no product;
    with ``--keep-going``: exit 1, the damaged file listed as failed and the
    other DCEs' BCDs written and equal to the clean reference where unflagged.
``ACCEPT``
    exit 0, every BCD of the reference written, and wherever the case's mask
    says nothing the BCD equals the reference (``exact``: to float rounding;
    ``close``: within 5 sigma of the two uncertainties -- the case's counted up
    to twice the reference's -- for changes that alter a slope legitimately).
``EITHER``
    as ``REFUSE``, or exit 0 with every unflagged pixel as the reference
    (``close``) and any BCD the reference lacks flagged everywhere.

Every case also checks: no exception escapes (a traceback), no hang (alarm),
the raw inputs are unchanged by the run, and every product carries RAWSHA1.

``python tests/corpus.py`` runs the whole corpus and prints
``corpus: N cases, M as expected``; ``tests/test_input_corpus.py`` runs a
fast subset (:data:`FAST_IDS`) in CI.  A case may carry ``xfail`` with the
reason while its fix is pending; none does now.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.io import fits

REFUSE, ACCEPT, EITHER = "refuse", "accept", "refuse or flag"
CASE_TIMEOUT_S = 60
BLOCK = 2880


# ----------------------------------------------------------------------------- damage primitives
def _split(raw: bytes):
    """(cards, data bytes) of a single-HDU-or-more FITS file: primary header cards up to END."""
    cards = []
    for start in range(0, len(raw), BLOCK):
        for i in range(start, start + BLOCK, 80):
            card = raw[i:i + 80]
            if card.rstrip() == b"END":
                return cards, raw[start + BLOCK:]
            cards.append(card)
    raise ValueError("no END card")


def _join(cards, rest: bytes) -> bytes:
    head = b"".join(c.ljust(80)[:80] for c in cards) + b"END".ljust(80)
    return head + b" " * (-len(head) % BLOCK) + rest


def edit_cards(path: Path, fn: Callable[[list], list]) -> None:
    """Rewrite the primary header of ``path`` through ``fn(list of 80-byte cards)``; data untouched."""
    cards, rest = _split(path.read_bytes())
    path.write_bytes(_join(fn(list(cards)), rest))


def card(key: str, text: str, comment: str = "") -> bytes:
    """A card image with the value written as ``text`` (right-justified unless a string)."""
    value = text if text.startswith("'") else f"{text:>20}"
    image = f"{key:<8}= {value}" + (f" / {comment}" if comment else "")
    return image.encode("latin-1")


def _key(c: bytes) -> str:
    return c[:8].decode("latin-1").rstrip()


def set_card(key: str, text: str, *, raw_image: bytes | None = None):
    """Damage: replace the card of ``key`` (or append it if absent)."""
    new = raw_image if raw_image is not None else card(key, text)

    def fn(cards):
        for i, c in enumerate(cards):
            if _key(c) == key:
                cards[i] = new
                return cards
        return cards + [new]
    return fn


def drop_cards(*keys: str):
    return lambda cards: [c for c in cards if _key(c) not in keys]


def add_cards(*images: bytes):
    return lambda cards: cards + list(images)


def dup_card(key: str, text: str):
    """Damage: a second card of ``key`` with another value, after the first."""
    def fn(cards):
        i = next(i for i, c in enumerate(cards) if _key(c) == key)
        return cards[:i + 1] + [card(key, text)] + cards[i + 1:]
    return fn


def move_card(key: str, before: str):
    def fn(cards):
        c = next(c for c in cards if _key(c) == key)
        rest = [x for x in cards if x is not c]
        j = next(j for j, x in enumerate(rest) if _key(x) == before)
        return rest[:j] + [c] + rest[j:]
    return fn


def header_value(path: Path, key: str):
    return fits.getheader(path)[key]


def edit_data(path: Path, fn: Callable[[np.ndarray], np.ndarray], header_fn=None) -> None:
    """Rewrite ``path`` with data ``fn(data)`` (astropy writes BITPIX/BZERO for the new dtype)."""
    with fits.open(path) as h:
        hdr = h[0].header.copy()
        data = np.array(h[0].data)
    for k in ("BZERO", "BSCALE"):
        hdr.remove(k, ignore_missing=True)
    if header_fn is not None:
        header_fn(hdr)
    new = fn(data)
    fits.HDUList([fits.PrimaryHDU(new, header=hdr)]).writeto(path, overwrite=True)


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One damaged variant of a clean observation and what must happen to it."""

    id: str
    band: int
    damage: Callable            # damage(raw_dir, files, ctx) -> None
    expect: str                 # REFUSE, ACCEPT or EITHER
    blame: tuple = ()           # file names of which one must appear in the error ("" = the folder)
    keep_going: bool = False
    tol: str = "exact"          # ACCEPT comparison: "exact" or "close"
    lost: tuple = ()            # with keep_going: identities (EXPID, DCENUM) whose BCD may be missing
    xfail: str | None = None
    compare_kept: bool = True   # keep_going: compare the other BCDs with the reference
    flagged: tuple = ()         # ACCEPT: ((EXPID, DCENUM), y, x) pixels whose mask must be set


@dataclass
class Clean:
    """A clean simulated folder and its reference products."""

    band: int
    obs: Path
    files: list = field(default_factory=list)
    stim: list = field(default_factory=list)      # indices of stim DCEs
    ref: dict = field(default_factory=dict)       # identity -> (bcd, unc, mask)


def _ident(path: Path) -> tuple:
    h = fits.getheader(path)
    return int(h["EXPID"]), int(h["DCENUM"])


def _in_files(fn):
    """Adapt a per-file damage ``fn(path)`` to ``damage(raw_dir, files, ctx)`` applied to file ``i``."""
    def make(i):
        return lambda raw_dir, files, ctx: fn(files[i])
    return make


def _hdr(edit, i):
    return lambda raw_dir, files, ctx: edit_cards(files[i], edit)


def _dat(fn, i, header_fn=None):
    return lambda raw_dir, files, ctx: edit_data(files[i], fn, header_fn)


# value edits shared by both arrays: (label, key, FITS value text); all must be refused
TYPED_REFUSALS = [
    ("SAMPTIME=T", "SAMPTIME", "T"), ("SAMPTIME=F", "SAMPTIME", "F"),
    ("SAMPTIME-string", "SAMPTIME", "'0.131072'"), ("SAMPTIME=1", "SAMPTIME", "1"),
    ("SAMPTIME=0", "SAMPTIME", "0.0"), ("SAMPTIME<0", "SAMPTIME", "-0.131072"),
    ("SAMPTIME-inf", "SAMPTIME", "1E400"), ("SAMPTIME-complex", "SAMPTIME", "(0.131072, 0.0)"),
    ("SAMPTIME-empty", "SAMPTIME", ""), ("SAMPTIME-unparsable", "SAMPTIME", "0.13x1072"),
    ("SAMPTIME-nan", "SAMPTIME", "NAN"),
    ("DCENUM=-1", "DCENUM", "-1"), ("DCENUM-string", "DCENUM", "'1'"), ("DCENUM=T", "DCENUM", "T"),
    ("DCENUM-real", "DCENUM", "1.0"), ("DCENUM=2.5", "DCENUM", "2.5"),
    ("DCENUM-unparsable", "DCENUM", "1x"),
    ("EXPID=-1", "EXPID", "-1"), ("EXPID-string", "EXPID", "'0'"), ("EXPID=F", "EXPID", "F"),
    ("AORKEY-letters", "AORKEY", "'1234abcd'"), ("AORKEY<0", "AORKEY", "-12345678"),
    ("AORKEY=T", "AORKEY", "T"), ("AORKEY-real", "AORKEY", "12345678.0"),
    ("EXPTIME-string", "EXPTIME", "'10.48576'"), ("EXPTIME=T", "EXPTIME", "T"),
    ("EXPTIME=0", "EXPTIME", "0.0"), ("EXPTIME<0", "EXPTIME", "-10.48576"),
    ("EXPTIME-half", "EXPTIME", "5.24288"), ("EXPTIME-double", "EXPTIME", "20.97152"),
    ("MJD_OBS=0", "MJD_OBS", "0.0"), ("MJD_OBS-JD", "MJD_OBS", "2454000.5"),
    ("MJD_OBS-2023", "MJD_OBS", "60000.0"), ("MJD_OBS-string", "MJD_OBS", "'54000.0'"),
    ("MJD_OBS=T", "MJD_OBS", "T"), ("MJD_OBS-1990", "MJD_OBS", "48000.0"),
    ("CHNLNUM=4", "CHNLNUM", "4"), ("CHNLNUM=0", "CHNLNUM", "0"),
    ("CHNLNUM-string", "CHNLNUM", "'2'"), ("CHNLNUM=T", "CHNLNUM", "T"),
    ("CHNLNUM-real", "CHNLNUM", "2.0"),
    ("INSTRUME=IRAC", "INSTRUME", "'IRAC'"), ("INSTRUME=T", "INSTRUME", "T"),
    ("STIMFLSH='F'", "STIMFLSH", "'F'"), ("STIMFLSH='T'", "STIMFLSH", "'T'"),
    ("STIMFLSH=0", "STIMFLSH", "0"), ("STIMFLSH=1", "STIMFLSH", "1"),
    ("STIMFLSH-unparsable", "STIMFLSH", "TRUE"),
    ("NRAMPS-string", "NRAMPS", "'1'"), ("NRAMPS=T", "NRAMPS", "T"), ("NRAMPS=0", "NRAMPS", "0"),
    ("NRAMPS=3", "NRAMPS", "3"),
    ("CTYPE1=FOO", "CTYPE1", "'FOO'"), ("CTYPE2-SIN", "CTYPE2", "'DEC--SIN-SIP'"),
    ("CTYPE1-noSIP", "CTYPE1", "'RA---TAN'"), ("CTYPE1=T", "CTYPE1", "T"),
    ("CTYPE1-GLON", "CTYPE1", "'GLON-TAN-SIP'"),
    ("CRVAL2=100", "CRVAL2", "100.0"), ("CRVAL2=-91", "CRVAL2", "-91.0"),
    ("CRVAL1=400", "CRVAL1", "400.0"), ("CRVAL1-string", "CRVAL1", "'53.1'"),
    ("CRVAL1=T", "CRVAL1", "T"), ("CRPIX1-string", "CRPIX1", "'8.5'"), ("CRPIX2=F", "CRPIX2", "F"),
    ("CD1_1-string", "CD1_1", "'-0.0024'"), ("CD-arcsec", "CD1_1", "-8.64"),
    ("A_2_0-string", "A_2_0", "'0.0002'"), ("A_ORDER-real", "A_ORDER", "2.5"),
    ("DATE_OBS-day-off", "DATE_OBS", "'2006-09-23T00:00:00.000'"),
    ("DATE_OBS-garbage", "DATE_OBS", "'yesterday'"), ("DATE_OBS-number", "DATE_OBS", "5"),
    ("PA-string", "PA", "'30.0'"), ("PXSCAL1=T", "PXSCAL1", "T"),
    ("CSM_PRED-string", "CSM_PRED", "'0.0'"), ("EXPTYPE-number", "EXPTYPE", "5"),
    ("FOVNAME=T", "FOVNAME", "T"), ("EQUINOX-string", "EQUINOX", "'2000'"),
    ("ORIGIN-unterminated", "ORIGIN", "'mipssim"),
]
# band-specific values: key -> value for the other array or the same file
_SAMPTIME_OTHER = {70: "0.524288", 24: "0.131072"}


def _typed_cases(band: int, targets) -> list[Case]:
    out = []
    for label, key, text in TYPED_REFUSALS:
        if band == 24 and key in ("NRAMPS",) and text == "3":
            continue   # NRAMPS is not used at 24 um
        for i in targets:
            out.append(Case(f"{band}/hdr/{label}/f{i}", band, _hdr(set_card(key, text), i), REFUSE,
                            blame=(i,)))
    return out




def _structural_cases(band: int, i: int) -> list[Case]:
    """Header structure: missing, duplicated, non-ASCII and unparsable cards; WCS matrix."""
    c = []
    required = ["SAMPTIME", "EXPTIME", "DCENUM", "EXPID", "AORKEY", "CHNLNUM", "MJD_OBS",
                "CRVAL1", "CTYPE2", "INSTRUME"] + (["STIMFLSH"] if band != 24 else
                                                   ["CSM_PRED", "SATTHDIF"])
    for key in required:
        c.append(Case(f"{band}/hdr/missing-{key}/f{i}", band, _hdr(drop_cards(key), i), REFUSE,
                      blame=(i,)))
    c += [
        Case(f"{band}/hdr/no-CD-matrix/f{i}", band,
             _hdr(drop_cards("CD1_1", "CD1_2", "CD2_1", "CD2_2"), i), REFUSE, blame=(i,)),
        Case(f"{band}/hdr/singular-CD/f{i}", band,
             _hdr(lambda cs: set_card("CD2_2", "0.0")(set_card("CD2_1", "0.0")(cs)), i),
             REFUSE, blame=(i,)),
        Case(f"{band}/hdr/SIP-without-orders/f{i}", band, _hdr(drop_cards("A_ORDER", "B_ORDER"), i),
             REFUSE, blame=(i,)),
        Case(f"{band}/hdr/duplicate-SAMPTIME/f{i}", band, _hdr(dup_card("SAMPTIME", "1.0"), i),
             REFUSE, blame=(i,)),
        Case(f"{band}/hdr/duplicate-DCENUM/f{i}", band, _hdr(dup_card("DCENUM", "3"), i),
             REFUSE, blame=(i,)),
        Case(f"{band}/hdr/duplicate-CRVAL1/f{i}", band, _hdr(dup_card("CRVAL1", "10.0"), i),
             REFUSE, blame=(i,)),
        Case(f"{band}/hdr/non-ascii/f{i}", band,
             _hdr(add_cards("OBJECT  = 'caf\xe9'".encode("latin-1")), i), REFUSE, blame=(i,)),
        Case(f"{band}/hdr/no-equals/f{i}", band,
             _hdr(set_card("SAMPTIME", "", raw_image=b"SAMPTIME  0.131072"), i), REFUSE, blame=(i,)),
        Case(f"{band}/hdr/SAMPTIME-other-array/f{i}", band,
             _hdr(set_card("SAMPTIME", _SAMPTIME_OTHER[band]), i), REFUSE, blame=(i,)),
        Case(f"{band}/hdr/STIMFLSH-duplicate/f{i}", band, _hdr(dup_card("STIMFLSH", "T"), i),
             REFUSE, blame=(i,)),
    ]
    if band == 24:
        c += [Case(f"24/hdr/{label}/f{i}", band, _hdr(set_card(key, text), i), REFUSE, blame=(i,))
              for label, key, text in [
                  ("NREADS=T", "NREADS", "T"), ("NREADS-string", "NREADS", "'20'"),
                  ("NREADS=1", "NREADS", "1"), ("NREADS=10", "NREADS", "10"),
                  ("NREADS=0", "NREADS", "0"), ("NREADS-real", "NREADS", "20.0"),
                  ("SATTHDIF=0", "SATTHDIF", "0.0"), ("SATTHDIF-string", "SATTHDIF", "'1800'"),
                  ("SATTHDIF=T", "SATTHDIF", "T"), ("CSM_PRED=T", "CSM_PRED", "T"),
                  ("CHNLNUM=2", "CHNLNUM", "2"), ("CHNLNUM=3", "CHNLNUM", "3")]]
    else:
        c += [Case(f"{band}/hdr/{label}/f{i}", band, _hdr(set_card(key, text), i), REFUSE,
                   blame=(i,))
              for label, key, text in [
                  ("CHNLNUM=1", "CHNLNUM", "1"), ("NREADS=60", "NREADS", "60"),
                  ("NREADS-string", "NREADS", "'80'"), ("NREADS=T", "NREADS", "T")]]
    return c


def _accepted_header_cases(band: int, i: int) -> list[Case]:
    """Harmless edits: the BCDs must equal the reference."""
    samp = {70: "1.31072E-01", 24: "5.24288E-01"}[band]
    samp_d = {70: "1.31072D-01", 24: "5.24288D-01"}[band]
    cases = [
        ("SAMPTIME-exponent", set_card("SAMPTIME", samp)),
        ("SAMPTIME-D-exponent", set_card("SAMPTIME", samp_d)),
        ("add-OBJECT", add_cards(card("OBJECT", "'NGC 1291'"))),
        ("AORKEY-SSC-string", set_card("AORKEY", "'12345678'")),    # as the SSC writes it
        ("add-HISTORY", add_cards(b"HISTORY edited by hand")),
        ("add-unknown-key", add_cards(card("FOOBAR", "1"))),
        ("add-HIERARCH", add_cards(b"HIERARCH ESO DET CHIP = 'x'")),
        ("comments-changed", _recomment),
        ("PA-moved", move_card("PA", "CTYPE1")),
        ("no-DATE_OBS", drop_cards("DATE_OBS")),
        ("no-TELESCOP", drop_cards("TELESCOP")),
        ("long-FOVNAME", set_card("FOVNAME", "", raw_image=card(
            "FOVNAME", f"'MIPS_{band}um_default_small_FOV1'", "field of view"))),
    ]
    if band != 24:
        cases.append(("no-NRAMPS", drop_cards("NRAMPS")))
        cases.append(("EXPTIME-(N-1)-reads", set_card("EXPTIME", repr(79 * 0.131072))))
    else:
        cases.append(("no-NREADS", drop_cards("NREADS")))
        cases.append(("STIMFLSH-absent", drop_cards("STIMFLSH")))
    return [Case(f"{band}/ok/{label}/f{i}", band, _hdr(fn, i), ACCEPT)
            for label, fn in cases]


def _recomment(cards):
    """Damage: every value card's comment replaced (values untouched)."""
    out = []
    for c in cards:
        text = c.decode("latin-1")
        if text[8:10] == "= " and "'" not in text and " / " in text:
            text = text[: text.index(" / ")] + " / edited comment"
        out.append(text.encode("latin-1"))
    return out


def _set_pixel(value, y=10, x=5, reads=slice(None)):
    def fn(d):
        d = d.astype(np.float64 if isinstance(value, float) and value != int(value) else d.dtype)
        d[reads, y, x] = value
        return d
    return fn


def _ge_data_cases(clean: Clean, i: int) -> list[Case]:
    band, f = clean.band, clean.files[i]
    data = fits.getdata(f)
    wraps = bool(data.max() > 32767)
    hit = () if i in clean.stim else ((_ident(f), 10, 5),)    # the changed pixel of a sky DCE
    c = [
        Case(f"{band}/data/uint8/f{i}", band, _dat(lambda d: (d % 256).astype(np.uint8), i), REFUSE,
             blame=(i,)),
        Case(f"{band}/data/int8/f{i}", band, _dat(lambda d: (d % 128).astype(np.int8), i), REFUSE,
             blame=(i,)),
        Case(f"{band}/data/int16-wrapped/f{i}", band, _dat(lambda d: d.astype(np.int16), i),
             REFUSE if wraps else ACCEPT, blame=(i,)),
        Case(f"{band}/data/float-fractional/f{i}", band,
             _dat(lambda d: d.astype(np.float32) + np.float32(0.5) * (np.arange(d.size) % 7 == 0)
                  .reshape(d.shape), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/one-fractional/f{i}", band,
             _dat(lambda d: _put(d.astype(np.float64), (40, 10, 5), 1000.25), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/nan/f{i}", band,
             _dat(lambda d: _put(d.astype(np.float32), (40, 10, 5), np.nan), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/inf/f{i}", band,
             _dat(lambda d: _put(d.astype(np.float32), (40, 10, 5), np.inf), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/negative/f{i}", band,
             _dat(lambda d: _put(d.astype(np.int32), (40, 10, 5), -5), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/negative-float/f{i}", band,
             _dat(lambda d: d.astype(np.float32) - 70000.0, i), REFUSE, blame=(i,)),
        Case(f"{band}/data/above-adc/f{i}", band,
             _dat(lambda d: _put(d.astype(np.int32), (40, 10, 5), 70000), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/huge-float/f{i}", band,
             _dat(lambda d: _put(d.astype(np.float64), (40, 10, 5), 1e7), i), REFUSE, blame=(i,)),
        Case(f"{band}/data/2d/f{i}", band, _dat(lambda d: d[0], i), REFUSE, blame=(i,)),
        Case(f"{band}/data/3-reads/f{i}", band, _dat(lambda d: d[:3], i), REFUSE, blame=(i,)),
        Case(f"{band}/data/wrong-frame/f{i}", band, _dat(lambda d: d[:, :16, :16], i), REFUSE,
             blame=(i,)),
        Case(f"{band}/data/transposed/f{i}", band, _dat(lambda d: d[:, :, :16], i), REFUSE,
             blame=(i,)),
        Case(f"{band}/data/empty-primary/f{i}", band, _in_files(_empty_primary)(i), REFUSE,
             blame=(i,)),
        Case(f"{band}/data/truncated/f{i}", band, _in_files(_truncate)(i), REFUSE, blame=(i,)),
        Case(f"{band}/data/not-fits/f{i}", band, _in_files(_not_fits)(i), REFUSE, blame=(i,)),
        Case(f"{band}/data/empty-file/f{i}", band, _in_files(lambda p: p.write_bytes(b""))(i),
             REFUSE, blame=(i,)),
        # accepted: representations of the same integer DN, and physical changes that get flagged
        Case(f"{band}/ok/int32/f{i}", band, _dat(lambda d: d.astype(np.int32), i), ACCEPT),
        Case(f"{band}/ok/float32-integral/f{i}", band, _dat(lambda d: d.astype(np.float32), i),
             ACCEPT),
        Case(f"{band}/ok/rewritten/f{i}", band, _dat(lambda d: d, i), ACCEPT),
        Case(f"{band}/ok/extension-added/f{i}", band, _in_files(_add_extension)(i), ACCEPT),
        Case(f"{band}/ok/jump/f{i}", band, _dat(_jump(3000), i), ACCEPT, tol="close",
             flagged=hit),
        Case(f"{band}/ok/saturated-late/f{i}", band, _dat(_set_pixel(65535, reads=slice(30, None)), i),
             ACCEPT, tol="close", flagged=hit),
        Case(f"{band}/ok/saturated-all/f{i}", band, _dat(_set_pixel(65535), i), ACCEPT, tol="close",
             flagged=hit),
    ]
    return c


def _put(d, index, value):
    d[index] = value
    return d


def _jump(dn):
    def fn(d):
        d = d.astype(np.int32)
        d[40:, 10, 5] = np.minimum(d[40:, 10, 5] + dn, 65535)
        return d.astype(np.uint16)
    return fn


def _truncate(p: Path) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _not_fits(p: Path) -> None:
    p.write_bytes(b"This is not a FITS file\n" * 200)


def _empty_primary(p: Path) -> None:
    with fits.open(p) as h:
        hdr, data = h[0].header.copy(), np.array(h[0].data)
    fits.HDUList([fits.PrimaryHDU(header=hdr), fits.ImageHDU(data)]).writeto(p, overwrite=True)


def _add_extension(p: Path) -> None:
    with fits.open(p) as h:
        hdul = fits.HDUList([h[0].copy(), fits.ImageHDU(np.zeros((4, 4), np.int16), name="JUNK")])
        hdul.writeto(p.with_name(p.name + ".new"), overwrite=True)
    os.replace(p.with_name(p.name + ".new"), p)


def _si_data_cases(clean: Clean, i: int) -> list[Case]:
    band = 24

    def block(value, plane=0):
        def fn(d):
            d = d.astype(np.float64)
            d[plane, 60:64, 60:64] = value
            return d.astype(np.float32)
        return fn

    return [
        Case(f"24/data/slope-1e7-block/f{i}", band, _dat(block(1e7), i), REFUSE, blame=(i,)),
        Case(f"24/data/slope-beyond-adc/f{i}", band, _dat(block(7000.0), i), REFUSE, blame=(i,)),
        Case(f"24/data/slope-negative-beyond/f{i}", band, _dat(block(-7000.0), i), REFUSE, blame=(i,)),
        Case(f"24/data/diff-fractional/f{i}", band, _dat(block(100.5, plane=1), i), REFUSE,
             blame=(i,)),
        Case(f"24/data/diff-above-adc/f{i}", band, _dat(block(70000.0, plane=1), i), REFUSE,
             blame=(i,)),
        Case(f"24/data/nan/f{i}", band, _dat(block(np.nan), i), REFUSE, blame=(i,)),
        Case(f"24/data/inf-diff/f{i}", band, _dat(block(np.inf, plane=1), i), REFUSE, blame=(i,)),
        Case(f"24/data/uint8/f{i}", band, _dat(lambda d: np.clip(d, 0, 255).astype(np.uint8), i),
             REFUSE, blame=(i,)),
        Case(f"24/data/three-planes/f{i}", band,
             _dat(lambda d: np.concatenate([d, d[:1]]), i), REFUSE, blame=(i,)),
        Case(f"24/data/small-planes/f{i}", band, _dat(lambda d: d[:, :64, :64], i), REFUSE,
             blame=(i,)),
        Case(f"24/data/one-plane/f{i}", band, _dat(lambda d: d[0], i), REFUSE, blame=(i,)),
        Case(f"24/data/truncated/f{i}", band, _in_files(_truncate)(i), REFUSE, blame=(i,)),
        Case(f"24/data/not-fits/f{i}", band, _in_files(_not_fits)(i), REFUSE, blame=(i,)),
        Case(f"24/ok/float64/f{i}", band, _dat(lambda d: d.astype(np.float64), i), ACCEPT),
        Case(f"24/ok/rewritten/f{i}", band, _dat(lambda d: d, i), ACCEPT),
        Case(f"24/ok/extension-added/f{i}", band, _in_files(_add_extension)(i), ACCEPT),
    ]


# ----------------------------------------------------------------------------- folder-level damage
def _copy_as(src_of: Callable, name: str):
    """Damage: copy a file (``src_of(files, ctx)``) into raw/ as ``name``."""
    def damage(raw_dir, files, ctx):
        shutil.copyfile(src_of(files, ctx), raw_dir / name)
    return damage


def _rename(i: int, name: str):
    def damage(raw_dir, files, ctx):
        os.replace(files[i], raw_dir / name)
    return damage


def _gzip(i: int, keep_original: bool):
    def damage(raw_dir, files, ctx):
        (raw_dir / (files[i].name + ".gz")).write_bytes(gzip.compress(files[i].read_bytes(), mtime=0))
        if not keep_original:
            files[i].unlink()
    return damage


def _set_mjd_like(i: int, j: int, offset_s: float = 0.0):
    """Damage: MJD_OBS of file i := that of file j + offset_s (DATE_OBS dropped to stay consistent)."""
    def damage(raw_dir, files, ctx):
        mjd = float(header_value(files[j], "MJD_OBS")) + offset_s / 86400.0
        edit_cards(files[i], lambda cs: drop_cards("DATE_OBS")(set_card("MJD_OBS", repr(mjd))(cs)))
    return damage


def _chain(*damages):
    def damage(raw_dir, files, ctx):
        for d in damages:
            d(raw_dir, files, ctx)
    return damage


def _other_band_file(band):
    return lambda files, ctx: ctx[band].files[2]


def _folder_cases(clean: Clean, ctx) -> list[Case]:
    band, files = clean.band, clean.files
    other = 24 if band != 24 else 70
    ch = {24: 1, 70: 2, 160: 3}[band]
    foreign = f"SPITZER_M{ch}_12345678_0009_0009_0_raw.fits"
    c = [
        # a file of the other array in the folder: it alone is refused
        Case(f"{band}/folder/{other}um-file-added", band,
             _copy_as(_other_band_file(other), ctx[other].files[2].name), REFUSE,
             blame=(ctx[other].files[2].name,)),
        Case(f"{band}/folder/{other}um-file-added/keep-going", band,
             _copy_as(_other_band_file(other), ctx[other].files[2].name), REFUSE,
             blame=(ctx[other].files[2].name,), keep_going=True),
        Case(f"{band}/folder/{other}um-file-first", band,
             _copy_as(_other_band_file(other), "AAA_first_raw.fits"), REFUSE,
             blame=("AAA_first_raw.fits",)),
        Case(f"{band}/folder/{other}um-file-first/keep-going", band,
             _copy_as(_other_band_file(other), "AAA_first_raw.fits"), REFUSE,
             blame=("AAA_first_raw.fits",), keep_going=True),
        # a bad first file: blamed alone; with --keep-going the good DCEs are kept
        Case(f"{band}/folder/first-truncated/keep-going", band, _in_files(_truncate)(0), REFUSE,
             blame=(0,), keep_going=True, lost=(_ident(files[0]),)),
        Case(f"{band}/folder/first-not-fits/keep-going", band, _in_files(_not_fits)(0), REFUSE,
             blame=(0,), keep_going=True, lost=(_ident(files[0]),)),
        Case(f"{band}/folder/first-CHNLNUM-T/keep-going", band, _hdr(set_card("CHNLNUM", "T"), 0),
             REFUSE, blame=(0,), keep_going=True, lost=(_ident(files[0]),)),
        Case(f"{band}/folder/first-CHNLNUM-other/keep-going", band,
             _hdr(set_card("CHNLNUM", str({24: 2, 70: 1}[band])), 0), REFUSE, blame=(0,),
             keep_going=True, lost=(_ident(files[0]),)),
        # duplicates
        Case(f"{band}/folder/same-bytes-other-name", band,
             _copy_as(lambda fs, cx: fs[3], "zz_copy_raw.fits"), REFUSE, blame=("zz_copy_raw.fits",)),
        Case(f"{band}/folder/same-bytes-other-name/keep-going", band,
             _copy_as(lambda fs, cx: fs[3], "zz_copy_raw.fits"), REFUSE, blame=("zz_copy_raw.fits",),
             keep_going=True),
        Case(f"{band}/folder/symlink-duplicate", band, _symlink(lambda fs: fs[3].name, "zz_link_raw.fits"),
             REFUSE, blame=("zz_link_raw.fits",)),
        Case(f"{band}/folder/same-identity-other-bytes", band,
             _chain(_copy_as(lambda fs, cx: fs[3], "zz_other_raw.fits"),
                    lambda raw_dir, fs, cx: edit_cards(raw_dir / "zz_other_raw.fits",
                                                      add_cards(card("OBJECT", "'x'")))),
             REFUSE, blame=("zz_other_raw.fits",)),
        Case(f"{band}/folder/same-identity-other-bytes/keep-going", band,
             _chain(_copy_as(lambda fs, cx: fs[3], "zz_other_raw.fits"),
                    lambda raw_dir, fs, cx: edit_cards(raw_dir / "zz_other_raw.fits",
                                                      add_cards(card("OBJECT", "'x'")))),
             REFUSE, blame=("zz_other_raw.fits",), keep_going=True, lost=(_ident(files[3]),)),
        # names
        Case(f"{band}/name/channel-contradicts", band,
             _rename(3, files[3].name.replace(f"_M{ch}_", f"_M{3 if ch != 3 else 2}_")), REFUSE,
             blame=(files[3].name.replace(f"_M{ch}_", f"_M{3 if ch != 3 else 2}_"),)),
        Case(f"{band}/name/dcenum-contradicts", band, _rename(3, foreign), REFUSE, blame=(foreign,)),
        Case(f"{band}/name/aorkey-contradicts", band,
             _rename(3, files[3].name.replace("12345678", "87654321")), REFUSE,
             blame=(files[3].name.replace("12345678", "87654321"),)),
        Case(f"{band}/ok/non-ssc-name", band, _rename(3, "my_dce_3_raw.fits"), ACCEPT),
        # discovery
        Case(f"{band}/find/gz-beside", band, _gzip(3, True), REFUSE, blame=(files[3].name + ".gz",)),
        Case(f"{band}/find/gz-instead", band, _gzip(3, False), REFUSE, blame=(files[3].name + ".gz",)),
        Case(f"{band}/find/gz-beside/keep-going", band, _gzip(3, True), REFUSE,
             blame=(files[3].name + ".gz",), keep_going=True),
        Case(f"{band}/find/upper-case", band, _rename(3, files[3].name.replace("_raw.fits", "_raw.FITS")),
             REFUSE, blame=(files[3].name.replace("_raw.fits", "_raw.FITS"),)),
        Case(f"{band}/find/fit-extension", band, _rename(3, files[3].name.replace(".fits", ".fit")),
             REFUSE, blame=(files[3].name.replace(".fits", ".fit"),)),
        Case(f"{band}/find/tmp-leftover", band,
             _copy_as(lambda fs, cx: fs[3], files[3].name + ".tmp"), REFUSE,
             blame=(files[3].name + ".tmp",)),
        Case(f"{band}/find/fifo", band, _fifo("x_raw.fits"), REFUSE, blame=("x_raw.fits",)),
        Case(f"{band}/find/fifo/keep-going", band, _fifo("x_raw.fits"), REFUSE, blame=("x_raw.fits",),
             keep_going=True),
        Case(f"{band}/find/directory", band,
             lambda raw_dir, fs, cx: (raw_dir / "d_raw.fits").mkdir(), REFUSE, blame=("d_raw.fits",)),
        Case(f"{band}/find/dangling-symlink", band, _symlink(lambda fs: "nowhere.fits", "zz_raw.fits"),
             REFUSE, blame=("zz_raw.fits",)),
        Case(f"{band}/find/devnull", band, _symlink(lambda fs: "/dev/null", "zz_raw.fits"), REFUSE,
             blame=("zz_raw.fits",)),
        Case(f"{band}/find/empty-raw", band, _empty_raw, REFUSE, blame=("",)),
        Case(f"{band}/find/raw-is-a-file", band, _raw_is_file, REFUSE, blame=("",)),
        Case(f"{band}/find/only-gz", band, _only_gz, REFUSE, blame=(files[0].name + ".gz",)),
        # mixed bands, no majority
        Case(f"{band}/folder/tie-of-bands", band, _tie(other), REFUSE, blame=("",)),
        # time order
        Case(f"{band}/time/mjd-half-day-late/f3", band, _set_mjd_like(3, 3, 43200.0), REFUSE,
             blame=(3,)),
        Case(f"{band}/time/mjd-before-first/f3", band, _set_mjd_like(3, 0, -600.0), REFUSE, blame=(3,)),
        Case(f"{band}/time/mjd-of-neighbour/f3", band, _set_mjd_like(3, 2), REFUSE, blame=(3, 2)),
        Case(f"{band}/time/overlap/f3", band, _set_mjd_like(3, 3, 3.0), REFUSE, blame=(3, 4)),
        Case(f"{band}/time/mjd-half-day-late/f3/keep-going", band, _set_mjd_like(3, 3, 43200.0),
             REFUSE, blame=(3,), keep_going=True, lost=(_ident(files[3]),)),
        Case(f"{band}/ok/mjd-rounded/f3", band, _set_mjd_like(3, 3, 0.0004), ACCEPT, tol="close"),
        # control
        Case(f"{band}/ok/untouched", band, lambda raw_dir, fs, cx: None, ACCEPT),
    ]
    if os.geteuid() != 0:    # permission bits do not bind root
        c += [Case(f"{band}/find/unreadable-raw", band, _chmod_raw, REFUSE, blame=("",)),
              Case(f"{band}/find/unreadable-file", band, _chmod_file(3), REFUSE, blame=(3,))]
    return c


def _symlink(target_of, name):
    def damage(raw_dir, files, ctx):
        os.symlink(target_of(files), raw_dir / name)
    return damage


def _fifo(name):
    def damage(raw_dir, files, ctx):
        os.mkfifo(raw_dir / name)
    return damage


def _empty_raw(raw_dir, files, ctx):
    for f in files:
        f.unlink()


def _raw_is_file(raw_dir, files, ctx):
    shutil.rmtree(raw_dir)
    raw_dir.write_text("not a folder")


def _only_gz(raw_dir, files, ctx):
    for f in files:
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes(), mtime=0))
        f.unlink()


def _tie(other):
    def damage(raw_dir, files, ctx):
        mine = list(files)
        theirs = ctx[other].files
        for f in mine[len(theirs):]:
            f.unlink()
        for f in theirs[: min(len(theirs), len(mine))]:
            shutil.copyfile(f, raw_dir / f.name)
    return damage


def _chmod_raw(raw_dir, files, ctx):
    raw_dir.chmod(0)


def _chmod_file(i):
    return lambda raw_dir, files, ctx: files[i].chmod(0)


def _stim_cases(clean: Clean) -> list[Case]:
    """Stim-flash problems (70/160 um): the lead's stim checks decide; xfail until then."""
    band, files, stim = clean.band, clean.files, clean.stim
    s0 = stim[0]

    def all_off(raw_dir, fs, ctx):
        for k in stim:
            edit_cards(fs[k], set_card("STIMFLSH", "F"))

    def not_fired(raw_dir, fs, ctx):    # the same DCEs simulated with the flash off (same noise)
        for k in stim:
            shutil.copyfile(ctx["70-no-stim"].files[k], fs[k])

    return [
        Case(f"{band}/stim/no-flash-in-folder", band, all_off, EITHER, blame=("",)),
        Case(f"{band}/stim/flash-not-fired", band, not_fired, EITHER,
             blame=tuple(files[k].name for k in stim) + ("",)),
        Case(f"{band}/stim/one-flash-marked-sky", band, _hdr(set_card("STIMFLSH", "F"), s0), EITHER,
             blame=(s0,)),
        # a DCE that says it holds a flash but shows none is reported and gets no BCD (its
        # light is unknown: a sky DCE with a wrong keyword, or a flash that did not fire)
        Case(f"{band}/stim/sky-marked-flash", band, _hdr(set_card("STIMFLSH", "T"), 3), EITHER,
             blame=(3,), lost=(_ident(files[3]),)),
        # no flash left at all: the folder cannot be calibrated, so keep-going lists it, no BCDs
        Case(f"{band}/stim/no-flash/keep-going", band,
             _chain(all_off, _in_files(_truncate)(3)), EITHER, blame=("",), keep_going=True,
             compare_kept=False),
    ]


def _batching_cases(clean: Clean) -> list[Case]:
    """Per-DCE timing (70/160 um): a DCE with fewer reads must be fitted with its own."""
    band = clean.band
    n60 = 60

    def shorter(d):
        return d[:n60]

    def hdr(h):
        h["EXPTIME"] = n60 * 0.131072

    return [Case(f"{band}/ok/60-reads-among-80/f3", band, _dat(shorter, 3, hdr), ACCEPT, tol="close"),
            Case(f"{band}/ok/60-reads-among-80/f5", band, _dat(shorter, clean.stim[0], hdr), ACCEPT,
                 tol="close")]


def build_cases(ctx: dict) -> list[Case]:
    """Every case of the corpus over the clean folders in ``ctx`` (band -> Clean)."""
    cases: list[Case] = []
    if 70 in ctx:
        c70 = ctx[70]
        targets = (0, 3, c70.stim[0], len(c70.files) - 1)
        cases += _typed_cases(70, targets)
        for i in (0, 3, c70.stim[0]):
            cases += _structural_cases(70, i)
            cases += _accepted_header_cases(70, i)
        for i in (0, 3, c70.stim[0]):
            cases += _ge_data_cases(c70, i)
        cases += _folder_cases(c70, ctx) + _stim_cases(c70) + _batching_cases(c70)
    if 24 in ctx:
        c24 = ctx[24]
        cases += _typed_cases(24, (0, 2))
        for i in (0, 2):
            cases += _structural_cases(24, i)
            cases += _accepted_header_cases(24, i)
            cases += _si_data_cases(c24, i)
        cases += _folder_cases(c24, ctx)
    ids = [c.id for c in cases]
    dup = [i for i in set(ids) if ids.count(i) > 1]
    assert not dup, dup
    return cases


# the CI subset (tests/test_input_corpus.py): one or two cases per failure class
FAST_IDS = [
    # typed keywords (item 3), 70 and 24 um
    "70/hdr/SAMPTIME=T/f3", "70/hdr/STIMFLSH='F'/f3", "70/hdr/DCENUM=-1/f3", "70/hdr/AORKEY-letters/f3", "70/ok/AORKEY-SSC-string/f3",
    "70/hdr/EXPTIME-string/f3", "70/hdr/SAMPTIME-unparsable/f3", "70/hdr/MJD_OBS-JD/f3",
    "70/hdr/CHNLNUM=T/f3", "70/hdr/duplicate-SAMPTIME/f3", "70/hdr/non-ascii/f3",
    "70/hdr/SAMPTIME-other-array/f3", "70/hdr/EXPTIME-half/f3", "70/hdr/NREADS=60/f3",
    "24/hdr/SAMPTIME=T/f2", "24/hdr/DCENUM=-1/f2", "24/hdr/NREADS=T/f2", "24/hdr/SATTHDIF=T/f2",
    # WCS (item 7)
    "70/hdr/CTYPE1=FOO/f3", "70/hdr/CRVAL2=100/f3", "70/hdr/no-CD-matrix/f3", "70/hdr/singular-CD/f3",
    "24/hdr/no-CD-matrix/f2",
    # data type and range (item 6)
    "70/data/uint8/f3", "70/data/int16-wrapped/f3", "70/data/float-fractional/f3",
    "70/data/negative/f3", "70/data/above-adc/f3", "24/data/slope-1e7-block/f2",
    "24/data/diff-fractional/f2", "24/data/uint8/f2",
    # first file, majority band and shape (item 5)
    "70/data/wrong-frame/f0", "70/hdr/CHNLNUM=1/f0", "70/folder/24um-file-added",
    "70/folder/24um-file-added/keep-going", "70/folder/first-truncated/keep-going",
    "70/folder/first-CHNLNUM-other/keep-going", "24/folder/70um-file-first/keep-going",
    "70/folder/tie-of-bands",
    # duplicates and names (item 7)
    "70/folder/same-bytes-other-name", "70/folder/same-identity-other-bytes",
    "70/folder/same-identity-other-bytes/keep-going", "70/name/channel-contradicts",
    "24/name/dcenum-contradicts",
    # discovery (item 9)
    "70/find/fifo", "70/find/fifo/keep-going", "70/find/gz-beside", "70/find/upper-case",
    "70/find/tmp-leftover", "70/find/directory", "24/find/only-gz",
    # time order
    "70/time/mjd-half-day-late/f3", "70/time/overlap/f3",
    # accepted: identical products, or every change flagged
    "70/ok/untouched", "24/ok/untouched", "70/ok/SAMPTIME-D-exponent/f3", "70/ok/add-OBJECT/f3",
    "70/ok/int32/f3", "70/ok/jump/f3", "70/ok/saturated-late/f3", "70/ok/non-ssc-name",
    "24/ok/no-NREADS/f2", "24/ok/float64/f2",
    # stim checks and per-DCE timing
    "70/stim/no-flash-in-folder", "70/stim/flash-not-fired", "70/ok/60-reads-among-80/f3",
]


# ----------------------------------------------------------------------------- running
class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: int):
    def handler(signum, frame):
        raise CaseTimeout(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _quiet_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def run_cli(argv) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of ``mips`` in-process; status None and the traceback if it raised."""
    from mips.cli import main
    _quiet_logging()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _alarm(CASE_TIMEOUT_S):
            status = main(list(argv))
    except BaseException as exc:     # noqa: BLE001 -- a traceback is what the corpus hunts
        import traceback
        return None, out.getvalue(), "".join(traceback.format_exception(exc))
    return status, out.getvalue(), err.getvalue()


def _products(bcd_dir: Path) -> dict:
    """identity (EXPID, DCENUM) -> (bcd, unc, mask, header) of a bcd/ folder."""
    out = {}
    if not bcd_dir.is_dir():
        return out
    for f in sorted(bcd_dir.glob("*_bcd.fits")):
        stem = f.name[: -len("_bcd.fits")]
        with fits.open(f) as h:
            hdr = h[0].header.copy()
            bcd = np.array(h[0].data, dtype=float)
        unc = fits.getdata(bcd_dir / f"{stem}_bunc.fits").astype(float)
        mask_file = next(bcd_dir.glob(f"{stem}_b*m*sk.fits"))
        mask = fits.getdata(mask_file).astype(np.int64)
        out[(int(hdr["EXPID"]), int(hdr["DCENUM"]))] = (bcd, unc, mask, hdr)
    return out


def reference(clean: Clean, work: Path) -> dict:
    """Reprocess a copy of the clean folder once; its products are every case's reference."""
    obs = work / f"reference{clean.band}"
    shutil.rmtree(obs, ignore_errors=True)
    shutil.copytree(clean.obs / "raw", obs / "raw")
    status, _, err = run_cli(["reprocess", str(obs)])
    if status != 0:
        raise RuntimeError(f"the clean {clean.band} um folder does not reprocess: {err}")
    return _products(obs / "bcd")


def make_clean(band: int, out: Path, n_dce: int, seed: int = 1, include_stim: bool = True) -> Clean:
    """Simulate a clean folder (as ``mips simulate --band B --n-dce N``) and reprocess it once.

    ``include_stim=False`` is ``--no-stim-flash`` (not reprocessed: a source of damaged files).
    """
    from mipssim.config import load_config
    from mipssim.observe import simulate
    obs = out / (f"clean{band}" + ("" if include_stim else "-no-stim"))
    if not (obs / "truth.h5").exists():
        simulate(load_config(band=band, n_dce=n_dce, seed=seed, include_stim=include_stim), obs)
    files = sorted((obs / "raw").glob("*_raw.fits"))
    stim = [i for i, f in enumerate(files) if fits.getheader(f).get("STIMFLSH") is True]
    clean = Clean(band=band, obs=obs, files=files, stim=stim)
    if include_stim:
        clean.ref = reference(clean, out)
    return clean


def _snapshot(raw_dir: Path) -> dict:
    out = {}
    if not raw_dir.is_dir():
        return out
    for e in os.scandir(raw_dir):
        try:
            if e.is_file() and os.access(e.path, os.R_OK):
                out[e.name] = hashlib.sha1(Path(e.path).read_bytes()).hexdigest()
        except OSError:
            pass
    return out


def _names(case: Case, files) -> list[str]:
    return [files[b].name if isinstance(b, int) else b for b in case.blame]


def _differences(case: Case, ref: dict, got: dict, skip=(), extra_ok=False) -> list[str]:
    """Unflagged pixels of ``got`` that differ from ``ref``; BCDs missing, or extra and not all flagged."""
    problems = []
    for ident, (rb, ru, rm, _) in ref.items():
        if ident in skip:
            continue
        if ident not in got:
            problems.append(f"BCD {ident} missing")
            continue
        gb, gu, gm, hdr = got[ident]
        sha = str(hdr.get("RAWSHA1", ""))
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            problems.append(f"BCD {ident} has no RAWSHA1")
        quiet = gm == 0
        if case.tol == "exact":
            diff = ~np.isclose(gb, rb, rtol=1e-6, atol=1e-9 * np.nanmax(np.abs(rb)), equal_nan=True)
        else:
            # a claimed uncertainty cannot excuse a wrong value: it counts up to twice the reference's
            with np.errstate(invalid="ignore"):
                sigma = np.hypot(ru, np.minimum(gu, 2.0 * ru))
                diff = ~(np.abs(gb - rb) <= 5.0 * sigma) & ~(np.isnan(gb) & np.isnan(rb))
        bad = int(np.count_nonzero(diff & quiet))
        if bad:
            problems.append(f"BCD {ident}: {bad} unflagged pixel(s) differ from the reference")
    extra = set(got) - set(ref)
    if extra_ok:
        extra = {e for e in extra if np.any(got[e][2] == 0)}
    if extra:
        problems.append(f"unexpected BCDs {sorted(extra)}")
    return problems


def run_case(case: Case, ctx: dict, work: Path) -> tuple[bool, str]:
    """Run one case in a fresh copy; returns (as expected, what happened)."""
    clean = ctx[case.band]
    obs = work / re.sub(r"[^A-Za-z0-9_.-]+", "_", case.id)
    _unchmod(obs)
    shutil.rmtree(obs, ignore_errors=True)
    shutil.copytree(clean.obs / "raw", obs / "raw")
    files = [obs / "raw" / f.name for f in clean.files]
    case.damage(obs / "raw", files, ctx)
    before = _snapshot(obs / "raw")
    argv = ["reprocess", str(obs)] + (["--keep-going"] if case.keep_going else [])
    status, out, err = run_cli(argv)
    try:
        return _judge(case, clean, obs, files, status, err, before)
    except Exception as exc:     # noqa: BLE001 -- e.g. a product astropy cannot parse
        return False, f"products unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    finally:
        _unchmod(obs)
        shutil.rmtree(obs, ignore_errors=True)


def _unchmod(obs: Path) -> None:
    raw = obs / "raw"
    if raw.is_dir() and not raw.is_symlink():
        raw.chmod(0o755)
        for f in raw.iterdir():
            if f.is_file() and not f.is_symlink():
                f.chmod(0o644)


def _judge(case, clean, obs, files, status, err, before) -> tuple[bool, str]:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if status is None:
        return False, "traceback: " + (lines[-1] if lines else "?")
    if _snapshot(obs / "raw") != before:
        return False, "the raw inputs were modified"
    names = _names(case, files)
    got = _products(obs / "bcd")
    if case.expect == EITHER and status == 0:
        problems = _differences(dataclass_replace(case, tol="close"), clean.ref, got, extra_ok=True,
                                skip=set(case.lost))
        return (not problems), "; ".join(problems) or "accepted, every difference flagged"
    if case.expect == ACCEPT:
        if status != 0:
            return False, f"exit {status}: {lines[:1]}"
        problems = _differences(case, clean.ref, got)
        problems += [f"changed pixel {ident} ({y}, {x}) not flagged" for ident, y, x in case.flagged
                     if ident in got and got[ident][2][y, x] == 0]
        return (not problems), "; ".join(problems) or "accepted, BCDs as the reference"
    if not case.keep_going:
        if status != 2:
            return False, f"exit {status} (expected 2): {lines[:1]}"
        if len(lines) != 1:
            return False, f"{len(lines)} stderr lines: {lines[:3]}"
        if not any((n and n in lines[0]) or (not n and str(obs) in lines[0]) for n in names):
            return False, f"error does not name {names}: {lines[0]}"
        if (obs / "bcd").is_dir() and any((obs / "bcd").iterdir()):
            return False, "products written although refused"
        return True, lines[0]
    if status != 1:
        return False, f"keep-going exit {status} (expected 1): {lines[:2]}"
    if not any(n and n in err for n in names) and not any(not n for n in names):
        return False, f"keep-going failures do not name {names}: {lines[:3]}"
    if not case.compare_kept:
        return True, "listed"
    skip = set(case.lost) | {_ident_or_none(clean, n) for n in names}
    problems = _differences(dataclass_replace(case, tol="close"), clean.ref, got, skip=skip)
    return (not problems), "; ".join(problems) or "failure listed, the rest as the reference"


def dataclass_replace(case, **kw):
    import dataclasses
    return dataclasses.replace(case, **kw)


def _ident_or_none(clean: Clean, name: str):
    for f in clean.files:
        if f.name == name:
            return _ident(f)
    return None


def build_context(work: Path) -> dict:
    """The clean folders (70 um, 12 DCEs; 24 um, 6 DCEs) and their references."""
    work.mkdir(parents=True, exist_ok=True)
    return {70: make_clean(70, work, 12), 24: make_clean(24, work, 6),
            "70-no-stim": make_clean(70, work, 12, include_stim=False)}


def main(argv=None) -> int:
    import argparse
    import tempfile
    import time
    p = argparse.ArgumentParser(description="Run the damaged-input corpus.")
    p.add_argument("-k", default="", help="only cases whose id contains this text")
    p.add_argument("-v", action="store_true", help="print every case")
    p.add_argument("--fast", action="store_true", help="only the CI subset")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mips-corpus-") as tmp:
        work = Path(tmp)
        ctx = build_context(work)
        cases = [c for c in build_cases(ctx) if args.k in c.id and (c.id in FAST_IDS or not args.fast)]
        n_ok = n_xfail = n_xpass = 0
        unexpected = []
        for case in cases:
            ok, what = run_case(case, ctx, work / "cases")
            if case.xfail:
                n_xfail += not ok
                n_xpass += ok
                tag = "XPASS" if ok else "xfail"
            else:
                n_ok += ok
                tag = "ok" if ok else "FAIL"
                if not ok:
                    unexpected.append((case.id, what))
            if args.v or (tag == "FAIL"):
                print(f"{tag:5} {case.id}: {what}")
    print(summary(len(cases), n_ok + n_xpass, n_xfail, time.monotonic() - t0))
    return 0 if not unexpected else 1


def summary(n_cases: int, n_as_expected: int, n_xfail: int, seconds: float) -> str:
    """The corpus result line."""
    return (f"corpus: {n_cases} cases, {n_as_expected} as expected"
            + (f", {n_xfail} known failures (xfail)" if n_xfail else "") + f" [{seconds:.0f} s]")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
