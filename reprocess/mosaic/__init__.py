"""Mosaics of MIPS BCDs: a common grid, overlap background matching, outlier-rejecting coadds.

``make_mosaic(bcd_paths)`` turns a set of BCDs (``*_bcd.fits`` with their
``_bunc`` and bit mask, read by :func:`reprocess.bcd.load_bcd`) of one band
into a FITS mosaic: the primary HDU in MJy/sr with its WCS, ``UNC`` (1 sigma)
and ``COV`` (number of BCDs per pixel) image extensions and an ``INPUTS``
table (each BCD's name, background offset and its error, rejected pixels).

Steps, one module each:

* :mod:`.grid`: every BCD's header is checked (band, array shape, a usable
  celestial WCS; anything else is an :class:`~reprocess.io.InputError` naming
  the file) and one north-up TAN grid covering all of them is chosen, with
  2.45", 4" or 8" pixels at 24, 70, 160 um.
* :mod:`.cutout`: each BCD is read and resampled (bilinear, through its SIP
  distortion) onto the rectangle of the grid it covers; where each output pixel
  falls on the BCD (the expensive inverse SIP) is computed once and stored.
  MJy/sr is a surface brightness, so interpolation preserves it and the total
  flux of the grid (sum times the output pixel area) is that of the sky.  The
  variance carried is ``sum w_k^2 sigma_k^2`` of the interpolation, the true
  per-pixel variance of a resampled pixel (interpolating ``sigma^2`` instead
  would overstate it up to 4x between input pixel centres).  A cubic-spline
  resampling (the *detection image*) is stored beside it for the outlier
  reference.
* :mod:`.background`: one additive offset per BCD from the medians of the
  pairwise overlap differences, weighted by the overlap's independent pixels
  over its noise, with pair outliers rejected, solved as one sparse weighted
  least-squares problem with the mean offset fixed to 0.
* :mod:`.outliers`: outliers are found in the BCD frame: the per-pixel median
  of the detection images (computed in tiles, so memory has a fixed budget)
  is blotted onto every BCD and each BCD pixel's pull against it, with its own
  noise, the median's and the stack's scatter beyond the noise, is tested
  (``reject_sigma``), with a tolerance of 10 % of a source's brightness for
  what no interpolation of the samples reproduces; MOPEX's dual outlier where
  2 BCDs cover the sky, optionally its single-frame radhit where 1 does.
* :mod:`.coadd`: one streaming pass: each BCD is read again, its outliers
  masked so that every output pixel a rejected pixel touched is left out of
  that BCD's contribution, resampled through its stored map and accumulated
  into an inverse-variance weighted mean.
* :mod:`.pointing` (``refine_pointing``, before everything else): each BCD's header
  pointing (the reconstructed one, ~1" errors) refined against the sources the BCDs
  share and optionally a catalogue, with tweakwcs; the corrected WCSs (SIP kept) are
  used in memory and recorded in a ``POINTING`` table extension.
* :mod:`.rmask`: optionally each BCD's rejected pixels to ``<stem>_brmsk.fits``
  beside it (MOPEX's RMask bits; the BCD itself is never changed).

Trade-offs against ``reproject.mosaicking.reproject_and_coadd(...,
match_background=True)`` (0.21): reproject's matcher loops over all N^2
pairs in Python, takes unweighted pair medians and solves them by stochastic
gradient descent on numpy's global random generator (not reproducible,
several times the noise-limited error at ~1600 BCDs), keeps every reprojected
cutout in memory, and has no outlier rejection, uncertainty or coverage
mosaic.  Here pairs come from a k-d tree of footprints, the solve is one
sparse LSQR (deterministic), cutouts are spilled to a temporary folder (disk,
not memory, grows with N: 5 float32 planes per BCD: data, its noise, detection
image and the pixel map) and read back for each pass, and memory is a fixed
number of output-sized arrays, one BCD and one tile of the reference's stack
(within ``REFERENCE_MEMORY_BYTES``); what grows with N is only a few numbers
and the parsed WCS per BCD.  Costs: every BCD is read from disk twice and the
cutouts three times; the resampling is bilinear only (reproject's ``exact``
and ``adaptive`` are not offered), which smooths the noise and slightly lowers
sharp peaks; offsets are constants (no planes); on a source, a cosmic ray
fainter than about 10 % of the source's brightness (plus 5 sigma) is kept.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs.utils import proj_plane_pixel_area

from calibration.folders import write_atomic

from ..bcd import load_bcd
from ..io import InputError
from .background import error_floor, measure_pairs, solve_offsets
from .coadd import CoaddResult, coadd
from .cutout import Cutout, CutoutStore, detection_image, pixel_map, resample
from .grid import (DEFAULT_PIXEL_ARCSEC, BcdInfo, choose_band, footprint_box, grid_for,
                   inspect_bcd, mosaic_grid)
from .outliers import RMASK, background_box, reference_sky
from .pointing import pointing_hdu, read_catalog
from .pointing import refine_pointing as refine_bcd_pointing
from .rmask import check_rmask_targets, rmask_path, rmask_writer

__all__ = ["make_mosaic", "write_mosaic", "mosaic_grid", "solve_offsets", "coadd", "CoaddResult",
           "RMASK", "rmask_path", "rmask_writer", "check_rmask_targets", "refine_bcd_pointing",
           "read_catalog"]

log = logging.getLogger(__name__)


def _inspect_all(paths, band, keep_going: bool):
    """BcdInfo of each usable BCD of the band, and (path, problem) of those left out."""
    infos, skipped = [], []
    for path in paths:
        try:
            infos.append(inspect_bcd(path))
        except InputError as exc:
            _skip(exc, skipped, keep_going)
    band = choose_band(infos, band) if infos else band
    for info in [i for i in infos if i.band != band]:
        _skip(InputError(info.path, f"{info.band} um BCD in a {band} um mosaic"), skipped,
              keep_going)
    return [i for i in infos if i.band == band], band, skipped


def _skip(exc: InputError, skipped: list, keep_going: bool) -> None:
    if not keep_going:
        raise exc
    log.warning("left out of the mosaic: %s", exc)
    skipped.append((exc.path, exc.problem))


def _load_checked(info: BcdInfo):
    """``load_bcd`` with the data, uncertainty and mask shapes checked against the header."""
    ccd = load_bcd(info.path, wcs=info.wcs)
    shapes = {ccd.data.shape, ccd.uncertainty.array.shape, np.shape(ccd.mask)}
    if shapes != {info.shape}:
        raise InputError(info.path, f"data/uncertainty/mask shapes {sorted(shapes)} disagree "
                                    f"with the {info.band} um array {info.shape}")
    return ccd


def _cutout(ccd, info: BcdInfo, out_wcs, box) -> Cutout:
    """The BCD's cutout with its pixel map and detection image (what the store keeps)."""
    pixmap = pixel_map(info.wcs, out_wcs, box, info.shape)
    cut = resample(ccd, pixmap)
    return Cutout(box, cut.data, cut.var, cut.var_smooth, detection_image(ccd, pixmap, cut.data),
                  pixmap)


