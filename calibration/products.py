"""Ge calibration products: dark, illumination correction, nonlinearity, pmask, flux conversion.

One multi-extension FITS file per band in ``data/cal/`` holds a coherent
product set with an id (``CALID``) that every BCD records.  Extensions:

``DARK``      dark current in calibrated units (MIPS70/MIPS160) per pixel
``ILLUM``     illumination correction IC = sky flat / stim pattern, median 1
``ENL_BETA``  electronic-nonlinearity coefficient (see :mod:`.nonlinearity`)
``ENL_ZERO``  raw level of zero integrated signal, DN
``PMASK``     permanent bad-pixel mask (bits in :mod:`.bitmask`)
``READNOIS``  noise of one read, DN
``EXNOISE``   density of the excess (white current) noise, DN^2/s (optional: absent is 0)

The primary header carries ``BAND``, ``CALID``, ``FLUXCONV`` (MJy/sr per
MIPS unit), ``GAIN`` (e-/DN) and ``SATLEVEL`` (DN).  A product set derived
from calibration data also carries 1-sigma uncertainties: a ``<EXTNAME>_ERR``
extension per map and a ``<KEY>_ERR`` card per scalar (optional; absent means
"not known", read as 0), and ``ILLUM_ENL_ERR``, the part of ILLUM's error that
ENL_BETA's error causes (it cancels when BCDs are made with the same ENL_BETA,
so ``ILLUM_ERR`` leaves it out; against the truth the two add in quadrature).  Reprocessing sees only
these products, never the simulator's truth: a product set may be made wrong
on purpose to test what an error in it does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["CalProducts", "SiProducts", "default_products_path", "load_products", "write_products",
           "load_si_products", "write_si_products"]

_MAPS = ("dark", "illum", "enl_beta", "enl_zero", "pmask", "read_noise")
_OPTIONAL_MAPS = ("excess_noise",)
EXTNAMES = _EXTNAMES = {"dark": "DARK", "illum": "ILLUM", "enl_beta": "ENL_BETA", "enl_zero": "ENL_ZERO",
             "pmask": "PMASK", "read_noise": "READNOIS", "excess_noise": "EXNOISE"}


@dataclass
class CalProducts:
    """A Ge calibration-product set (maps are ``(NY, NX)`` arrays)."""

    band: int
    calid: str
    fluxconv: float          # MJy/sr per MIPS unit
    gain: float              # e-/DN
    saturation_dn: float     # DN
    dark: np.ndarray         # MIPS units
    illum: np.ndarray        # dimensionless, median 1 over good pixels
    enl_beta: np.ndarray     # dimensionless
    enl_zero: np.ndarray     # DN
    pmask: np.ndarray        # int
    read_noise: np.ndarray   # DN per read
    excess_noise: np.ndarray | float = 0.0   # DN^2/s, white current noise (calibration.instrument)
    meta: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)   # 1-sigma: "dark", "illum" maps, "fluxconv" scalar

    def error(self, name: str):
        """1-sigma uncertainty of product ``name`` (0 where the set gives none)."""
        return self.errors.get(name, 0.0)

    def check_shape(self, shape: tuple[int, int], where: str) -> None:
        """Raise ValueError if the maps do not have ``shape``."""
        if self.dark.shape != tuple(shape):
            raise ValueError(f"{where}: frame shape {tuple(shape)} does not match calibration "
                             f"products {self.calid} shape {self.dark.shape}")


def default_products_path(band: int) -> Path:
    """Path of the shipped product set of ``band``."""
    return Path(str(resources.files("data") / "cal" / f"mips{int(band)}_cal.fits"))


def load_products(band: int, path: str | os.PathLike | None = None) -> CalProducts:
    """Read a product set (the shipped one of ``band`` when ``path`` is None)."""
    path = Path(path) if path is not None else default_products_path(band)
    try:
        with fits.open(path) as hdul:
            hdr = hdul[0].header
            maps = {k: np.array(hdul[_EXTNAMES[k]].data) for k in _MAPS}
            maps.update({k: np.array(hdul[_EXTNAMES[k]].data, dtype=float)
                         for k in _OPTIONAL_MAPS if _EXTNAMES[k] in hdul})
            prod = CalProducts(band=int(hdr["BAND"]), calid=str(hdr["CALID"]),
                               fluxconv=float(hdr["FLUXCONV"]), gain=float(hdr["GAIN"]),
                               saturation_dn=float(hdr["SATLEVEL"]), **maps,
                               meta={"path": str(path)}, errors=_errors(hdul))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: calibration products not found") from None
    except KeyError as exc:
        raise ValueError(f"{path}: calibration products lack {exc}") from None
    except (OSError, TypeError, ValueError) as exc:     # not FITS, truncated, unreadable, bad card
        raise _unreadable(path, exc) from None
    if prod.band != int(band):
        raise ValueError(f"{path}: products are for band {prod.band}, not {band}")
    prod.pmask = prod.pmask.astype(np.int32)
    return prod


# error maps that are not a map's own: the part of ILLUM's error that ENL_BETA's error causes (reached
# through the stim flashes' linearisation); reprocessing with the same ENL_BETA cancels it, so it is
# kept apart from ILLUM_ERR (what _bunc needs); against the truth the two add in quadrature
_ERROR_ONLY = {"illum_enl": "ILLUM_ENL_ERR"}


def _errors(hdul) -> dict:
    """The optional uncertainties of a Ge product set: ``<EXTNAME>_ERR`` maps, ``FLUXCONV_ERR``."""
    errors = {k: np.array(hdul[f"{ext}_ERR"].data, dtype=float)
              for k, ext in _EXTNAMES.items() if f"{ext}_ERR" in hdul}
    errors.update({k: np.array(hdul[ext].data, dtype=float)
                   for k, ext in _ERROR_ONLY.items() if ext in hdul})
    if "FLUXCONV_ERR" in hdul[0].header:
        errors["fluxconv"] = float(hdul[0].header["FLUXCONV_ERR"])
    return errors


def _write_mef(path: str | os.PathLike, hdr: fits.Header, extensions: dict, provenance: str) -> None:
    """Primary header ``hdr`` (+ provenance as HISTORY) and one image extension per item, atomically."""
    for line in provenance.splitlines():
        hdr.add_history(line)
    hdus = [fits.PrimaryHDU(header=hdr)]
    hdus += [fits.ImageHDU(data, name=name) for name, data in extensions.items()]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def _as_stored(name: str, data) -> np.ndarray:
    data = np.asarray(data)
    if name == "pmask":
        return data.astype(np.int32)
    return data.astype(np.float64 if data.ndim == 1 else np.float32)


def write_products(prod: CalProducts, path: str | os.PathLike, *, provenance: str = "") -> None:
    """Write ``prod`` to ``path`` (atomically)."""
    hdr = fits.Header()
    hdr["BAND"] = (prod.band, "[um] MIPS band")
    hdr["CALID"] = (prod.calid, "calibration product set id")
    hdr["FLUXCONV"] = (prod.fluxconv, "[MJy/sr per MIPS unit] flux conversion")
    hdr["GAIN"] = (prod.gain, "[e-/DN] conversion gain")
    hdr["SATLEVEL"] = (prod.saturation_dn, "[DN] raw saturation level")
    if "fluxconv" in prod.errors:
        hdr["HIERARCH FLUXCONV_ERR"] = (prod.errors["fluxconv"], "[MJy/sr per MIPS unit] 1 sigma")
    maps = {_EXTNAMES[k]: _as_stored(k, getattr(prod, k)) for k in _MAPS}
    maps.update({_EXTNAMES[k]: _as_stored(k, getattr(prod, k)) for k in _OPTIONAL_MAPS
                 if np.ndim(getattr(prod, k)) == 2})
    maps.update({f"{_EXTNAMES[k]}_ERR": _as_stored(k, v) for k, v in prod.errors.items()
                 if k in _EXTNAMES})
    maps.update({ext: _as_stored(k, prod.errors[k]) for k, ext in _ERROR_ONLY.items()
                 if k in prod.errors})
    _write_mef(path, hdr, maps, provenance)


@dataclass
class SiProducts:
    """The 24 um calibration-product set.

    ``dark`` is a (NDARK, NY, NX) cube in DN/s, plane ``min(DCENUM, NDARK-1)``
    applying (the readout-4 jailbar depends on DCENUM); ``flats`` (NCSM, NY, NX)
    are gain flat x pick-off-mirror spot map at the scan-mirror positions
    ``csm_arcsec``; ``read2`` the read-2 deficit in DN; ``first_frame`` the
    response factors of DCENUM 0, 1, ... (1 after).
    """

    calid: str
    fluxconv: float            # MJy/sr per DN/s
    gain: float                # e-/DN
    droop: float               # array droop coefficient
    row_droop: float           # row droop coefficient
    first_frame: np.ndarray
    csm_arcsec: np.ndarray
    dark: np.ndarray
    flats: np.ndarray
    read2: np.ndarray
    read_noise: np.ndarray
    pmask: np.ndarray
    saturation_dn: float = 36000.0
    meta: dict = field(default_factory=dict)
    # 1-sigma: maps by attribute name ("dark", "flats", "read2", "read_noise", "first_frame");
    # scalars "droop", "row_droop" and the read-2 law "read2_amplitude", "read2_scale_rows"
    errors: dict = field(default_factory=dict)

    def error(self, name: str):
        """1-sigma uncertainty of product ``name`` (0 where the set gives none)."""
        return self.errors.get(name, 0.0)

    def flat_for(self, csm: float, tolerance_arcsec: float = 1.0):
        """(flat, exact): the plane nearest scan-mirror position ``csm``, and whether it is within tolerance."""
        i = int(np.argmin(np.abs(self.csm_arcsec - csm)))
        return self.flats[i], bool(abs(self.csm_arcsec[i] - csm) <= tolerance_arcsec)

    def dark_for(self, dcenum: int) -> np.ndarray:
        return self.dark[min(int(dcenum), self.dark.shape[0] - 1)]


_SI_MAPS = {"dark": "DARK", "flats": "FLATS", "read2": "READ2", "read_noise": "READNOIS",
            "pmask": "PMASK", "csm_arcsec": "CSMPOS", "first_frame": "FIRSTFRM"}
# optional scalars of a derived 24 um set (meta and errors keys -> cards; DROOP, RDROOP are fields)
_SI_SCALARS = {"fluxconv": "FLUXCONV", "droop": "DROOP", "row_droop": "RDROOP", "read2_amplitude": "READ2AMP",
               "read2_scale_rows": "READ2SCL"}


def write_si_products(prod: SiProducts, path: str | os.PathLike, *, provenance: str = "") -> None:
    """Write a 24 um product set (atomically)."""
    hdr = fits.Header()
    hdr["BAND"] = (24, "[um] MIPS band")
    hdr["CALID"] = (prod.calid, "calibration product set id")
    hdr["FLUXCONV"] = (prod.fluxconv, "[MJy/sr per DN/s] flux conversion")
    hdr["GAIN"] = (prod.gain, "[e-/DN] conversion gain")
    hdr["DROOP"] = (prod.droop, "array droop coefficient")
    hdr["RDROOP"] = (prod.row_droop, "row droop coefficient")
    hdr["SATLEVEL"] = (prod.saturation_dn, "[DN] full well above the reset level")
    for k in ("read2_amplitude", "read2_scale_rows"):
        if k in prod.meta:
            hdr[_SI_SCALARS[k]] = (float(prod.meta[k]), "read-2 law a(y) = READ2AMP exp(-y/READ2SCL)")
    for k, key in _SI_SCALARS.items():
        if k in prod.errors:
            hdr[f"HIERARCH {key}_ERR"] = (float(prod.errors[k]), "1 sigma")
    maps = {ext: _as_stored(k, getattr(prod, k)) for k, ext in _SI_MAPS.items()}
    maps.update({f"{_SI_MAPS[k]}_ERR": _as_stored(k, v) for k, v in prod.errors.items()
                 if k in _SI_MAPS})
    _write_mef(path, hdr, maps, provenance)


def _si_extras(hdul) -> tuple[dict, dict]:
    """(meta, errors) of a 24 um set: read-2 law cards, ``<EXTNAME>_ERR`` maps, ``<KEY>_ERR`` cards."""
    h = hdul[0].header
    meta = {k: float(h[key]) for k, key in _SI_SCALARS.items()
            if k.startswith("read2") and key in h}
    errors = {k: np.array(hdul[f"{ext}_ERR"].data, dtype=float)
              for k, ext in _SI_MAPS.items() if f"{ext}_ERR" in hdul}
    errors.update({k: float(h[f"{key}_ERR"]) for k, key in _SI_SCALARS.items() if f"{key}_ERR" in h})
    return meta, errors


def load_si_products(path: str | os.PathLike | None = None) -> SiProducts:
    """Read a 24 um product set (the shipped one when ``path`` is None)."""
    path = Path(path) if path is not None else default_products_path(24)
    try:
        with fits.open(path) as hdul:
            h = hdul[0].header
            maps = {attr: np.array(hdul[ext].data) for attr, ext in _SI_MAPS.items()}
            meta, errors = _si_extras(hdul)
            return SiProducts(calid=str(h["CALID"]), fluxconv=float(h["FLUXCONV"]),
                              gain=float(h["GAIN"]), droop=float(h["DROOP"]),
                              row_droop=float(h["RDROOP"]), saturation_dn=float(h["SATLEVEL"]),
                              meta={"path": str(path), **meta}, errors=errors, **maps)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: calibration products not found") from None
    except KeyError as exc:
        raise ValueError(f"{path}: 24 um calibration products lack {exc}") from None
    except (OSError, TypeError, ValueError) as exc:     # not FITS, truncated, unreadable, bad card
        raise _unreadable(path, exc) from None


def _unreadable(path, exc: BaseException) -> ValueError:
    """A one-line error naming the product file that could not be read, and why."""
    reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ValueError(f"{path}: not a readable FITS calibration product set ({reason})")
