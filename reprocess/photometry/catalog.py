"""Point-source catalogues of mosaics: read, detect, measure, correct, write (ECSV, VOTable).

``measure(path_or_mosaic, method="prf" | "aperture")`` runs detection (:mod:`.detect`) and PRF
fitting (:mod:`.prf_fit`) or aperture photometry (:mod:`.aperture`) on a mosaic written by
``mips mosaic`` (primary HDU in MJy/sr with a celestial WCS, ``UNC``, ``COV``) and returns a
QTable in uJy and degrees whose ``meta`` records every number applied: the pixel's solid angle
(from the WCS), uJy per MJy/sr, the PRF model, the aperture correction and its parts, the PRF's
normalisation, the flux convention and any colour correction, the detection threshold, the flag
bits.  :func:`write_catalog` writes it atomically and refuses to overwrite.

Conventions
-----------
Fluxes are quoted as the SSC quotes them: the flux density at the band's reference wavelength of a
source with the calibrators' spectrum (a 10^4 K blackbody), i.e. *not* colour-corrected.  With
``colour={"temperature": T}`` or ``{"alpha": a}`` the catalogue adds ``flux_cc = flux / K``
(:func:`calibration.photometric.colour_correction`) and says so in ``meta``.  ``psf="simulator"``
is for data made by :mod:`mipssim`, whose point sources are rendered with the PRFs of
:func:`calibration.psf.load_prf` (at 24 um the GOODS-S PSF, normalised within its 76" box); the
default ``"model"`` is for real data: the aperture correction uses the STinyTim model PSF, and a
24 um PRF-fit flux is divided by the fraction of the model PSF's light inside that box (0.94 for a
star), since a fit normalises the PRF to the light it contains.

The PRF fit's ``flux_err`` is the fit's error from UNC and the mosaic's noise correlation
(``flux_err_stat``) times ``sqrt(max(1, reduced chi^2))``: where the PRF does not describe the
source to the noise (a bright source's sampling by a few BCDs, a slightly extended source), the
error grows with the misfit instead of being a pure noise figure.

A second detection pass on the residual image (data minus the fitted sources, each out to its
PSF's whole extent so that no Airy ring is left) finds companions that the matched filter merged
with a brighter neighbour (closer than ~1.2 FWHM); its noise includes 3 % of the model (the PRF's
own mismatch on bright sources) and its threshold is at least 5 sigma: at 3 sigma it also picks up
noise and ring fragments (a 24 um test field: 64 detections matching no source against 22 in the
first pass; at 5 sigma 24).
"""
from __future__ import annotations

import io
import os
import re
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable, vstack
from astropy.wcs import WCS, FITSFixedWarning

from calibration.folders import expand_inputs, write_atomic
from calibration.photometric import colour_correction, ujy_per_mjysr, vega_magnitude
from calibration.psf import CALIBRATOR_TEMPERATURE_K

from ..io import InputError
from .aperture import DEFAULT_APERTURES_ARCSEC, aperture_photometry_uJy, pixel_arcsec_of
from .detect import detect_sources
from .flags import PhotFlag, flag_meta
from .mosaic_prf import bcd_to_mosaic_matrix, mosaic_prf
from .prf_fit import fit_prf

__all__ = ["METHODS", "MosaicImage", "measure", "photometry_catalog", "prf_normalisation",
           "read_mosaic", "write_catalog"]

METHODS = ("prf", "aperture")
_RESIDUAL_NSIGMA = 5.0         # threshold of the residual pass (at least the detection threshold)
_RESIDUAL_MODEL_ERROR = 0.03    # fraction of the model added to the residual pass's noise
_BAND_OF_CHNLNUM = {1: 24, 2: 70, 3: 160}
# PRF fit background (scope, polynomial order) by band.  A fit group is every source whose fit
# disc (1.5 FWHM) touches another's: at 160 um (FWHM 40") groups chain over arcminutes, across
# which cirrus changes by more than a faint source's peak, and one polynomial per group read
# the sources of a simulated 160 um scan map (benchmarks/photometry_e2e.py) with pull spreads of
# 4 (S/N > 5) and flux ratios spread by 0.5 even without noise; there each source has its own
# quadratic, blended between overlapping discs (pull spread 2.1, robust 1.7; a plane: 3.0 and 2.5,
# for 25 % less noise).  At 24 and 70 um groups are small against the cirrus scales and one
# constant per group is the cheaper model (per-source planes on a 70 um map: 40 % more noise,
# robust pulls 1.8 -> 1.1).
DEFAULT_BACKGROUND = {24: ("group", 0), 70: ("group", 0), 160: ("source", 2)}


