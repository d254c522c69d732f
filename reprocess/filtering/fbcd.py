"""Filtered BCDs on disk: read an observation's Ge BCDs, filter them, write ``*_fbcd.fits``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from calibration.bitmask import BMASK
from calibration.instrument import band_spec

from ..bcd import GE_FATAL, load_bcd
from ..fitswrite import write_image
from ..io import InputError
from .kernel import highpass

__all__ = ["filter_observation", "fbcd_path", "FilterReport", "GROW_ARCSEC"]

# Radius the masks are grown by: about the PSF FWHM (70 um ~18", 160 um ~40"; our choice,
# not an archive value: the SSC's ge_mask_pointsource radius was not seen)
GROW_ARCSEC = {70: 20.0, 160: 40.0}
_CHNL_BAND = {2: 70, 3: 160}
_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "END"}
# Values that must not estimate a correction: no slope/responsivity/bad pixel, and the
# first DCE after a stim flash (its latent is an outlier in time)
EXCLUDE_BITS = GE_FATAL | BMASK["STIM_LATENT"]


@dataclass
class FilterReport:
    """What :func:`filter_observation` did."""

    written: list[Path] = field(default_factory=list)
    skipped_stim: list[Path] = field(default_factory=list)
    masked_fraction: float = 0.0      # of all values, in the last pass
    mask: np.ndarray | None = None    # (NDCE, NY, NX): values the last pass left out, as ``written``


def fbcd_path(bcd_path: Path) -> Path:
    """``X_bcd.fits`` -> ``X_fbcd.fits`` beside it."""
    return bcd_path.with_name(bcd_path.name[: -len("_bcd.fits")] + "_fbcd.fits")


def _check(path: Path, ccd, first) -> None:
    """A Ge BCD with a time, of the band and shape of the ``first`` one; else InputError."""
    if int(ccd.meta.get("CHNLNUM", 0)) not in _CHNL_BAND:
        raise InputError(path, "not a Ge (70 or 160 um) BCD")
    if "MJD_OBS" not in ccd.meta:
        raise InputError(path, "no MJD_OBS card: cannot put the BCD in time order")
    if first is not None and (ccd.meta["CHNLNUM"] != first.meta["CHNLNUM"]
                              or ccd.shape != first.shape):
        raise InputError(path, f"band/shape {ccd.meta['CHNLNUM']}/{ccd.shape} differs from the "
                               f"first BCD's {first.meta['CHNLNUM']}/{first.shape}")


def _load_stack(paths: list[Path]):
    """BCDs (stim DCEs left out) in time order: CCDData list, times (s), skipped stim paths."""
    ccds, kept, stim = [], [], []
    for p in paths:
        try:
            ccd = load_bcd(p)
        except InputError:
            raise
        except (ValueError, OSError) as err:      # e.g. a BCD and its bunc/bmask of other shapes
            raise InputError(p, f"unreadable BCD ({err})") from err
        if bool(ccd.meta.get("STIMFLSH", False)):
            stim.append(p)
            continue
        _check(p, ccd, ccds[0] if ccds else None)
        ccds.append(ccd)
        kept.append(p)
    mjd = np.array([float(c.meta["MJD_OBS"]) for c in ccds])
    order = np.argsort(mjd, kind="stable")
    times = (mjd[order] - mjd[order[0]]) * 86400.0 if len(ccds) else mjd
    return [ccds[i] for i in order], [kept[i] for i in order], times, stim


def _catalogue_mask(ccd, sources, radius_arcsec: float) -> np.ndarray:
    """True within ``radius_arcsec`` of any (ra, dec) in ``sources`` (degrees) on this BCD."""
    ra, dec = (np.atleast_1d(np.asarray(s, dtype=float)) for s in sources)
    wcs = WCS(ccd.meta)
    x, y = wcs.all_world2pix(ra, dec, 0)
    pix = abs(float(ccd.meta.get("PXSCAL2", 9.98)))
    yy, xx = np.mgrid[: ccd.shape[0], : ccd.shape[1]]
    d2 = (xx[..., None] - x) ** 2 + (yy[..., None] - y) ** 2
    return (d2 <= (radius_arcsec / pix) ** 2).any(axis=-1)


def _cards(header, *, window_dces: int, column: bool, n_sigma: float | None,
           n_masked_sources: int):
    """The BCD's own cards (structural ones aside) plus the filter's."""
    own = [c.image for c in header.cards if c.keyword not in _STRUCTURAL
           and c.keyword not in ("FILTERED", "HPFWIN", "HPFCOL", "HPFNSIG", "HPFSRC")]
    return own + [
        ("FILTERED", True, "column/time-median high-pass filtered BCD"),
        ("HPFWIN", int(window_dces), "[DCE] running-median window of the filter"),
        ("HPFCOL", bool(column), "column filter applied"),
        ("HPFNSIG", float(n_sigma) if n_sigma is not None else 0.0,
         "[sigma] 2nd-pass mask threshold, 0: one pass"),
        ("HPFSRC", int(n_masked_sources), "catalogue sources masked"),
    ]


def _targets(paths: list[Path], overwrite: bool) -> list[Path]:
    """The fbcd names; refuse (before writing anything) if one exists and not ``overwrite``."""
    out = [fbcd_path(p) for p in paths]
    for t in out:
        if t.exists() and not overwrite:
            raise FileExistsError(f"{t}: exists (pass overwrite=True to replace it)")
    return out


def filter_observation(obs_dir: str | os.PathLike, *, overwrite: bool = False,
                       window_dces: int = 15, column: bool = True,
                       n_sigma: float | None = 3.0, grow_arcsec: float | None = None,
                       sources=None, source_radius_arcsec: float | None = None,
                       max_gap_s: float | None = None) -> FilterReport:
    """Write a filtered BCD (``*_fbcd.fits``) beside every Ge BCD of ``obs_dir/bcd``.

    Parameters
    ----------
    obs_dir : path
        Observation folder; its ``bcd/*_bcd.fits`` (with ``_bunc`` and ``_bmask``) are read.
    overwrite : bool
        Replace existing ``*_fbcd.fits``; otherwise an existing one is a
        ``FileExistsError`` naming it, raised before anything is written.
    window_dces, column, n_sigma, max_gap_s
        As in :func:`reprocess.filtering.highpass`.
    grow_arcsec : float, optional
        Radius the second-pass detections are grown by; default :data:`GROW_ARCSEC`.
    sources : (ra, dec) arrays in degrees, optional
        Known sources masked in both passes (the archive's ``ge_mask_pointsource``).
    source_radius_arcsec : float, optional
        Mask radius around each known source; default ``grow_arcsec``.

    Returns
    -------
    FilterReport
    """
    paths = sorted(Path(obs_dir, "bcd").glob("*_bcd.fits"))
    if not paths:
        raise InputError(Path(obs_dir, "bcd"), "no *_bcd.fits to filter")
    ccds, kept, times, stim = _load_stack(paths)
    if not ccds:
        raise InputError(Path(obs_dir, "bcd"), "only stim-DCE BCDs: nothing to filter")
    targets = _targets(kept, overwrite)
    band = _CHNL_BAND[int(ccds[0].meta["CHNLNUM"])]
    grow = GROW_ARCSEC[band] if grow_arcsec is None else grow_arcsec
    pix = band_spec(band).pixel_arcsec
    stack = np.stack([c.data for c in ccds])
    mask = np.stack([(c.flags & EXCLUDE_BITS) != 0 for c in ccds])
    n_src = 0
    if sources is not None:
        radius = grow if source_radius_arcsec is None else source_radius_arcsec
        mask |= np.stack([_catalogue_mask(c, sources, radius) for c in ccds])
        n_src = len(np.atleast_1d(sources[0]))
    out, used = highpass(stack, times, mask=mask, window_dces=window_dces, column=column,
                         n_sigma=n_sigma, grow_pix=grow / pix, max_gap_s=max_gap_s,
                         return_mask=True)
    for ccd, image, target in zip(ccds, out, targets):
        cards = _cards(ccd.meta, window_dces=window_dces, column=column, n_sigma=n_sigma,
                       n_masked_sources=n_src)
        write_image(target, image.astype(np.float32), cards, overwrite=overwrite)
    return FilterReport(written=targets, skipped_stim=stim,
                        masked_fraction=float(used.mean()), mask=used)
