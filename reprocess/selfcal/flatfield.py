"""The extra flat field on disk: read an observation's BCDs, measure the flat, write flat-fielded BCDs.

Memory is a few BCD-sized arrays per group whatever the number of BCDs: each
pass streams the BCDs from disk (the image, ``_bunc`` and the mask; headers
are read once, for the grouping).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..bcd import GE_FATAL, SI_FATAL
from ..fitswrite import write_image
from ..io import InputError, staged_output
from .kernel import FlatAccumulator, FlatEstimate, background_level, source_mask

__all__ = ["FlatfieldReport", "extra_flat", "flatfield_observation", "GROUPINGS"]

_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "END"}
# Grouping of BCDs that share one extra flat: none, the scan-mirror position (24 um: the
# flats depend on it), the scan leg (MOPEX's per-leg option), or both
GROUPINGS = {"none": (), "csm": ("CSM_PRED",), "leg": ("SCANLEG",), "csm+leg": ("CSM_PRED", "SCANLEG")}
_GROW_PIX = {1: 3, 2: 2, 3: 2}       # source masks grown by about the PSF's FWHM, pixels


@dataclass
class FlatfieldReport:
    """What :func:`flatfield_observation` did: the flats per group and the files written."""

    flats: dict = field(default_factory=dict)      # group key -> FlatEstimate
    members: dict = field(default_factory=dict)    # group key -> list of BCD paths
    written: list = field(default_factory=list)
    masked_fraction: float = 0.0                   # of good values, left out as sources


def _companions(path: Path) -> tuple[Path, Path]:
    stem = path.name[: -len("_bcd.fits")]
    masks = [path.with_name(f"{stem}_{k}.fits") for k in ("bmask", "bbmsk")]
    mask = next((m for m in masks if m.exists()), None)
    unc = path.with_name(f"{stem}_bunc.fits")
    for need in (unc, mask):
        if need is None or not need.exists():
            raise InputError(need or masks[0], "missing product next to the BCD")
    return unc, mask


def _read(path: Path):
    """(image, unc, good) of one BCD, float64, with its fatal bits and non-finite values bad."""
    unc_path, mask_path = _companions(path)
    with fits.open(path) as hdul:
        image = np.asarray(hdul[0].data, dtype=float)
        chnl = int(hdul[0].header.get("CHNLNUM", 0))
    unc = np.asarray(fits.getdata(unc_path), dtype=float)
    bits = np.asarray(fits.getdata(mask_path))
    if unc.shape != image.shape or bits.shape != image.shape:
        raise InputError(path, f"BCD {image.shape}, _bunc {unc.shape} and mask {bits.shape} disagree")
    fatal = SI_FATAL if chnl == 1 else GE_FATAL
    good = ((bits & fatal) == 0) & np.isfinite(image) & np.isfinite(unc) & (unc > 0)
    return image, unc, good


def _group_keys(paths: list[Path], grouping: str) -> tuple[list, int]:
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping {grouping!r}: one of {', '.join(GROUPINGS)}")
    keys, chnl = [], None
    for p in paths:
        h = fits.getheader(p)
        if h.get("STIMFLSH", False):
            keys.append(None)            # Ge stim DCEs are not sky
            continue
        c = int(h.get("CHNLNUM", 0))
        if chnl is not None and c != chnl:
            raise InputError(p, f"CHNLNUM {c} differs from the first BCD's {chnl}")
        chnl = c
        missing = [k for k in GROUPINGS[grouping] if k not in h]
        if missing:
            raise InputError(p, f"no {', '.join(missing)} card: cannot group by {grouping!r}")
        keys.append(tuple(round(float(h[k]), 3) for k in GROUPINGS[grouping]))
    return keys, chnl or 0


def _one_pass(paths, shape, *, centre, clip_sigma, mask_nsigma, grow_pix, block):
    """Accumulate the normalised BCDs of one group; the source masks use ``centre`` (the previous flat)."""
    acc = FlatAccumulator(shape, block=block, centre=centre, clip_sigma=clip_sigma)
    n_good = n_masked = 0
    for p in paths:
        image, unc, good = _read(p)
        flat = np.ones(shape) if centre is None else np.where(np.isfinite(centre), centre, 1.0)
        level, scatter = background_level(image / flat, good)
        if not np.isfinite(level) or level <= 0:
            continue                     # a BCD with no positive sky cannot measure a ratio
        sources = source_mask(image / flat, unc / flat, good, level, scatter, nsigma=mask_nsigma,
                              grow_pix=grow_pix)
        use = good & ~sources
        acc.add(image / level, unc / level, use)
        n_good += int(good.sum())
        n_masked += int((good & sources).sum())
    return acc, n_masked / max(n_good, 1)


def extra_flat(paths: list[Path], *, passes: int = 3, clip_sigma: float = 4.0,
               mask_nsigma: float = 3.0, grow_pix: int | None = None,
               min_used: int = 3, block: int = 20) -> tuple[FlatEstimate, float]:
    """The extra flat of one group of BCDs (same band and array, e.g. one scan-mirror position).

    Parameters
    ----------
    paths : list of paths
        ``*_bcd.fits`` with their ``_bunc`` and mask beside them.
    passes : int
        Estimates of the flat; each after the first masks sources against the
        previous flat and clips values more than ``clip_sigma`` of their own
        error from it (cosmic rays, latents).
    mask_nsigma, grow_pix
        Source masks: pixels ``mask_nsigma`` of their error above the BCD's sky
        level, grown by ``grow_pix`` pixels (default about the PSF FWHM).
    min_used : int
        Fewest BCDs for a pixel's flat; fewer give NaN (left uncorrected).
    block : int
        Consecutive BCDs (in ``paths``' order: give them in time order) per batch
        mean of the error estimate (:class:`.kernel.FlatAccumulator`).

    Returns
    -------
    (FlatEstimate, masked fraction of the good values in the last pass)
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no BCDs to make an extra flat from")
    shape = _read(paths[0])[0].shape
    if grow_pix is None:
        grow_pix = _GROW_PIX.get(int(fits.getval(paths[0], "CHNLNUM", default=1)), 2)
    centre = None
    for k in range(passes):
        acc, masked = _one_pass(paths, shape, centre=centre, clip_sigma=clip_sigma if k else None,
                                mask_nsigma=mask_nsigma, grow_pix=grow_pix, block=block)
        flat = acc.result(min_used=min_used)
        centre = flat.value
    return flat, masked


def _cards(header: fits.Header, group, flat: FlatEstimate) -> list:
    own = [c.image for c in header.cards if c.keyword not in _STRUCTURAL
           and c.keyword not in ("XFLAT", "XFLATGRP", "XFLATN")]
    return own + [("XFLAT", True, "divided by an extra flat from the BCD stack"),
                  ("XFLATGRP", "/".join(map(str, group)) or "all", "its group (grouping values)"),
                  ("XFLATN", int(np.nanmedian(flat.n_used)), "median BCDs per flat pixel")]


def _write_group(paths, group, flat: FlatEstimate, out: Path) -> list[Path]:
    """Each BCD divided by the flat (uncorrected where it is NaN), its error propagated."""
    f = np.where(np.isfinite(flat.value), flat.value, 1.0)
    ferr = np.where(np.isfinite(flat.error), flat.error, 0.0)
    written = []
    for p in paths:
        unc_path, mask_path = _companions(p)
        header = fits.getheader(p)
        image = np.asarray(fits.getdata(p), dtype=float)
        unc = np.asarray(fits.getdata(unc_path), dtype=float)
        new = image / f
        new_unc = np.sqrt((unc / f) ** 2 + (new * ferr / f) ** 2)
        write_image(out / p.name, new.astype(np.float32), _cards(header, group, flat), overwrite=False,
                    atomic=False)
        unc_cards = [c.image for c in fits.getheader(unc_path).cards if c.keyword not in _STRUCTURAL]
        write_image(out / unc_path.name, new_unc.astype(np.float32), unc_cards, overwrite=False,
                    atomic=False)
        shutil.copyfile(mask_path, out / mask_path.name)
        written.append(out / p.name)
    return written


def _write_flats(report: FlatfieldReport, path: Path) -> None:
    hdus = [fits.PrimaryHDU()]
    for i, (group, flat) in enumerate(report.flats.items()):
        h = fits.Header()
        h["XFLATGRP"] = ("/".join(map(str, group)) or "all", "group (grouping values)")
        h["NBCD"] = (len(report.members[group]), "BCDs in the group")
        for name, arr in (("FLAT", flat.value), ("FLAT_ERR", flat.error), ("NUSED", flat.n_used)):
            hdus.append(fits.ImageHDU(np.asarray(arr, dtype=np.float32 if name != "NUSED" else np.int32),
                                      header=h, name=f"{name}{i}"))
    fits.HDUList(hdus).writeto(path)


def flatfield_observation(obs_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                          grouping: str = "csm", overwrite: bool = False, **kwargs) -> FlatfieldReport:
    """Divide every sky BCD of ``obs_dir/bcd`` by an extra flat from the BCD stack; write ``out_dir/bcd``.

    The output folder holds the flat-fielded ``*_bcd.fits`` (cards ``XFLAT``,
    ``XFLATGRP``, ``XFLATN`` added), their ``_bunc`` (the flat's error added in
    quadrature), a copy of each mask, and ``extra_flat.fits`` (per group:
    ``FLATi``, ``FLAT_ERRi``, ``NUSEDi``), written all at once (nothing is
    left half-written; ``obs_dir`` is never modified).  ``grouping``: one of
    :data:`GROUPINGS`; ``kwargs`` go to :func:`extra_flat`.
    """
    bcd_dir = Path(obs_dir) / "bcd"
    paths = sorted(bcd_dir.glob("*_bcd.fits"))
    if not paths:
        raise InputError(bcd_dir, "no *_bcd.fits (reprocess the observation first)")
    out_bcd = Path(out_dir) / "bcd"
    if out_bcd.resolve() == bcd_dir.resolve():
        raise InputError(out_bcd, "the output folder is the input folder (inputs are never modified)")
    keys, _ = _group_keys(paths, grouping)
    report = FlatfieldReport()
    for key, p in zip(keys, paths):
        if key is not None:
            report.members.setdefault(key, []).append(p)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with staged_output(out_bcd, overwrite) as stage:
        masked = []
        for group, members in sorted(report.members.items()):
            flat, frac = extra_flat(members, **kwargs)
            report.flats[group] = flat
            masked.append(frac)
            report.written += _write_group(members, group, flat, stage)
        _write_flats(report, stage / "extra_flat.fits")
    report.written = [out_bcd / p.name for p in report.written]
    report.masked_fraction = float(np.mean(masked)) if masked else 0.0
    return report
