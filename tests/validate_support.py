"""Helpers of the validation tests: a simulated 70 um observation reprocessed in several ways.

Products must carry ``RAWSHA1`` (the SHA-1 of their raw file) to be validated.
Until the raw reader and product writer of ``reprocess.io`` write that card (the
agreed interface, COMMON.md), :func:`raw_identity_cards` adds it to every
product header; once the writer does, the wrapper finds the card and adds
nothing.
"""
from __future__ import annotations

import hashlib
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest


def _key(card) -> str:
    return card[:8].strip() if isinstance(card, str) else str(card[0]).upper()


def _with_rawsha1(bcd_header):
    def wrapped(dce, cards):
        out = bcd_header(dce, cards)
        keys = [_key(c) for c in out]
        if "RAWSHA1" not in keys:
            digest = hashlib.sha1(Path(dce.path).read_bytes()).hexdigest()
            out.insert(keys.index("RAWFILE") + 1, ("RAWSHA1", digest, "SHA-1 of the raw file"))
        return out
    return wrapped


@contextmanager
def raw_identity_cards():
    """Products written inside this context carry RAWSHA1 (see the module notes)."""
    import reprocess.ge_pipeline as ge
    import reprocess.si_pipeline as si
    mp = pytest.MonkeyPatch()
    for mod in (ge, si):
        mp.setattr(mod, "bcd_header", _with_rawsha1(mod.bcd_header))
    try:
        yield
    finally:
        mp.undo()


def copy_observation(src: Path, dst: Path) -> Path:
    """A copy of an observation's raw/ and truth.h5 (no products) in ``dst``."""
    dst.mkdir(parents=True)
    shutil.copytree(src / "raw", dst / "raw")
    shutil.copy2(src / "truth.h5", dst / "truth.h5")
    return dst


def copy_reprocessed(src: Path, dst: Path) -> Path:
    """A copy of a reprocessed observation: raw/, truth.h5 and bcd/."""
    copy_observation(src, dst)
    shutil.copytree(src / "bcd", dst / "bcd")
    return dst


def reprocessed(src: Path, dst: Path, **options) -> Path:
    """``src`` copied to ``dst`` and reprocessed there with ``options`` (products carry RAWSHA1)."""
    from reprocess.pipeline import reprocess
    copy_observation(src, dst)
    with raw_identity_cards():
        reprocess(dst, **options)
    return dst