def _resample_all(infos, out_wcs, out_shape, store, skipped, keep_going):
    """Resample each BCD into ``store``; return the infos kept (in store order)."""
    kept = []
    for info in infos:
        box = footprint_box(info, out_wcs, out_shape)
        try:
            ccd = _load_checked(info)
        except InputError as exc:
            _skip(exc, skipped, keep_going)
            continue
        store.add(None if box is None else _cutout(ccd, info, out_wcs, box))
        kept.append(info)
    return kept


def _grid_position(info: BcdInfo, out_wcs):
    """Output-grid (y, x) of each pixel centre of the BCD (its SIP forward, then TAN)."""
    yy, xx = np.indices(info.shape, dtype=float)
    ra, dec = info.wcs.all_pix2world(xx, yy, 0)
    x, y = out_wcs.wcs_world2pix(ra, dec, 0)
    return y, x


def _area_ratio(infos, out_wcs) -> float:
    """Median input pixel area over the output pixel area."""
    in_area = float(np.median([proj_plane_pixel_area(i.wcs.celestial) for i in infos]))
    return in_area / proj_plane_pixel_area(out_wcs)


# Memory for one tile of the outlier reference's stacks (the tile shrinks as BCDs pile up)
REFERENCE_MEMORY_BYTES = 256e6

# Offsets are subtracted only when they are significant: their mean (off / err)^2 at least this.
# Offsets at their noise (a 160 um BCD has 35 pixels) would add noise that is correlated along the
# chain of overlapping BCDs, which the per-pixel uncertainty cannot describe.
MIN_OFFSET_CHI2 = 4.0