@dataclass(frozen=True)
class MosaicImage:
    """A mosaic in memory: MJy/sr image, ``UNC``, optional ``COV``, its WCS and band."""

    data: np.ndarray
    uncertainty: np.ndarray
    wcs: WCS
    band: int
    coverage: np.ndarray | None = None
    path: Path | None = None
    bcd_to_mosaic: np.ndarray | None = None
    header: fits.Header = field(default_factory=fits.Header)

    @property
    def pixel_arcsec(self) -> float:
        """Side of the square pixel of the WCS's pixel solid angle, arcsec."""
        return pixel_arcsec_of(self.wcs)


def _name(path) -> str:
    return str(path) if path is not None else "<array>"


def _band(header, band, path) -> int:
    if band is not None:
        b = int(band)
    elif "BAND" in header:
        b = int(header["BAND"])
    elif "CHNLNUM" in header and header["CHNLNUM"] in _BAND_OF_CHNLNUM:
        b = _BAND_OF_CHNLNUM[header["CHNLNUM"]]
    else:
        raise InputError(_name(path), "no BAND card: give the band (--band 24|70|160)")
    if b not in (24, 70, 160):
        raise InputError(_name(path), f"band {b} is not a MIPS band (24, 70, 160)")
    return b


def _check_unit(header, path) -> None:
    bunit = header.get("BUNIT")
    if bunit is None or not str(bunit).strip():
        raise InputError(_name(path), "no BUNIT: the image's unit is unknown (expected MJy/sr)")
    try:
        unit = u.Unit(str(bunit).strip())
    except ValueError:
        raise InputError(_name(path), f"BUNIT {bunit!r} is not a unit (expected MJy/sr)") from None
    if unit != u.MJy / u.sr:
        raise InputError(_name(path), f"BUNIT {bunit!r}: expected MJy/sr (a surface brightness)")


def _celestial_wcs(header, path) -> WCS:
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except (ValueError, KeyError, TypeError, MemoryError) as exc:   # astropy's WcsError is a ValueError
        raise InputError(_name(path), f"unreadable WCS ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0]})") from None
    if not wcs.has_celestial or wcs.celestial.naxis != 2 or wcs.naxis != 2:
        raise InputError(_name(path), "no celestial WCS (CTYPE1/2 RA---/DEC-- with CRVAL, CRPIX "
                                      "and a pixel scale)")
    try:
        area = float(np.abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))
    except (ValueError, np.linalg.LinAlgError):
        area = 0.0
    if not np.isfinite(area) or area <= 0:
        raise InputError(_name(path), "celestial WCS has no usable pixel scale")
    return wcs.celestial


