"""Pointing refinement of BCDs against the sources they share (relative) and a catalogue (absolute).

Why
---
A BCD's header WCS is the *reconstructed* pointing, good to ~1.2" (1 sigma radial) at 24 um,
1.7" at 70 um [HB /59, anchors-postbcd 2.4]: a 24 um PSF is 6" FWHM, so a mosaic of BCDs with
per-DCE errors of that size blurs point sources and puts them off their positions.  MOPEX's
``pointing_refine`` measured the sources of every BCD and solved for each BCD's pointing so that
the sources of overlapping BCDs agree (relative), and optionally against 2MASS (absolute); the
SSC ran it on 24 um scan data only (2MASS matches are rare in one 24 um BCD).

Method
------
1. *Sources per BCD*: each BCD is read once (streamed: only its source list is kept) and its
   point sources found with the photometry package's matched filter
   (:func:`reprocess.photometry.detect.detect_sources`, the PSF integrated over the native pixel,
   the BCD's ``_bunc`` as the noise), above ``nsigma``, and their positions refined by a PRF
   fit (:func:`reprocess.photometry.prf_fit.fit_prf`): on simulated 24 um BCDs the peak's
   quadratic centroid scattered 0.25" (S/N > 20) with a 0.05" bias, the PRF fit 0.17" and 0.02".  Their sky positions go through the
   BCD's full WCS (SIP included), so the correction found is a tangent-plane shift (and
   optionally rotation) on top of the distortion, which is kept.
2. *Relative*: the detections of all BCDs are linked into sources by friends-of-friends in a
   tangent plane (``link_arcsec``; a cluster with two detections of one BCD is a blend and is
   dropped, so is one seen by a single BCD); each source's position is the mean over the BCDs
   that saw it, which fixes the gauge at the mean header pointing (relative refinement cannot
   know the absolute one).  Each BCD's sources are then matched to that list (nearest within
   ``link_arcsec`` in the BCD's tangent plane) and fitted with tweakwcs' ``iter_linear_fit``
   (``fitgeom`` ``"shift"`` or ``"rshift"``, 3 clipping passes at 3 x RMS; weights
   ``min(S/N, 50)^2``, as a centroid's error falls as 1/(S/N) until systematics take over), and
   its WCS corrected by tweakwcs' ``FITSWCSCorrector`` (CRVAL and CD change, SIP is kept).  The
   common list is rebuilt from the corrected positions and the fit repeated (``iterations``):
   the list's own error falls as 1/sqrt(BCDs per source); after the first fit a BCD is refitted
   from its corrected WCS within 0.2 FWHM (the corrections compose).  A BCD with fewer than
   ``min_matches`` matches keeps its header WCS (``status`` says so).
3. *Absolute* (with ``catalog``, an astropy Table of RA/Dec in degrees): after the relative step
   the stack's common source list is fitted to the catalogue (one shift, or shift and rotation,
   for the whole stack, with tweakwcs' ``iter_linear_fit`` and applied to every BCD through
   ``FITSWCSCorrector``), since single 24 um BCDs rarely hold enough catalogue sources; the
   relative solution fixes every BCD to the others, the catalogue fixes the stack to the sky.

Output
------
:func:`refine_pointing` returns a :class:`PointingSolution`: the corrected WCS of each BCD (in
memory; :func:`reprocess.mosaic.make_mosaic` takes it as ``wcs_override``) and a table of what
was done per BCD (the shift east/north and rotation applied, matches, fit RMS, the new CRVAL and
CD matrix).  The input BCDs are never changed: ``mips mosaic --refine-pointing`` writes the table
into the mosaic as its ``POINTING`` extension (:func:`pointing_hdu`), and the mosaic header says
what was applied (``PTGREF``).  The SSC's "refined pointing" keywords were not seen in any stored source, so
standard WCS names (CRVAL1/2, CD1_1..CD2_2 with the BCD's own SIP) are used in the table.

Trade-offs: tweakwcs is the field's aligner (JWST/Roman ``tweakreg``) and keeps SIP; its
``align_wcs`` is not used: its 2-D-histogram matching works in whole detector pixels (it missed
sub-pixel offsets by up to a pixel here), its per-call overhead was ~0.1 s, and its group fit
took minutes for 8 BCDs; its fitter and corrector are.  The fit is per BCD, so the relative step
iterates against a common list rather than solving all pairwise discrepancies in one sparse
system as MOPEX did; three iterations reach the list's own noise.  Friends-of-friends linking needs sources further apart than ``link_arcsec`` plus the
pointing error: in confused fields blends are dropped rather than mis-matched.  A bias of
the centroids common to all BCDs cancels in the relative step but goes into the WCS in the
absolute one.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from calibration.instrument import band_spec

from ..bcd import load_bcd
from ..io import InputError

__all__ = ["PointingSolution", "absolute_refinement", "bcd_sources", "pointing_hdu", "read_catalog",
           "refine_pointing", "relative_refinement", "wcs_change"]

log = logging.getLogger(__name__)

FITGEOMS = ("shift", "rshift")
_WEIGHT_SNR_CAP = 50.0        # centroid weights (S/N)^2 up to this S/N; systematics dominate beyond
_LINK_FWHM = 0.5              # default friends-of-friends link and first match radius, FWHM
_REFIT_RADIUS_FWHM = 0.2      # match radius after the first fit (1.2" at 24 um), FWHM
_FWHM_ARCSEC = {24: 5.9, 70: 18.9, 160: 43.2}   # mips-facts 1 (24 measured, 70 and 160 model)


@dataclass
class PointingSolution:
    """Refined WCS of each BCD and the record of the refinement.

    Attributes
    ----------
    wcs : dict
        ``Path`` of each BCD -> its corrected :class:`astropy.wcs.WCS` (SIP kept).
    table : astropy.table.Table
        One row per BCD: ``bcd`` (name), ``n_sources``, ``n_matched``, ``d_east_arcsec``,
        ``d_north_arcsec`` (the corrected minus the header position of the array centre),
        ``d_rot_deg`` (position angle change), ``rms_arcsec`` (fit residual), ``status``
        (``relative``, ``absolute``, or why the header WCS was kept), ``CRVAL1``, ``CRVAL2``,
        ``CD1_1``..``CD2_2`` of the corrected WCS.
    mode : str
        ``"relative"`` or ``"absolute"``.
    meta : dict
        Parameters and summary figures (absolute fit: shift, rotation, matches, RMS).
    """

    wcs: dict
    table: Table
    mode: str
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- geometry helpers

def _tangent(ra0: float, dec0: float, ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (xi east, eta north) in arcsec of (ra, dec) about (ra0, dec0), all degrees."""
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    k = np.degrees(1.0) * 3600.0
    return xi * k, eta * k