def _offsets(store, ratio: float, match_background: bool):
    """Per-BCD offsets and errors (zeros when not matched or not significant) and whether applied."""
    n = len(store)
    if not match_background or n < 2:
        return np.zeros(n), np.full(n, np.nan), False
    i, j, off, w, _ = measure_pairs(store, in_over_out=ratio)
    offsets, errors = solve_offsets(i, j, off, w, n, floor=error_floor(store, in_over_out=ratio))
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.nanmean((offsets / errors) ** 2)
    if not chi2 >= MIN_OFFSET_CHI2:
        log.info("background offsets at their noise (mean (offset / error)^2 = %.2f < %g): "
                 "not subtracted", chi2, MIN_OFFSET_CHI2)
        return np.zeros(n), errors, False
    return offsets, errors, True


def make_mosaic(bcd_paths: list[str | os.PathLike], *, band: int | None = None,
                pixel_arcsec: float | None = None, match_background: bool = True,
                reject_sigma: float | None = 5.0, radhit: bool = False, keep_going: bool = False,
                on_rmask: Callable[..., None] | None = None, refine_pointing: bool = False,
                catalog=None, pointing_fitgeom: str = "shift",
                wcs_override: dict | None = None) -> fits.HDUList:
    """Mosaic the BCDs at ``bcd_paths`` onto one TAN grid.

    Parameters
    ----------
    bcd_paths : list of path-like
        ``*_bcd.fits`` files, each with its ``_bunc`` and bit mask beside it.
    band : int, optional
        24, 70 or 160; default: the band of most BCDs.
    pixel_arcsec : float, optional
        Output pixel size; default 2.45", 4", 8" at 24, 70, 160 um.
    match_background : bool
        Subtract a per-BCD additive offset from overlap matching, when the offsets
        are significant (mean (offset / error)^2 >= ``MIN_OFFSET_CHI2``; header
        ``BKGMATCH`` says whether they were).
    reject_sigma : float or None
        Outlier threshold (sigmas) of the BCD-frame rejection (:mod:`.outliers`); None: none.
    radhit : bool
        Also reject single-frame radiation hits where only one BCD covers the sky.
    keep_going : bool
        Leave out (and list in the header) BCDs that cannot be used instead of raising.
    on_rmask : callable, optional
        Called as ``on_rmask(bcd_path, flags, cards=...)`` for every mosaicked BCD with its
        rejected pixels (uint8 :data:`RMASK` bits, the BCD's shape) and provenance cards
        (``INPHASH``: the mosaic's, identifying the set of BCDs the verdict came from;
        ``REJSIG``); e.g. :func:`rmask_writer`.
    refine_pointing : bool
        Refine each BCD's pointing against the sources the BCDs share first, and against
        ``catalog`` (astropy Table of RA, Dec in degrees; :func:`.pointing.read_catalog`) when
        given (:mod:`.pointing`); the corrected WCSs (SIP kept) are used in memory, the BCD
        files are not changed, and the record goes into a ``POINTING`` table extension.
    pointing_fitgeom : {"shift", "rshift"}
        Per-BCD correction: a shift, or a shift and a rotation.
    wcs_override : dict, optional
        ``Path`` of a BCD -> the WCS to use instead of its header's (e.g. a pointing solution
        from :func:`.pointing.refine_pointing` computed once for several mosaics).

    Returns
    -------
    astropy.io.fits.HDUList
        Primary (MJy/sr, WCS, provenance), ``UNC``, ``COV``, ``INPUTS`` and, with
        ``refine_pointing``, ``POINTING``.

    Raises
    ------
    reprocess.io.InputError
        Naming a BCD without a usable celestial WCS, with a shape that is not
        its array's, of another band or missing its products (unless ``keep_going``).
    """
    infos, band, skipped = _inspect_all([Path(p) for p in bcd_paths], band, keep_going)
    if not infos:
        raise ValueError("no usable BCDs to mosaic")
    if catalog is not None and not refine_pointing:
        raise ValueError("a reference catalogue is used by the pointing refinement (refine_pointing)")
    if wcs_override:
        infos = [replace(i, wcs=wcs_override.get(i.path, i.wcs)) for i in infos]
    solution = None
    if refine_pointing:
        solution = refine_bcd_pointing(infos, band=band, catalog=catalog, fitgeom=pointing_fitgeom,
                                       keep_going=keep_going)
        infos = [replace(i, wcs=solution.wcs[i.path]) for i in infos]
    pix = DEFAULT_PIXEL_ARCSEC[band] if pixel_arcsec is None else float(pixel_arcsec)
    out_wcs, out_shape = grid_for(infos, pixel_arcsec=pix)
    with CutoutStore() as store:
        infos = _resample_all(infos, out_wcs, out_shape, store, skipped, keep_going)
        ratio = _area_ratio(infos, out_wcs) if infos else 1.0
        offsets, errors, matched = _offsets(store, ratio, match_background)
        offset_var = np.nan_to_num(errors) ** 2 if matched else np.zeros(len(infos))
        provenance = [("INPHASH", _input_hash(infos), "SHA-1 of the mosaic's input names"),
                      ("REJSIG", -1.0 if reject_sigma is None else float(reject_sigma),
                       "mosaic outlier threshold, sigma")]
        reference = None if reject_sigma is None else reference_sky(
            store, out_shape, offsets, background_box=background_box(band, pix),
            memory_bytes=REFERENCE_MEMORY_BYTES)
        result = coadd(store, out_shape, lambda k: load_bcd(infos[k].path, wcs=infos[k].wcs),
                       offsets=offsets, offset_var=offset_var, reference=reference,
                       grid_position=lambda k: _grid_position(infos[k], out_wcs),
                       reject_sigma=reject_sigma, radhit=radhit,
                       on_flags=None if on_rmask is None else
                       lambda k, f: on_rmask(infos[k].path, f, cards=provenance))
    hdul = _hdulist(result, out_wcs, band, pix, infos, offsets, errors, skipped,
                    match_background=matched, reject_sigma=reject_sigma)
    hdul[0].header["PTGREF"] = ("none" if solution is None else solution.mode,
                                "pointing refinement (none, relative, absolute)")
    if solution is not None:
        hdul.append(pointing_hdu(solution))
    return hdul