def read_mosaic(path: str | os.PathLike, *, band: int | None = None,
                bcd_dir: str | os.PathLike | None = None) -> MosaicImage:
    """Read a mosaic (``mips mosaic`` / :func:`reprocess.mosaic.write_mosaic` format).

    Parameters
    ----------
    path : path-like
        FITS file: primary image in MJy/sr with a celestial WCS, ``UNC`` (1 sigma) and optionally
        ``COV`` extensions.
    band : int, optional
        24, 70 or 160; default the ``BAND`` card.
    bcd_dir : path-like, optional
        Where the mosaic's input BCDs are (default: ``bcd/`` beside the mosaic, then its folder);
        one of them gives the BCDs' orientation on the mosaic, which the PRF model needs.

    Raises
    ------
    reprocess.io.InputError
        One line naming the file: unreadable, no image, no/unknown BUNIT, no celestial WCS, no
        ``UNC``, shapes that differ, no band.
    """
    path = Path(path)
    try:
        hdul = fits.open(path, memmap=False)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, f"not a readable FITS file ({str(exc).splitlines()[0]})") from None
    with hdul:
        prim = hdul[0]
        if prim.data is None or prim.data.ndim != 2:
            raise InputError(path, "primary HDU is not a 2-D image")
        header = prim.header.copy()
        _check_unit(header, path)
        wcs = _celestial_wcs(header, path)
        if "UNC" not in hdul:
            raise InputError(path, "no UNC extension (the 1-sigma uncertainty map)")
        data = np.asarray(prim.data, dtype=float)
        unc = np.asarray(hdul["UNC"].data, dtype=float)
        cov = np.asarray(hdul["COV"].data, dtype=float) if "COV" in hdul else None
    for name, arr in (("UNC", unc), ("COV", cov)):
        if arr is not None and arr.shape != data.shape:
            raise InputError(path, f"{name} shape {arr.shape} differs from the image's {data.shape}")
    b = _band(header, band, path)
    return MosaicImage(data, unc, wcs, b, cov, path, _bcd_orientation(path, header, wcs, bcd_dir),
                       header)