def _untangent(ra0: float, dec0: float, xi, eta) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_tangent`: (ra, dec) degrees of tangent-plane arcsec offsets."""
    k = np.degrees(1.0) * 3600.0
    x, y = np.asarray(xi, float) / k, np.asarray(eta, float) / k
    a0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0))
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def wcs_change(old: WCS, new: WCS, shape: tuple[int, int]) -> tuple[float, float, float]:
    """(east, north) arcsec offset of the array centre and position-angle change (deg, east of
    north) from ``old`` to ``new`` (both with the BCD's SIP)."""
    yc, xc = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    pts = np.array([[xc, yc], [xc, yc + 10.0]])
    a = old.all_pix2world(pts, 0)
    b = new.all_pix2world(pts, 0)
    xa, ya = _tangent(a[0, 0], a[0, 1], a[:, 0], a[:, 1])
    xb, yb = _tangent(a[0, 0], a[0, 1], b[:, 0], b[:, 1])
    pa_a = np.degrees(np.arctan2(xa[1] - xa[0], ya[1] - ya[0]))
    pa_b = np.degrees(np.arctan2(xb[1] - xb[0], yb[1] - yb[0]))
    return float(xb[0]), float(yb[0]), float((pa_b - pa_a + 180.0) % 360.0 - 180.0)


# ----------------------------------------------------------------------------- sources per BCD

def _bcd_prf(band: int):
    """The band's PSF integrated over the native pixel (no resampling), for detection on a BCD."""
    from ..photometry.mosaic_prf import mosaic_prf
    return mosaic_prf(band, pixel_arcsec=band_spec(band).pixel_arcsec, resampling="none")


def bcd_sources(ccd, *, band: int, nsigma: float = 5.0, centroid: str = "prf") -> Table:
    """Point sources of one BCD (a :func:`reprocess.bcd.load_bcd` CCDData): ``x``, ``y`` (0-based
    pixels), ``snr``; brightest first.

    ``centroid``: ``"peak"``, the detection's quadratic fit to the matched-filter peak (biased by
    ~0.05" on simulated 24 um BCDs, from the pixel sampling of an asymmetric PSF), or ``"prf"``,
    then a PRF fit of all sources (:func:`reprocess.photometry.prf_fit.fit_prf`; a source whose
    position fit failed -- hit its limit, did not converge, edge or masked pixels -- keeps the
    peak; blends and a poor chi^2 keep the fit).
    """
    from ..photometry.detect import detect_sources
    from ..photometry.flags import PhotFlag
    from ..photometry.prf_fit import fit_prf
    if centroid not in ("peak", "prf"):
        raise ValueError(f"centroid {centroid!r}: expected 'peak' or 'prf'")
    unc = ccd.uncertainty.array if ccd.uncertainty is not None else np.ones_like(ccd.data)
    image, unc, prf = np.asarray(ccd.data, float), np.asarray(unc, float), _bcd_prf(band)
    found = detect_sources(image, unc, prf=prf, nsigma=nsigma, mask=ccd.mask)
    out = Table()
    out["x"] = np.asarray(found["x"], float)
    out["y"] = np.asarray(found["y"], float)
    out["snr"] = np.asarray(found["snr"], float)
    if centroid == "prf" and len(out):
        fit = fit_prf(image, unc, out["x"], out["y"], prf=prf, mask=ccd.mask)
        bad = int(PhotFlag.OFF_IMAGE | PhotFlag.MASKED | PhotFlag.POSITION_LIMIT | PhotFlag.NOT_CONVERGED
                  | PhotFlag.FEW_FIT_PIXELS | PhotFlag.FIXED_POSITION)
        good = ((np.asarray(fit["flags"]).astype(int) & bad) == 0) & np.isfinite(fit["x_fit"]) \
            & np.isfinite(fit["y_fit"])
        out["x"] = np.where(good, np.asarray(fit["x_fit"], float), out["x"])
        out["y"] = np.where(good, np.asarray(fit["y_fit"], float), out["y"])
    return out


# ----------------------------------------------------------------------------- the common list

def _sky(wcs: WCS, cat: Table) -> tuple[np.ndarray, np.ndarray]:
    if len(cat) == 0:
        return np.zeros(0), np.zeros(0)
    ra, dec = wcs.all_pix2world(np.asarray(cat["x"]), np.asarray(cat["y"]), 0)
    return np.asarray(ra), np.asarray(dec)


def common_sources(wcs_list, catalogs, *, link_arcsec: float,
                   centre: tuple[float, float]) -> Table:
    """Sources seen by at least two BCDs, each the mean of its detections' sky positions.

    Detections are linked by friends-of-friends at ``link_arcsec`` in the tangent plane about
    ``centre``; a group with two detections from one BCD (a blend, or a link across neighbours)
    is left out.  Returns ``RA``, ``DEC`` (deg), ``n`` (BCDs) and ``weight`` (sum of weights).
    """
    xi, eta, owner, w = [], [], [], []
    for k, (wcs, cat) in enumerate(zip(wcs_list, catalogs)):
        ra, dec = _sky(wcs, cat)
        x, y = _tangent(centre[0], centre[1], ra, dec)
        xi.append(x)
        eta.append(y)
        owner.append(np.full(len(x), k))
        w.append(_weights(cat))
    xi, eta = np.concatenate(xi), np.concatenate(eta)
    owner, w = np.concatenate(owner), np.concatenate(w)
    out = Table(names=("RA", "DEC", "n", "weight"), dtype=(float, float, int, float))
    if len(xi) < 2:
        return out
    pairs = cKDTree(np.column_stack([xi, eta])).query_pairs(link_arcsec, output_type="ndarray")
    n = len(xi)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    size = np.bincount(label)
    distinct = _distinct_owners(label, owner, len(size))
    good = (size >= 2) & (distinct == size)
    keep = good[label]
    if not keep.any():
        return out
    lab = label[keep]
    wsum = np.bincount(lab, w[keep])
    mx = np.bincount(lab, w[keep] * xi[keep]) / np.where(wsum > 0, wsum, 1)
    my = np.bincount(lab, w[keep] * eta[keep]) / np.where(wsum > 0, wsum, 1)
    groups = np.flatnonzero(good)
    ra, dec = _untangent(centre[0], centre[1], mx[groups], my[groups])
    out = Table()
    out["RA"], out["DEC"] = ra, dec
    out["n"] = size[groups]
    out["weight"] = wsum[groups]
    return out


def _distinct_owners(label: np.ndarray, owner: np.ndarray, ngroups: int) -> np.ndarray:
    """Number of different BCDs among each group's detections."""
    pairs = np.unique(np.column_stack([label, owner]), axis=0)
    return np.bincount(pairs[:, 0], minlength=ngroups)


def _weights(cat: Table) -> np.ndarray:
    snr = np.clip(np.asarray(cat["snr"], float), 0.0, _WEIGHT_SNR_CAP) if len(cat) else np.zeros(0)
    return snr ** 2


# ----------------------------------------------------------------------------- tweakwcs fits

@dataclass
class _Fit:
    """One linear fit of matched positions (tweakwcs ``iter_linear_fit``) in a tangent plane."""

    matrix: np.ndarray       # 2x2, tangent plane of the image -> the reference's
    shift: np.ndarray        # for the plane's origin
    n_matched: int           # matches kept by the clipping
    rms: float               # residual, plane units
    status: str


def _match_fit(im_xy: np.ndarray, im_w: np.ndarray, ref_xy: np.ndarray, ref_w, *, radius: float,
               fitgeom: str, min_matches: int) -> _Fit:
    """Nearest reference within ``radius`` of each image source (one image source per reference),
    then tweakwcs' ``iter_linear_fit`` (weights, 3 clipping passes at 3 x RMS) of image onto
    reference positions; all in one tangent plane.

    The matching is done here rather than by tweakwcs' ``XYXYMatch``: its 2-D offset histogram has
    1-unit bins (a whole 2.5-16" detector pixel for ``FITSWCSCorrector``) and its peak missed the
    offset by up to a pixel in tests, while header errors (~1") are well inside a match radius;
    and ``align_wcs`` costs ~0.1 s per call in overheads.
    """
    from tweakwcs.linearfit import iter_linear_fit
    none = _Fit(np.eye(2), np.zeros(2), 0, np.nan, "")
    if len(im_xy) == 0 or len(ref_xy) == 0:
        return replace(none, status="no sources")
    d, j = cKDTree(ref_xy).query(im_xy, distance_upper_bound=radius)
    ok = np.isfinite(d)
    ok &= np.bincount(j[ok], minlength=len(ref_xy) + 1)[j] == 1   # ambiguous matches left out
    if ok.sum() < max(min_matches, 2 if fitgeom == "shift" else 3):
        return replace(none, n_matched=int(ok.sum()), status=f"{int(ok.sum())} matches")
    ref_weight = None if ref_w is None else np.asarray(ref_w, float)[j[ok]]
    try:
        fit = iter_linear_fit(ref_xy[j[ok]], im_xy[ok], ref_weight, np.asarray(im_w, float)[ok],
                              fitgeom=fitgeom, nclip=3, sigma=(3.0, "rmse"), center=None)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return replace(none, status=f"fit failed ({exc})")
    # the shift for the plane's origin, as tweakwcs' own group fit computes it
    shift = fit["shift_ld"] + fit["center_ld"] - np.dot(fit["center_ld"], fit["matrix_ld"].T)
    return _Fit(np.asarray(fit["matrix"], float), np.asarray(shift, dtype=np.double),
                int(np.sum(fit["fitmask"])), float(fit["rmse"]), "SUCCESS")


def _apply(wcs: WCS, shape, fit: _Fit, plane=None) -> WCS:
    """``wcs`` corrected by ``fit`` (defined in ``plane``, a tweakwcs corrector; default the
    image's own tangent plane): ``FITSWCSCorrector.set_correction`` changes CRVAL and the CD
    matrix and keeps SIP."""
    from tweakwcs import FITSWCSCorrector
    c = FITSWCSCorrector(_sized(wcs, shape))
    c.set_correction(fit.matrix, fit.shift, ref_tpwcs=plane)
    return c.wcs.deepcopy()


def _fit_bcd(wcs: WCS, shape, cat: Table, ref: Table, *, radius_arcsec: float, fitgeom: str,
             min_matches: int, pixel_arcsec: float) -> tuple[WCS | None, dict]:
    """One BCD's sources fitted to the common list in the BCD's own tangent plane (pixels)."""
    from tweakwcs import FITSWCSCorrector
    c = FITSWCSCorrector(_sized(wcs, shape))
    im = np.column_stack(c.det_to_tanp(np.asarray(cat["x"], float), np.asarray(cat["y"], float)))
    rf = np.column_stack(c.world_to_tanp(np.asarray(ref["RA"], float), np.asarray(ref["DEC"], float)))
    fit = _match_fit(im, _weights(cat), rf, ref["weight"] if "weight" in ref.colnames else None,
                     radius=radius_arcsec / pixel_arcsec, fitgeom=fitgeom, min_matches=min_matches)
    info = {"status": "relative" if fit.status == "SUCCESS" else f"header ({fit.status})",
            "n_matched": fit.n_matched, "rms_arcsec": fit.rms * pixel_arcsec}
    return (_apply(wcs, shape, fit) if fit.status == "SUCCESS" else None), info


# ----------------------------------------------------------------------------- the refinements

def relative_refinement(shapes, wcs_list, catalogs, *, band: int, fitgeom: str = "shift",
                        iterations: int = 3, link_arcsec: float | None = None,
                        searchrad_arcsec: float | None = None, min_matches: int = 4) -> tuple[list, list]:
    """Each BCD's WCS fitted to the common source list of the stack (module docstring, step 2).

    Parameters
    ----------
    shapes, wcs_list, catalogs : lists
        Per BCD: array shape, header WCS and sources (:func:`bcd_sources`).
    band : int
        Sets the link and first match radii (0.5 FWHM by default) and the pixel scale.
    fitgeom : {"shift", "rshift"}
        A shift, or a shift and a rotation, per BCD.
    iterations : int
        Rebuilds of the common list.
    min_matches : int
        Fewer matches: the BCD keeps its header WCS.

    Returns
    -------
    wcs_list : list of WCS
        Corrected (or header) WCS per BCD.
    info : list of dict
        ``status``, ``n_matched``, ``rms_arcsec`` per BCD.
    """
    if fitgeom not in FITGEOMS:
        raise ValueError(f"fitgeom {fitgeom!r}: expected one of {FITGEOMS}")
    fwhm = _FWHM_ARCSEC[band]
    link = _LINK_FWHM * fwhm if link_arcsec is None else float(link_arcsec)
    search = link if searchrad_arcsec is None else float(searchrad_arcsec)
    refit = min(search, _REFIT_RADIUS_FWHM * fwhm)
    pix = band_spec(band).pixel_arcsec
    header = [w.deepcopy() for w in wcs_list]
    current = [w.deepcopy() for w in wcs_list]
    centre = _stack_centre(header, shapes)
    info = [{"status": "no fit", "n_matched": 0, "rms_arcsec": np.nan} for _ in current]
    for it in range(max(int(iterations), 1)):
        ref = common_sources(current, catalogs, link_arcsec=link, centre=centre)
        log.info("pointing refinement iteration %d: %d common sources", it + 1, len(ref))
        if len(ref) < min_matches:
            for d in info:
                d["status"] = f"header (only {len(ref)} common sources)"
            return header, info
        for k, cat in enumerate(catalogs):
            if len(cat) < min_matches:
                info[k] = {"status": f"header ({len(cat)} sources)", "n_matched": 0, "rms_arcsec": np.nan}
                continue
            # a BCD already fitted is refitted from its corrected WCS within the small radius
            # (the corrections compose); one not fitted yet starts again from its header
            fitted = info[k]["status"] == "relative"
            wcs, result = _fit_bcd(current[k] if fitted else header[k], shapes[k], cat, ref,
                                   radius_arcsec=refit if fitted else search, fitgeom=fitgeom,
                                   min_matches=min_matches, pixel_arcsec=pix)
            if wcs is None:
                if not fitted:          # a refit that failed keeps the previous solution
                    current[k], info[k] = header[k].deepcopy(), result
                continue
            current[k], info[k] = wcs, result
    return current, info


def _stack_centre(wcs_list, shapes) -> tuple[float, float]:
    pts = [w.all_pix2world([[(s[1] - 1) / 2.0, (s[0] - 1) / 2.0]], 0)[0] for w, s in zip(wcs_list, shapes)]
    c = SkyCoord(np.array(pts)[:, 0] * u.deg, np.array(pts)[:, 1] * u.deg)
    cart = c.cartesian.mean()
    mean = SkyCoord(cart, representation_type="cartesian").spherical
    return float(mean.lon.deg), float(mean.lat.deg)


def absolute_refinement(shapes, wcs_list, catalogs, refcat: Table, *, band: int,
                        fitgeom: str = "shift", searchrad_arcsec: float | None = None,
                        min_matches: int = 4, link_arcsec: float | None = None) -> tuple[list, dict]:
    """One correction for the whole stack from its common source list against ``refcat``.

    The stack's common sources (:func:`common_sources`, from the relatively refined WCSs) and
    the catalogue (``RA``, ``DEC`` deg) are projected on a tangent plane of 1" units at the
    stack's centre, matched (nearest within ``searchrad_arcsec``, default 0.5 FWHM) and fitted
    (:func:`_match_fit`, tweakwcs' ``iter_linear_fit``); the shift (and rotation) is applied to
    every BCD's WCS in that plane (``FITSWCSCorrector.set_correction(..., ref_tpwcs=...)``, as
    tweakwcs does for a group of images; its own group fit, ``align_wcs`` with one
    ``group_id``, took minutes for 8 BCDs).  Returns the corrected WCSs and ``status``,
    ``n_matched``, ``rms_arcsec``, ``shift_arcsec``, ``rot_deg``; on failure the WCSs come
    back unchanged.
    """
    from tweakwcs import FITSWCSCorrector
    if fitgeom not in FITGEOMS:
        raise ValueError(f"fitgeom {fitgeom!r}: expected one of {FITGEOMS}")
    fwhm = _FWHM_ARCSEC[band]
    link = _LINK_FWHM * fwhm if link_arcsec is None else float(link_arcsec)
    radius = _LINK_FWHM * fwhm if searchrad_arcsec is None else float(searchrad_arcsec)
    centre = _stack_centre(wcs_list, shapes)
    stack = common_sources(wcs_list, catalogs, link_arcsec=link, centre=centre)
    plane = FITSWCSCorrector(_plane_wcs(centre))
    im = np.column_stack(plane.world_to_tanp(np.asarray(stack["RA"]), np.asarray(stack["DEC"])))
    ref = np.column_stack(plane.world_to_tanp(np.asarray(refcat["RA"], float),
                                              np.asarray(refcat["DEC"], float)))
    fit = _match_fit(im, np.asarray(stack["weight"]), ref, None, radius=radius, fitgeom=fitgeom,
                     min_matches=min_matches)
    summary = {"status": fit.status, "n_matched": fit.n_matched, "rms_arcsec": fit.rms,
               "shift_arcsec": tuple(float(v) for v in fit.shift),
               "rot_deg": float(np.degrees(np.arctan2(fit.matrix[1, 0], fit.matrix[0, 0])))}
    if fit.status != "SUCCESS":
        return list(wcs_list), summary
    return [_apply(w, shape, fit, plane) for w, shape in zip(wcs_list, shapes)], summary


def _plane_wcs(centre: tuple[float, float]) -> WCS:
    """A TAN WCS of 1" pixels (east left, north up) at ``centre``: the absolute fit's plane."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(centre)
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) / 3600.0
    w.pixel_shape = (2, 2)
    w.wcs.set()
    return w


def _sized(wcs: WCS, shape) -> WCS:
    w = wcs.deepcopy()
    w.pixel_shape = (shape[1], shape[0])
    return w


# ----------------------------------------------------------------------------- the whole refinement

def read_catalog(path: str | os.PathLike) -> Table:
    """A reference catalogue (any format astropy reads) as a Table of ``RA``, ``DEC`` (deg).

    Columns named ra/dec (any case, also ``RAJ2000``/``DEJ2000``); a unit other than degrees is
    converted.  Raises :class:`reprocess.io.InputError` naming the file otherwise.
    """
    path = Path(path)
    try:
        table = Table.read(path)
    except Exception as exc:  # noqa: BLE001 -- astropy raises many types for unreadable tables
        raise InputError(path, f"unreadable catalogue ({type(exc).__name__}: {exc})") from None
    cols = {c.lower(): c for c in table.colnames}
    ra = next((cols[c] for c in ("ra", "raj2000", "ra_deg") if c in cols), None)
    dec = next((cols[c] for c in ("dec", "dej2000", "decj2000", "dec_deg") if c in cols), None)
    if ra is None or dec is None:
        raise InputError(path, f"no RA/Dec columns (has {', '.join(table.colnames)})")
    out = Table()
    for name, col in (("RA", ra), ("DEC", dec)):
        q = table[col]
        unit = getattr(q, "unit", None)
        values = (np.asarray(q) * u.Unit(unit)).to_value(u.deg) if unit else np.asarray(q, float)
        out[name] = np.asarray(values, float)
    good = np.isfinite(out["RA"]) & np.isfinite(out["DEC"])
    if not good.any():
        raise InputError(path, "no finite RA/Dec rows")
    return out[good]


def _sources(info, band: int, nsigma: float, centroid: str, keep_going: bool) -> Table:
    try:
        return bcd_sources(load_bcd(info.path, wcs=info.wcs), band=band, nsigma=nsigma,
                           centroid=centroid)
    except InputError:
        if not keep_going:
            raise
        return Table(names=("x", "y", "snr"))   # the mosaic leaves the BCD out and says why


def refine_pointing(infos, *, band: int, catalog: Table | None = None, fitgeom: str = "shift",
                    nsigma: float = 5.0, iterations: int = 3, min_matches: int = 4,
                    link_arcsec: float | None = None, centroid: str = "prf",
                    keep_going: bool = False) -> PointingSolution:
    """Refine the pointing of the BCDs ``infos`` (:class:`reprocess.mosaic.grid.BcdInfo`).

    Each BCD is read once for its sources; relative refinement, then absolute against
    ``catalog`` (``RA``, ``DEC`` deg; :func:`read_catalog`) when given.  See the module
    docstring.  Returns a :class:`PointingSolution` (the BCD files are not changed).
    ``centroid``: ``"prf"`` (default) or ``"peak"`` (:func:`bcd_sources`; the PRF fit costs ~5x
    the detection).  ``keep_going``: a BCD that cannot be read gets no sources (and keeps its header WCS)
    instead of raising.
    """
    shapes = [i.shape for i in infos]
    header = [i.wcs for i in infos]
    catalogs = [_sources(i, band, nsigma, centroid, keep_going) for i in infos]
    wcs_list, info = relative_refinement(shapes, header, catalogs, band=band, fitgeom=fitgeom,
                                         iterations=iterations, link_arcsec=link_arcsec,
                                         min_matches=min_matches)
    meta = {"fitgeom": fitgeom, "nsigma": nsigma, "iterations": iterations,
            "min_matches": min_matches}
    mode = "relative"
    if catalog is not None:
        refined, summary = absolute_refinement(shapes, wcs_list, catalogs, catalog, band=band,
                                               fitgeom=fitgeom, min_matches=min_matches,
                                               link_arcsec=link_arcsec)
        meta.update({f"absolute_{k}": v for k, v in summary.items()})
        if summary["status"] == "SUCCESS":
            mode = "absolute"
            wcs_list = refined
            for d in info:
                d["status"] = "absolute" if d["status"] == "relative" else "absolute only"
        else:
            log.warning("absolute pointing refinement failed (%s): relative solution kept",
                        summary["status"])
    table = _table(infos, header, wcs_list, catalogs, info)
    return PointingSolution({i.path: w for i, w in zip(infos, wcs_list)}, table, mode, meta)


def _table(infos, header, wcs_list, catalogs, info) -> Table:
    rows = []
    for k, i in enumerate(infos):
        de, dn, dr = wcs_change(header[k], wcs_list[k], i.shape)
        cd = wcs_list[k].wcs.cd if wcs_list[k].wcs.has_cd() else wcs_list[k].pixel_scale_matrix
        rows.append((i.path.name, len(catalogs[k]), info[k]["n_matched"], de, dn, dr,
                     info[k]["rms_arcsec"], info[k]["status"], *wcs_list[k].wcs.crval,
                     *np.asarray(cd).ravel()))
    names = ("bcd", "n_sources", "n_matched", "d_east_arcsec", "d_north_arcsec", "d_rot_deg",
             "rms_arcsec", "status", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")
    if not rows:
        return Table(names=names)
    return Table(rows=rows, names=names)


def pointing_hdu(solution: PointingSolution):
    """The refinement record as a FITS binary table ``POINTING`` (one row per BCD, as
    :attr:`PointingSolution.table`; header ``PTGREF`` the mode and the fit's parameters)."""
    from astropy.io import fits
    table = solution.table.copy()
    table["status"] = [str(v)[:40] for v in table["status"]] if len(table) else table["status"]
    hdu = fits.table_to_hdu(table)
    hdu.name = "POINTING"
    hdu.header["PTGREF"] = (solution.mode, "pointing refinement applied")
    hdu.header["PTGGEOM"] = (solution.meta.get("fitgeom", ""), "fit per BCD: shift or rshift")
    for key, card in (("absolute_n_matched", "PTGANMAT"), ("absolute_rms_arcsec", "PTGARMS")):
        if key in solution.meta and np.isfinite(solution.meta[key]):
            hdu.header[card] = (solution.meta[key], key.replace("_", " "))
    return hdu