def _input_hash(infos) -> str:
    return hashlib.sha1("\n".join(i.path.name for i in infos).encode()).hexdigest()


def _hdulist(result: CoaddResult, out_wcs, band, pix, infos, offsets, errors, skipped, *,
             match_background: bool, reject_sigma: float | None) -> fits.HDUList:
    header = out_wcs.to_header()
    names = [i.path.name for i in infos]
    cards = [("BUNIT", "MJy/sr", "surface brightness"),
             ("BAND", int(band), "MIPS band, um"),
             ("PIXSCAL", pix, "output pixel, arcsec"),
             ("NINPUT", len(infos), "BCDs mosaicked"),
             ("NSKIPPED", len(skipped), "BCDs left out (see HISTORY)"),
             ("BKGMATCH", bool(match_background), "per-BCD overlap offsets subtracted"),
             ("REJSIG", -1.0 if reject_sigma is None else float(reject_sigma),
              "outlier threshold, sigma (-1: none)"),
             ("INPHASH", _input_hash(infos),
              "SHA-1 of input names")]
    for card in cards:
        header[card[0]] = card[1:]
    for name in names:
        header.add_history(f"input {name}")
    for path, problem in skipped:
        header.add_history(f"left out {Path(path).name}: {problem}")
    primary = fits.PrimaryHDU(result.mosaic.astype(np.float32), header=header)
    unc = fits.ImageHDU(result.uncertainty.astype(np.float32), header=out_wcs.to_header(), name="UNC")
    cov = fits.ImageHDU(result.coverage.astype(np.int16 if result.coverage.max(initial=0) < 32767
                                                else np.int32), header=out_wcs.to_header(), name="COV")
    unc.header["BUNIT"] = "MJy/sr"
    table = fits.BinTableHDU.from_columns([
        fits.Column("BCD", "A80", array=np.array(names or [""])[:len(names)]),
        fits.Column("OFFSET", "E", unit="MJy/sr", array=offsets),
        fits.Column("OFFSET_ERR", "E", unit="MJy/sr", array=errors),
        fits.Column("REJECTED", "J", array=result.rejected)], name="INPUTS")
    table.header["TTYPE4"] = ("REJECTED", "BCD pixels rejected as outliers")
    return fits.HDUList([primary, unc, cov, table])


def write_mosaic(hdul: fits.HDUList, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a mosaic from :func:`make_mosaic` to ``path`` atomically (serialised in memory,
    then one write); an existing file is a ``FileExistsError`` unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (use --overwrite to replace it)")
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    write_atomic(path, buffer.getvalue())
    return path