def _bcd_orientation(path: Path, header, wcs, bcd_dir) -> np.ndarray | None:
    """``bcd_to_mosaic`` from the first input BCD (HISTORY 'input NAME') found on disk."""
    names = [m.group(1) for h in header.get("HISTORY", [])
             if (m := re.match(r"input (\S+)", str(h)))]
    folders = [Path(bcd_dir)] if bcd_dir is not None else [path.parent / "bcd", path.parent]
    for name in names[:1] + names[len(names) // 2:len(names) // 2 + 1]:
        for folder in folders:
            bcd = folder / name
            if bcd.is_file():
                try:
                    h = fits.getheader(bcd)
                    return bcd_to_mosaic_matrix(_celestial_wcs(h, bcd), wcs,
                                                (int(h["NAXIS2"]), int(h["NAXIS1"])))
                except (InputError, OSError, KeyError, np.linalg.LinAlgError):
                    continue
    return None


def prf_normalisation(band: int, *, temperature_k: float | None = None, psf: str = "model") -> float:
    """Fraction of a point source's light the PRF model of ``band`` contains.

    1 except at 24 um with ``psf="model"``: the GOODS-S PSF of the fit is normalised within its
    76" box, which holds this fraction of the STinyTim model PSF's light (scaled to the source's
    colour, :func:`calibration.psf.load_stinytim_24`); PRF-fit fluxes are divided by it.
    """
    if int(band) != 24 or psf == "simulator":
        return 1.0
    from calibration.photometric import mean_photon_wavelength_um
    from calibration.psf import EMPIRICAL_24_SCALE, load_psf, load_stinytim_24
    t = CALIBRATOR_TEMPERATURE_K[24] if temperature_k is None else float(temperature_k)
    model, scale = load_stinytim_24(mean_photon_wavelength_um(24, temperature=t))
    half = 0.5 * load_psf(24, t)[0].shape[0] * EMPIRICAL_24_SCALE
    cy, cx = np.unravel_index(np.argmax(model), model.shape)
    yy, xx = np.indices(model.shape)
    inside = (np.abs(yy - cy) * scale <= half) & (np.abs(xx - cx) * scale <= half)
    return float(model[inside].sum())


def _software() -> dict:
    out = {}
    for pkg in ("mips-toolkit", "numpy", "scipy", "astropy", "photutils"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def measure(source, *, method: str = "prf", band: int | None = None, nsigma: float = 5.0,
            temperature_k: float | None = None, psf: str = "model", colour: dict | None = None,
            radius_arcsec: float | None = None, annulus_arcsec: tuple[float, float] | None = None,
            positions: QTable | None = None, residual_pass: bool = True,
            inflate_errors: bool = True, background_order: int | None = None,
            background_scope: str | None = None, bcd_dir=None) -> QTable:
    """Detect and measure the point sources of a mosaic.

    Parameters
    ----------
    source : path-like or MosaicImage
        The mosaic.
    method : {"prf", "aperture"}
        PRF fitting (:mod:`.prf_fit`) or aperture photometry (:mod:`.aperture`).
    band : int, optional
        Overrides the mosaic's ``BAND``.
    nsigma : float
        Detection threshold (point-source significance, :mod:`.detect`).
    temperature_k : float, optional
        Source blackbody temperature choosing the PSF (70, 160 um; aperture corrections).
    psf : {"model", "simulator"}
        ``"simulator"`` for :mod:`mipssim` data (module docstring).
    colour : dict, optional
        ``{"temperature": T}`` or ``{"alpha": a}``: add colour-corrected ``flux_cc``.
    radius_arcsec, annulus_arcsec : float, (float, float)
        Aperture and sky annulus (aperture method); default
        :data:`.aperture.DEFAULT_APERTURES_ARCSEC`.
    positions : QTable, optional
        ``ra``, ``dec`` (deg) to measure instead of detecting (forced; the PRF fit keeps them).
    residual_pass : bool
        PRF method: detect again on the residual image and refit with what it finds.
    inflate_errors : bool
        PRF method: ``flux_err = flux_err_stat * sqrt(max(1, reduced chi^2))``.
    background_order : {0, 1, 2}, optional
        PRF method: the local background is a constant, a plane or a quadratic; default
        :data:`DEFAULT_BACKGROUND` of the band.
    background_scope : {"group", "source"}, optional
        PRF method: one background polynomial per fit group, or one per source blended between
        overlapping fit discs (:func:`.prf_fit.fit_prf`); default :data:`DEFAULT_BACKGROUND`.
    bcd_dir : path-like, optional
        Where the mosaic's BCDs are (their orientation; :func:`read_mosaic`).

    Returns
    -------
    QTable
        ``id``, ``ra``, ``dec`` (deg), ``x``, ``y`` (0-based pixels), ``flux``, ``flux_err`` (uJy),
        ``snr``, ``mag_vega``, ``flags`` and the method's own columns; ``meta`` as described in the
        module docstring.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    if psf not in ("model", "simulator"):
        raise ValueError(f"psf {psf!r}: expected 'model' or 'simulator'")
    mos = source if isinstance(source, MosaicImage) else read_mosaic(source, band=band,
                                                                     bcd_dir=bcd_dir)
    b = int(band) if band is not None else mos.band
    t0 = time.perf_counter()
    pix = mos.pixel_arcsec
    prf = mosaic_prf(b, pixel_arcsec=pix, temperature_k=temperature_k,
                     bcd_to_mosaic=mos.bcd_to_mosaic)
    no_data = None if mos.coverage is None else ~(mos.coverage > 0)
    if positions is None:
        found = detect_sources(mos.data, mos.uncertainty, prf=prf, nsigma=nsigma, wcs=mos.wcs,
                               mask=no_data)
    else:
        found = _forced(positions, mos.wcs)
    if method == "prf":
        table = _prf_table(mos, prf, found, b, nsigma=nsigma, temperature_k=temperature_k, psf=psf,
                           residual=residual_pass and positions is None, forced=positions is not None,
                           mask=no_data, inflate=inflate_errors,
                           order=DEFAULT_BACKGROUND[b][1] if background_order is None
                           else background_order,
                           scope=DEFAULT_BACKGROUND[b][0] if background_scope is None
                           else background_scope)
    else:
        table = _aperture_table(mos, prf, found, b, temperature_k=temperature_k, psf=psf,
                                radius_arcsec=radius_arcsec, annulus_arcsec=annulus_arcsec)
    _finish(table, mos, prf, b, method=method, nsigma=nsigma, temperature_k=temperature_k, psf=psf,
            colour=colour, forced=positions is not None, seconds=time.perf_counter() - t0)
    return table


def _forced(positions: QTable, wcs) -> QTable:
    ra = u.Quantity(positions["ra"], u.deg).value
    dec = u.Quantity(positions["dec"], u.deg).value
    x, y = wcs.world_to_pixel_values(ra, dec)
    out = QTable()
    out["id"] = np.asarray(positions["id"]) if "id" in positions.colnames else np.arange(1, len(ra) + 1)
    out["x"], out["y"] = np.atleast_1d(x), np.atleast_1d(y)
    out["snr"] = np.full(len(ra), np.nan)
    return out


def _prf_table(mos, prf, found, band, *, nsigma, temperature_k, psf, residual, forced, mask,
               inflate, order, scope) -> QTable:
    fit = fit_prf(mos.data, mos.uncertainty, found["x"], found["y"], prf=prf, mask=mask,
                  fit_positions=not forced, background_order=order, background_scope=scope)
    det_snr = np.asarray(found["snr"], dtype=float)
    ids = np.asarray(found["id"])
    if residual and len(fit):
        extra = _residual_sources(mos, prf, fit, nsigma, mask, band, temperature_k)
        if len(extra):
            xs = np.r_[np.where(np.isfinite(fit["x_fit"]), fit["x_fit"], fit["x_init"]), extra["x"]]
            ys = np.r_[np.where(np.isfinite(fit["y_fit"]), fit["y_fit"], fit["y_init"]), extra["y"]]
            fit = fit_prf(mos.data, mos.uncertainty, xs, ys, prf=prf, mask=mask,
                          background_order=order, background_scope=scope)
            det_snr = np.r_[det_snr, np.asarray(extra["snr"], dtype=float)]
            ids = np.r_[ids, ids.max(initial=0) + np.arange(1, len(extra) + 1)]
    scale = ujy_per_mjysr(mos.pixel_arcsec) / prf_normalisation(band, temperature_k=temperature_k,
                                                                 psf=psf)
    chi2 = np.asarray(fit["reduced_chi2"], dtype=float)
    factor = np.sqrt(np.maximum(1.0, np.nan_to_num(chi2, nan=1.0))) if inflate else 1.0
    x = np.where(np.isfinite(fit["x_fit"]), fit["x_fit"], fit["x_init"])
    y = np.where(np.isfinite(fit["y_fit"]), fit["y_fit"], fit["y_init"])
    out = _positions(ids, x, y, mos.wcs)
    out["x_err"], out["y_err"] = fit["x_err"], fit["y_err"]
    out["flux"] = np.asarray(fit["flux_fit"]) * scale * u.uJy
    out["flux_err"] = np.asarray(fit["flux_err"]) * scale * factor * u.uJy
    out["flux_err_stat"] = np.asarray(fit["flux_err"]) * scale * u.uJy
    out["snr"] = out["flux"] / out["flux_err"]
    out["background"] = np.asarray(fit["background"]) * u.MJy / u.sr
    out["reduced_chi2"] = chi2
    out["group_id"], out["group_size"] = fit["group_id"], fit["group_size"]
    out["n_pix"] = fit["n_pix"]
    out["detection_snr"] = det_snr
    out["flags"] = np.asarray(fit["flags"], dtype=np.int32)
    out.meta["prf_flux_normalisation"] = prf_normalisation(band, temperature_k=temperature_k, psf=psf)
    out.meta["prf_fit_radius_fwhm"] = 1.5
    out.meta["background"] = (f"{('constant', 'plane', 'quadratic')[order]} per "
                              + ("fit group" if scope == "group" else
                                 "source, blended between overlapping fit discs"))
    out.meta["errors"] = ("flux_err_stat: PRF fit error from UNC with the mosaic's noise "
                          "correlation; flux_err: that times sqrt(max(1, reduced_chi2))"
                          if inflate else "flux_err: PRF fit error from UNC with the mosaic's "
                          "noise correlation")
    return out


def _residual_sources(mos, prf, fit, nsigma, mask, band, temperature_k) -> QTable:
    """Detections on data - fitted model (the PRF out to its whole extent, so that no Airy ring
    is left to detect), with the model's own mismatch in the noise; none within 0.5 FWHM of a
    fitted source."""
    ok = np.isfinite(fit["flux_fit"])
    wide = mosaic_prf(band, pixel_arcsec=mos.pixel_arcsec, temperature_k=temperature_k,
                      bcd_to_mosaic=mos.bcd_to_mosaic, radius_pix=_psf_reach_pix(band, mos))
    model = wide.render(mos.data.shape, np.asarray(fit["y_fit"])[ok],
                        np.asarray(fit["x_fit"])[ok], np.asarray(fit["flux_fit"])[ok])
    unc = np.sqrt(mos.uncertainty ** 2 + (_RESIDUAL_MODEL_ERROR * model) ** 2)
    extra = detect_sources(mos.data - model, unc, prf=prf, nsigma=max(nsigma, _RESIDUAL_NSIGMA),
                           mask=mask)
    if len(extra) and ok.any():
        from scipy.spatial import cKDTree
        d, _ = cKDTree(np.c_[np.asarray(fit["x_fit"])[ok], np.asarray(fit["y_fit"])[ok]]).query(
            np.c_[extra["x"], extra["y"]])
        extra = extra[d > 0.5 * prf.fwhm_pix]
    return extra


def _psf_reach_pix(band, mos) -> float:
    """Half-size of the band's PSF image in mosaic pixels (at most 60)."""
    from calibration.psf import load_psf
    psf, scale = load_psf(band, CALIBRATOR_TEMPERATURE_K[band])
    return float(min(60.0, 0.5 * psf.shape[0] * scale / mos.pixel_arcsec))


def _positions(ids, x, y, wcs) -> QTable:
    out = QTable()
    out["id"] = np.asarray(ids)
    ra, dec = wcs.pixel_to_world_values(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    out["ra"] = np.atleast_1d(ra) * u.deg
    out["dec"] = np.atleast_1d(dec) * u.deg
    out["x"], out["y"] = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return out


def _aperture_table(mos, prf, found, band, *, temperature_k, psf, radius_arcsec,
                    annulus_arcsec) -> QTable:
    ap = aperture_photometry_uJy(mos.data, mos.uncertainty, found["x"], found["y"], wcs=mos.wcs,
                                 band=band, radius_arcsec=radius_arcsec,
                                 annulus_arcsec=annulus_arcsec, temperature_k=temperature_k,
                                 coverage=mos.coverage, bcd_to_mosaic=mos.bcd_to_mosaic, psf=psf)
    out = _positions(found["id"], found["x"], found["y"], mos.wcs)
    for name in ("flux", "flux_err"):
        out[name] = ap[name]
    out["snr"] = ap["flux"] / ap["flux_err"]
    for name in ("sky", "sky_err", "aperture_sum", "aperture_sum_err", "aperture_sum_err_photutils",
                 "n_sky"):
        out[name] = ap[name]
    out["detection_snr"] = np.asarray(found["snr"], dtype=float)
    flags = np.asarray(ap["flags"], dtype=np.int32)
    # a detected neighbour within the aperture radius + 1 FWHM puts its light in the aperture
    r = ap.meta["aperture_radius_arcsec"] / mos.pixel_arcsec + prf.fwhm_pix
    if len(out) > 1:
        from scipy.spatial import cKDTree
        pairs = cKDTree(np.c_[out["x"], out["y"]]).query_pairs(r, output_type="ndarray")
        flags[np.unique(pairs)] |= PhotFlag.BLENDED
    out["flags"] = flags
    out.meta.update(ap.meta)
    return out


def _finish(table, mos, prf, band, *, method, nsigma, temperature_k, psf, colour, forced, seconds):
    """Magnitudes, colour correction and the metadata of every number applied."""
    jy = table["flux"].to_value(u.Jy)
    table["mag_vega"] = vega_magnitude(jy, band) * u.mag
    with np.errstate(divide="ignore", invalid="ignore"):
        table["mag_vega_err"] = 2.5 / np.log(10) * (table["flux_err"] / table["flux"]).value * u.mag
    convention = ("flux density at the reference wavelength for the calibrators' spectrum (10^4 K "
                  "blackbody), the SSC convention: not colour-corrected")
    cc = None
    if colour:
        k = colour_correction(band, **colour)
        table["flux_cc"] = table["flux"] / k
        table["flux_cc_err"] = table["flux_err"] / k
        cc = {"K": k, "spectrum": {key: float(v) for key, v in colour.items()},
              "columns": "flux_cc = flux / K"}
    pix = mos.pixel_arcsec
    table.meta.update({
        "mosaic": None if mos.path is None else str(mos.path),
        "band_um": int(band), "method": method, "image_unit": "MJy/sr",
        "pixel_arcsec": pix, "pixel_sr": float((pix / 206264.80624709636) ** 2),
        "ujy_per_mjysr_pixel": ujy_per_mjysr(pix),
        "flux_convention": convention, "colour_correction": cc or "none applied (K = 1 by convention)",
        "psf": psf, "temperature_k": float(temperature_k if temperature_k is not None
                                           else CALIBRATOR_TEMPERATURE_K[band]),
        "prf_model": prf.description, "prf_fwhm_arcsec": prf.fwhm_pix * pix,
        "bcd_orientation": ("from the input BCDs" if mos.bcd_to_mosaic is not None
                            else "not found: BCD axes taken along the mosaic's"),
        "noise_correlation_area_pix": float(prf.correlation.sum()),
        "detection": "forced at the given positions" if forced
        else f"matched filter, threshold {nsigma:g} sigma",
        "flags": flag_meta(), "software": _software(), "seconds": round(float(seconds), 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if method == "aperture":
        table.meta.setdefault("aperture_radius_arcsec", DEFAULT_APERTURES_ARCSEC[band][0])
    for name, text in (("ra", "right ascension (ICRS)"), ("dec", "declination (ICRS)"),
                       ("flux", "flux density at the reference wavelength, see flux_convention"),
                       ("flux_err", "1-sigma uncertainty of flux"),
                       ("flags", "bit flags, see meta['flags']")):
        table[name].description = text


def write_catalog(table: QTable, path: str | os.PathLike, *, votable: bool = False,
                  overwrite: bool = False) -> list[Path]:
    """Write ``table`` as ECSV at ``path`` (and a VOTable beside it, ``.vot``), atomically.

    Raises
    ------
    FileExistsError
        Naming the first output that exists, unless ``overwrite`` (nothing is written).
    """
    path = Path(path)
    outputs = [path] + ([path.with_suffix(".vot")] if votable else [])
    for out in outputs:
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out}: exists (use --overwrite to replace it)")
    text = io.StringIO()
    table.write(text, format="ascii.ecsv")
    blobs = [text.getvalue().encode()]
    if votable:
        vt = table.copy()
        vt.meta = {k: (v if isinstance(v, (str, int, float)) else repr(v)) for k, v in table.meta.items()}
        buf = io.BytesIO()
        vt.write(buf, format="votable")
        blobs.append(buf.getvalue())
    for out, blob in zip(outputs, blobs):
        write_atomic(out, blob)
    return outputs


def _mosaic_files(inputs) -> list[Path]:
    """FITS files given, or found in folders (``DIR/mosaic.fits``, else ``DIR/*.fits``)."""
    def find(item: Path) -> list[Path]:
        return [item / "mosaic.fits"] if (item / "mosaic.fits").is_file() else sorted(item.glob("*.fits"))
    return expand_inputs(inputs, find, none_found="no mosaic.fits or *.fits in it")


def photometry_catalog(inputs, **options) -> QTable:
    """One catalogue of the mosaics at ``inputs`` (files or folders), with a ``mosaic`` column.

    ``options`` go to :func:`measure`; the mosaics must be of one band.
    """
    tables = []
    for path in _mosaic_files(inputs):
        t = measure(path, **options)
        t["mosaic"] = path.name
        tables.append(t)
    bands = {t.meta["band_um"] for t in tables}
    if len(bands) > 1:
        raise ValueError(f"mosaics of several bands ({sorted(bands)}): one catalogue per band")
    if len(tables) == 1:
        return tables[0]
    meta = dict(tables[0].meta)
    meta["mosaic"] = [t.meta["mosaic"] for t in tables]
    out = vstack(tables, metadata_conflicts="silent")
    out.meta = meta
    return out
