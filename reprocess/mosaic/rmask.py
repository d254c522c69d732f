"""The mosaic's rejected pixels written back beside each BCD: ``<stem>_brmsk.fits``.

A separate file rather than a bit in the BCD's own bit mask:

* the inputs are never modified.  The ``_bmask``/``_bbmsk`` is the
  reprocessor's product, carrying the SHA-1 of the raw data it was made from
  (``RAWSHA1``) and scored by ``mips validate``; a mosaic's verdict depends on
  which other BCDs were mosaicked with it and with which threshold, so it is
  a product of the mosaic, not of the BCD, and a second mosaic must be able to
  replace it without touching the BCD;
* it is the archive's convention: the SSC's 24 um BCD products include
  ``*_brmsk.fits``, the "outlier mask" [HB Table 6.1], and MOPEX wrote one
  RMask per input with the bits below [MOPEX; mips-facts 6.2].

Bits (``reprocess.mosaic.RMASK``, MOPEX's numbering): 0 single-frame radiation
hit, 1 multiframe (temporal) outlier, 2 dual outlier.  A pixel with any bit
set was left out of the mosaic.  The file is uint8, the BCD's shape, with the
BCD's header cards (WCS, identity, ``RAWSHA1``) plus ``BRMSKBn`` cards naming
the bits and ``REJSIG``; it is written atomically (temporary name, rename),
and an existing one is replaced only with ``overwrite`` -- checked for every
BCD before any work (:func:`check_rmask_targets`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..fitswrite import write_image
from .outliers import RMASK

__all__ = ["check_rmask_targets", "rmask_path", "rmask_writer"]

_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE", "BUNIT",
               "BLANK", "COMMENT", "HISTORY", ""}
_MEANING = {"RADHIT": "single-frame radiation hit", "TEMPORAL": "multiframe (temporal) outlier",
            "DUAL": "dual outlier (2 BCDs: spike + above the other)"}


def rmask_path(bcd_path: str | os.PathLike) -> Path:
    """``<stem>_brmsk.fits`` beside ``<stem>_bcd.fits``."""
    path = Path(bcd_path)
    return path.with_name(path.name[: -len("_bcd.fits")] + "_brmsk.fits")


def check_rmask_targets(bcd_paths: Iterable[str | os.PathLike], *, overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming the first existing rejection mask unless ``overwrite``."""
    if overwrite:
        return
    for path in bcd_paths:
        target = rmask_path(path)
        if target.exists():
            raise FileExistsError(f"{target}: exists (use --overwrite to replace it)")


def rmask_writer(*, reject_sigma: float, overwrite: bool = False
                 ) -> Callable[[Path, np.ndarray], None]:
    """A callable ``(bcd_path, flags)`` that writes ``flags`` to :func:`rmask_path` (see module)."""
    def write(bcd_path: Path, flags: np.ndarray) -> None:
        header = fits.getheader(bcd_path)
        cards = [card.image for card in header.cards if card.keyword not in _STRUCTURAL]
        cards += [(f"BRMSKB{bit.bit_length() - 1}", name, _MEANING[name]) for name, bit in RMASK.items()]
        cards += [("REJSIG", float(reject_sigma), "mosaic outlier threshold, sigma"),
                  ("BRMSKN", int(np.count_nonzero(flags)), "pixels rejected by the mosaic")]
        write_image(rmask_path(bcd_path), np.asarray(flags, np.uint8), cards, overwrite=overwrite)
    return write
