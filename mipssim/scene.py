"""The sky: point sources (Jy), smooth extended emission and background (MJy/sr).

Backgrounds are smooth on the scale of a pixel, so they are evaluated at pixel
centres; the extended blob is a Gaussian whose width already includes the
PSF (its FWHM is added in quadrature), which is exact for a Gaussian PSF and a
close approximation for the real one on a blob several PSFs wide.  Point
sources go through the real PRF (:mod:`.psf`).  Fluxes at other bands follow a
blackbody of the source's temperature (colour corrections ignored: the
catalogue records what was put in).

The 160 um near-IR leak (:mod:`calibration.leak`): a hot source adds a ghost
whose flux follows its blackbody's near-IR flux (a 100 K source leaks nothing).
It is put at the source's position with the 160 um PRF (its offset and shape
are UNCONFIRMED: at 16" pixels a near-IR image is unresolved either way).  The
catalogue records it (``leak_jy_160``); ``include_leak`` switches it.

One sky for several arrays (``scene_band``, the multi-array AOR of ``mips simulate
--band all``): the scene is drawn exactly as for the array ``scene_band`` (positions
over its scan-map footprint; the same generator draws), so every array of the AOR
gets the same source table and cirrus pattern, and only renders it at its own band.
Each source's drawn flux is then its flux at its brightest MIPS band, not at
``scene_band``: blackbody colours between 24 and 160 um span up to ~10^4 (a 10 K
source drawn at 2 Jy at 70 um would be ~5000 Jy at 160 um), so this keeps every
band's sources within ``[flux_min_jy, flux_max_jy]``.  The diffuse levels (MJy/sr)
stay each band's own (``zodi_mjysr``... differ by band).  Without ``scene_band``
nothing changes: fluxes are drawn at ``band``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from astropy.wcs import WCS

from calibration.instrument import BANDS
from calibration.leak import leak_factor

from .psf import PSF_TEMPERATURES_K, load_prf
from .scan import map_footprint, offsets_to_sky

__all__ = ["Scene", "make_scene"]

_LAMBDA_UM = {24: 23.68, 70: 71.42, 160: 155.9}
_FWHM_ARCSEC = {24: 5.9, 70: 18.9, 160: 43.2}   # 24: measured [HB 4.3.4 /50]; 70, 160: model [CNT]


def _bb_nu(lam_um, t_k):
    """Planck B_nu up to a constant, at wavelength ``lam_um``."""
    x = 14387.77 / (lam_um * t_k)
    return 1.0 / (lam_um ** 3 * np.expm1(x))


@dataclass
class Scene:
    """Sources and diffuse emission around a target (fluxes at the simulated band)."""

    band: int
    center: SkyCoord
    sources: QTable              # ra, dec [deg], temperature_k, flux_jy_24/70/160
    zodi_mjysr: float
    cirrus_mjysr: float
    cirrus_contrast: float
    cirrus_phases: np.ndarray    # (3, 3): wave vectors and phases of the cirrus pattern
    blob_peak_mjysr: float
    blob_fwhm_arcsec: float
    include_sources: bool = True
    include_background: bool = True
    include_leak: bool = True

    def diffuse(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Diffuse surface brightness at (ra, dec), MJy/sr."""
        ra0, dec0, cos_dec0 = self._prepared().center
        dx = (ra_deg - ra0) * cos_dec0 * 3600.0
        dy = (dec_deg - dec0) * 3600.0
        total = np.zeros(np.shape(ra_deg))
        if self.include_background:
            wave = sum(np.sin(kx * dx + ky * dy + ph) for kx, ky, ph in self.cirrus_phases)
            total += self.zodi_mjysr + self.cirrus_mjysr * (1.0 + self.cirrus_contrast * wave / 3.0)
        if self.include_sources and self.blob_peak_mjysr > 0:
            fwhm = np.hypot(self.blob_fwhm_arcsec, _FWHM_ARCSEC[self.band])
            sig2 = (fwhm / 2.3548) ** 2
            amp = self.blob_peak_mjysr * (self.blob_fwhm_arcsec / fwhm) ** 2  # flux-conserving
            total += amp * np.exp(-0.5 * ((dx - 40.0) ** 2 + (dy + 30.0) ** 2) / sig2)
        return total

    def render(self, wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
        """Mean surface brightness seen by each pixel of a frame with ``wcs``, MJy/sr."""
        spec = BANDS[self.band]
        prep = self._prepared()
        yy, xx = _pixel_grid(tuple(shape))
        ra, dec = wcs.all_pix2world(xx, yy, 0)
        image = self.diffuse(ra, dec)
        if self.include_sources and len(prep.flux):
            xs, ys = wcs.all_world2pix(prep.ra, prep.dec, 0)
            for k in range(len(prep.flux)):
                prf = prep.prfs[k]
                if not (-prf.radius_pix < xs[k] < shape[1] + prf.radius_pix
                        and -prf.radius_pix < ys[k] < shape[0] + prf.radius_pix):
                    continue
                r = int(np.ceil(prf.radius_pix)) + 1               # only the PSF's footprint
                y0, y1 = max(int(ys[k]) - r, 0), min(int(ys[k]) + r + 1, shape[0])
                x0, x1 = max(int(xs[k]) - r, 0), min(int(xs[k]) + r + 1, shape[1])
                frac = prf(yy[y0:y1, x0:x1] - ys[k], xx[y0:y1, x0:x1] - xs[k])
                image[y0:y1, x0:x1] += prep.flux[k] * frac / spec.pixel_sr / 1e6   # Jy -> MJy/sr
        return image

    def _prepared(self) -> _Prepared:
        """Plain arrays of the centre and the sources, worked out once per (centre, catalogue).

        Why: a scan map renders ~1600 frames of one scene, and reading a SkyCoord's angles or a
        QTable's columns costs more than the arithmetic on a 32x32 frame.  Keyed by the
        identity of ``center`` and ``sources`` (replacing either recomputes it), holding them
        so that an identity is not reused while cached.
        """
        key = (self.center, self.sources, self.band, self.include_leak)
        cached = self.__dict__.get("_prep")
        if cached is not None and all(a is b for a, b in zip(cached[0], key)):
            return cached[1]
        spec = BANDS[self.band]
        src = self.sources
        flux = src[f"flux_jy_{self.band}"].to_value(u.Jy) if len(src) else np.zeros(0)
        if len(src) and self.band == 160 and self.include_leak:
            flux = flux + src["leak_jy_160"].to_value(u.Jy)
        prep = _Prepared(
            center=(self.center.ra.deg, self.center.dec.deg, np.cos(self.center.dec.rad)),
            ra=src["ra"].to_value(u.deg) if len(src) else np.zeros(0),
            dec=src["dec"].to_value(u.deg) if len(src) else np.zeros(0),
            flux=flux,
            prfs=[load_prf(self.band, float(src["temperature_k"][k]), spec.pixel_arcsec)
                  for k in range(len(src))])
        self.__dict__["_prep"] = (key, prep)
        return prep


@dataclass(frozen=True)
class _Prepared:
    """What :meth:`Scene.render` needs of a scene, as plain numbers (see ``Scene._prepared``)."""

    center: tuple[float, float, float]   # ra, dec (deg) and cos(dec) of the scene's centre
    ra: np.ndarray                       # sources, deg
    dec: np.ndarray
    flux: np.ndarray                     # Jy at the band (plus the 160 um leak when included)
    prfs: list                           # each source's PRF (by its temperature)


@lru_cache(maxsize=8)
def _pixel_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index grids of a frame (read-only: shared by every render)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _source_positions(cfg, center: SkyCoord, rng: np.random.Generator, n: int) -> SkyCoord:
    """Positions of ``n`` sources: within ~2' of the target, or over a scan map's footprint.

    Photometry: uniform in a disc of 2' radius (the good half of the 70 um
    array is 2.6' wide).  Scan map: uniform over the rectangle the arrays see
    (:func:`mipssim.scan.map_footprint` plus half the array), in the array's
    frame.  Both use the same two draws per source, so the rest of the scene
    does not depend on the mode.
    """
    u1 = rng.uniform(0, 1, n)
    theta = rng.uniform(0, 2 * np.pi, n)
    if cfg.mode == "scan":
        half_along, half_cross = map_footprint(cfg)
        ny, nx = BANDS[cfg.band].shape
        pix = BANDS[cfg.band].pixel_arcsec
        along = (2 * u1 - 1) * (half_along + 0.5 * ny * pix)
        cross = (theta / np.pi - 1) * (half_cross + 0.5 * nx * pix)
        return offsets_to_sky(cfg, along, cross)
    r = 120.0 * np.sqrt(u1)
    return center.spherical_offsets_by(r * np.cos(theta) * u.arcsec, r * np.sin(theta) * u.arcsec)


def make_scene(cfg, rng: np.random.Generator) -> Scene:
    """Draw a scene from the configuration ``cfg`` (a :class:`~mipssim.config.SimConfig`).

    With ``cfg.scene_band`` the sky shared by the arrays of an AOR (module notes): the
    same table for any ``cfg.band``, rendered at ``cfg.band``.
    """
    shared = cfg.scene_band is not None
    center = SkyCoord(cfg.ra_deg * u.deg, cfg.dec_deg * u.deg)
    n = cfg.n_sources
    sky_cfg = dataclasses.replace(cfg, band=cfg.scene_band) if shared else cfg
    coords = _source_positions(sky_cfg, center, rng, n)
    flux = np.exp(rng.uniform(np.log(cfg.flux_min_jy), np.log(cfg.flux_max_jy), n))
    if n:
        flux[0] = cfg.flux_max_jy
        coords = SkyCoord(np.r_[center.ra.deg, coords.ra.deg[1:]] * u.deg,
                          np.r_[center.dec.deg, coords.dec.deg[1:]] * u.deg)
    temps = rng.choice(np.array(PSF_TEMPERATURES_K, dtype=float), n)
    if cfg.source_temperature_k:        # drawn anyway: the rest of the scene is unchanged
        temps = np.full(n, float(cfg.source_temperature_k))
    if cfg.bright_source_jy:            # drawn without the generator: the rest of the scene is unchanged
        extra = center.spherical_offsets_by(40 * u.arcsec, 40 * u.arcsec)
        coords = SkyCoord(np.r_[coords.ra.deg if n else [], extra.ra.deg] * u.deg,
                          np.r_[coords.dec.deg if n else [], extra.dec.deg] * u.deg)
        flux = np.r_[flux, cfg.bright_source_jy]
        temps = np.r_[temps, 3000.0]
        n += 1
    table = QTable()
    table["ra"] = coords.ra.to(u.deg) if n else [] * u.deg
    table["dec"] = coords.dec.to(u.deg) if n else [] * u.deg
    table["temperature_k"] = temps
    if shared:      # the drawn flux is that of the brightest band (module notes)
        ref = np.max([_bb_nu(lam, temps) for lam in _LAMBDA_UM.values()], axis=0) if n else temps
    else:
        ref = _bb_nu(_LAMBDA_UM[cfg.band], temps)
    for b, lam in _LAMBDA_UM.items():
        table[f"flux_jy_{b}"] = flux * _bb_nu(lam, temps) / ref * u.Jy
    table["leak_jy_160"] = table["flux_jy_160"] * leak_factor(temps)
    k = rng.uniform(0.005, 0.02, (3, 2)) * rng.choice([-1, 1], (3, 2))   # rad/arcsec: 5-20 arcmin waves
    phases = np.column_stack([k, rng.uniform(0, 2 * np.pi, 3)])
    return Scene(band=cfg.band, center=center, sources=table, zodi_mjysr=cfg.zodi_mjysr,
                 cirrus_mjysr=cfg.cirrus_mjysr, cirrus_contrast=cfg.cirrus_contrast,
                 cirrus_phases=phases, blob_peak_mjysr=cfg.blob_peak_mjysr,
                 blob_fwhm_arcsec=cfg.blob_fwhm_arcsec, include_sources=cfg.include_sources,
                 include_background=cfg.include_background, include_leak=cfg.include_leak)

