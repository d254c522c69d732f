"""Posterior photometry of faint or blended point sources: flux, position and local background
sampled with emcee, reported as credible intervals.

The model
---------
Around a group of K sources (those whose cutouts would overlap are fitted together), every usable
pixel of a square cutout (row ``i`` = y, column ``j`` = x, 0-based, pixel centres on integers as in
photutils) is predicted as::

    m_ij = sum_k (S_k / c) P(i - y_k, j - x_k) + b0 [+ b1 (j - xc) + b2 (i - yc)]

``P`` is the PRF of :func:`calibration.psf.load_prf` for the band, the source temperature and the
image's pixel size: the fraction of a point source's flux that falls in a pixel, the same function the
simulator renders sources with.  ``S_k`` is the flux in uJy and ``c`` the flux of one pixel at unit
surface brightness (:func:`flux_per_pixel_unit`: for MJy/sr, the pixel solid angle in sr x 1e12
uJy; 141.08 uJy for 2.45" pixels), so the flux is the PRF model summed over all pixels, in image
units, times the pixel solid angle.  ``b`` is the local background in image units, a constant or
(``background="plane"``) a plane about the cutout's centre ``(xc, yc)``.  The likelihood is Gaussian
and independent per pixel with the error map's sigma: ``ln L = -1/2 sum ((d - m) / sigma)^2``.

The priors, and why
-------------------
- Flux: flat, negative values allowed (default).  A faint source's flux is then estimated the way
  a linear fit estimates it, without bias, and its intervals cover the truth at their nominal
  rate for any true flux.  ``positive_flux=True`` restricts ``S >= 0``: physically true, but it
  truncates the posterior of a source at S/N <~ 2, whose median is then biased high and whose
  central intervals exclude fluxes near zero (for a true flux of zero the 95 % interval never
  covers it).  Use it only when the posterior itself, not a catalogue interval, is wanted.
- Position: flat in a box of +-``position_box_pix`` (default 1 pixel) around the start position,
  in x and y.  At S/N ~ 3 the data alone barely localise a source (sigma_x ~ FWHM / S/N), and an
  unbounded position lets a walker wander onto a noise peak or onto a neighbour (label switching
  in a blend); the box says what the detection step knew.  Boxes of sources closer than twice its
  half-width overlap and can swap labels.
- Background: flat (improper) in level and slopes; the data fix them (the cutout reaches ~2 FWHM
  beyond the sources).

Walkers start in a ball around the weighted linear least-squares fit at the start positions (its
covariance for fluxes and background, the Fisher matrix for positions, clipped to a fifth of the
box), and emcee's ensemble sampler (:func:`reprocess.calib.posterior.sample_posterior`, shared with
the FLUXCONV posterior; seeded, so the same seed gives identical numbers) runs a fixed number of
steps; the first ``burn`` are discarded.  Its proposals are differential-evolution moves (ter Braak
2006, emcee's ``DEMove``): on these nearly Gaussian posteriors their autocorrelation times are ~3x
shorter than the default stretch move's (about 13 against 40 steps for one source, 25 against 63
for a pair, 32 walkers), and grow as 4-6 steps per parameter; so by default the chain keeps
``KEPT_STEPS_PER_PARAMETER`` (320) steps per parameter after a burn-in of 60 per parameter, ~50-80
autocorrelation times.  The autocorrelation time (emcee's estimate, ``quiet=True``) is reported with
a ``short_chain`` flag when the kept chain is shorter than 50 of them.

What the intervals mean
-----------------------
Each parameter gets the median of its marginal posterior and the central 68 % (16-84 %) and 95 %
(2.5-97.5 %) credible intervals: given these data, this model (the PRF exact, the noise Gaussian
with the quoted sigma, every source in the cutout listed) and these priors, the truth lies inside
with that probability.  Their frequentist coverage is nominal when the priors describe how truths
are spread: exactly so for fluxes and background (linear parameters under flat priors) at any
true flux, and for positions when the truth is anywhere in the box around the start position.
Fits whose chi-square says the model does not describe the cutout (``p_value``) should not be
trusted.  They do not contain calibration errors (FLUXCONV, the PRF's mismatch with the real PSF, aperture
and colour corrections), correlated noise (a resampled mosaic's pixels are correlated: the
intervals come out too narrow there) nor sources missing from ``positions``.

When to use this rather than the linear fit
-------------------------------------------
A weighted linear fit of fluxes at fixed positions (PRF fitting) is exact, and ~10^5 times faster,
when the positions are known: bright sources (S/N >~ 20) or positions from another band.  Its
errors ignore the position's error, which at S/N <~ 10 moves the flux by an amount comparable to
its quoted error, and in a blend the two fluxes trade off with the separation.  This module
propagates the position errors into the flux intervals, gives non-Gaussian intervals when the
posterior is not Gaussian, and costs ~1-5 s per group.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import emcee
import numpy as np
from astropy import units as u
from astropy.table import QTable
from photutils.psf import SourceGrouper
from scipy import stats

from calibration.psf import CALIBRATOR_TEMPERATURE_K, PRF, load_prf
from reprocess.calib.posterior import Posterior, sample_posterior

__all__ = ["KEPT_STEPS_PER_PARAMETER", "QUANTILES", "flux_per_pixel_unit", "posterior_photometry"]

log = logging.getLogger(__name__)

# reported quantiles: column suffix -> fraction (central 95 % and 68 % intervals)
QUANTILES = {"q2p5": 0.025, "q16": 0.16, "q84": 0.84, "q97p5": 0.975}
KEPT_STEPS_PER_PARAMETER = 320   # default chain length after burn-in (tau ~ 4-6 steps per parameter)
BURN_STEPS_PER_PARAMETER = 60
_BACKGROUND_TERMS = {"constant": ("bkg",), "plane": ("bkg", "bkg_dx", "bkg_dy")}


def flux_per_pixel_unit(pixel_arcsec: float, image_unit: u.UnitBase | str = "MJy / sr") -> float:
    """Flux in uJy of one pixel at unit surface brightness: uJy per (image unit x pixel).

    For MJy/sr: 1 MJy/sr x the pixel's solid angle in sr x 1e12 uJy/MJy (141.08 for 2.45" pixels,
    376.07 for 4.0", 1504.27 for 8.0").  A point source's flux is the sum over all pixels of its
    model in image units times this.
    """
    return float((1.0 * u.Unit(image_unit) * (pixel_arcsec * u.arcsec) ** 2).to_value(u.uJy))


@lru_cache(maxsize=32)
def _fwhm_pix(prf: PRF) -> float:
    """Full width at half maximum of the PRF's profile through its peak along x, pixels."""
    dx = np.linspace(-prf.radius_pix, prf.radius_pix, 4001)
    profile = prf(np.zeros_like(dx), dx)
    above = dx[profile >= 0.5 * profile.max()]
    return float(above.max() - above.min())


@dataclass(frozen=True)
class _Cutout:
    """The usable pixels of a square cutout as flat arrays, and its centre."""

    data: np.ndarray     # image units
    sigma: np.ndarray    # image units, > 0
    y: np.ndarray        # row of each pixel (float)
    x: np.ndarray        # column of each pixel (float)
    yc: float            # centre of the square, pixels
    xc: float


def _cutout(image: np.ndarray, error: np.ndarray, usable: np.ndarray, xs: np.ndarray, ys: np.ndarray,
            radius: int, ndim: int) -> _Cutout:
    """The pixels within ``radius`` (a square) of the sources at (xs, ys), clipped to the image."""
    ny, nx = image.shape
    x0, x1 = max(int(np.floor(xs.min())) - radius, 0), min(int(np.ceil(xs.max())) + radius + 1, nx)
    y0, y1 = max(int(np.floor(ys.min())) - radius, 0), min(int(np.ceil(ys.max())) + radius + 1, ny)
    where = f"cutout x {x0}:{x1}, y {y0}:{y1} around the source(s) at " + ", ".join(
        f"({x:.2f}, {y:.2f})" for x, y in zip(xs, ys))
    use = usable[y0:y1, x0:x1]
    sig = error[y0:y1, x0:x1]
    bad = use & ~(np.isfinite(sig) & (sig > 0))
    if bad.any():
        raise ValueError(f"error map: {int(bad.sum())} zero, negative or NaN values at usable pixels of "
                         f"the {where}; mask them or fix the error map")
    if use.sum() < 2 * ndim:
        raise ValueError(f"{int(use.sum())} usable pixels in the {where}: too few for {ndim} parameters")
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return _Cutout(data=image[y0:y1, x0:x1][use].astype(float), sigma=sig[use].astype(float),
                   y=yy[use].astype(float), x=xx[use].astype(float),
                   yc=0.5 * (y0 + y1 - 1), xc=0.5 * (x0 + x1 - 1))


class _GroupModel:
    """The model of one group's cutout and its log posterior, vectorised over walkers.

    Parameters are ordered ``flux_k, x_k, y_k`` for each source, then the background terms; fluxes
    in uJy, positions in pixels, the background in image units (per pixel for the slopes).
    """

    def __init__(self, prf: PRF, cut: _Cutout, xs: np.ndarray, ys: np.ndarray, *, c_ujy: float,
                 background: str, box: float, positive_flux: bool):
        self.prf, self.cut, self.xs, self.ys = prf, cut, xs, ys
        self.c_ujy, self.box, self.positive_flux = c_ujy, box, positive_flux
        self.n_src = len(xs)
        self.n_bkg = len(_BACKGROUND_TERMS[background])

    def background_columns(self) -> np.ndarray:
        """(npix, n_bkg): the background's design columns."""
        cut = self.cut
        cols = [np.ones_like(cut.x), cut.x - cut.xc, cut.y - cut.yc]
        return np.stack(cols[:self.n_bkg], axis=1)

    def prf_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(..., npix) PRF fractions of sources at x, y (arrays of one shape)."""
        x, y = np.asarray(x, float)[..., None], np.asarray(y, float)[..., None]
        return self.prf(self.cut.y - y, self.cut.x - x)

    def model(self, p: np.ndarray) -> np.ndarray:
        """(W, npix) model in image units of the (W, ndim) parameter vectors ``p``."""
        m = self.background_columns() @ p[:, 3 * self.n_src:].T
        m = m.T.copy()
        for k in range(self.n_src):
            flux, x, y = p[:, 3 * k], p[:, 3 * k + 1], p[:, 3 * k + 2]
            m += (flux / self.c_ujy)[:, None] * self.prf_at(x, y)
        return m

    def in_prior(self, p: np.ndarray) -> np.ndarray:
        """(W,) True where the positions are inside their boxes (and fluxes >= 0 if required)."""
        dx = np.abs(p[:, 1:3 * self.n_src:3] - self.xs)
        dy = np.abs(p[:, 2:3 * self.n_src:3] - self.ys)
        ok = np.all((dx <= self.box) & (dy <= self.box), axis=1)
        if self.positive_flux:
            ok &= np.all(p[:, 0:3 * self.n_src:3] >= 0, axis=1)
        return ok

    def log_prob(self, p: np.ndarray) -> np.ndarray:
        """(W,) log posterior (up to a constant) of the (W, ndim) parameter vectors ``p``."""
        chi = (self.cut.data - self.model(p)) / self.cut.sigma
        return np.where(self.in_prior(p), -0.5 * np.einsum("wi,wi->w", chi, chi), -np.inf)

    def linear_start(self) -> tuple[np.ndarray, np.ndarray]:
        """Start vector and walker spread: the weighted least-squares fluxes and background at the
        start positions, with their covariance; position spreads from the Fisher matrix there."""
        cut, n = self.cut, self.n_src
        w = 1.0 / cut.sigma
        design = np.column_stack([self.prf_at(x, y) / self.c_ujy for x, y in zip(self.xs, self.ys)]
                                 + [self.background_columns()])
        coef, *_ = np.linalg.lstsq(design * w[:, None], cut.data * w, rcond=None)
        start = np.empty(3 * n + self.n_bkg)
        start[0:3 * n:3], start[1:3 * n:3], start[2:3 * n:3] = coef[:n], self.xs, self.ys
        start[3 * n:] = coef[n:]
        jac = np.empty((cut.data.size, start.size))
        eps = 1e-3
        for i in range(start.size):
            step = np.zeros(start.size)
            step[i] = eps
            jac[:, i] = (self.model((start + step)[None])[0] - self.model((start - step)[None])[0]) / (2 * eps)
        cov = np.linalg.pinv((jac * w[:, None]).T @ (jac * w[:, None]))
        lin = np.r_[np.arange(0, 3 * n, 3), np.arange(3 * n, start.size)]
        cov_lin = np.linalg.pinv((design * w[:, None]).T @ (design * w[:, None]))
        scale = np.sqrt(np.abs(np.diag(cov)))
        scale[lin] = np.sqrt(np.diag(cov_lin))
        pos = np.r_[np.arange(1, 3 * n, 3), np.arange(2, 3 * n, 3)]
        scale[pos] = np.clip(np.nan_to_num(scale[pos], nan=self.box), 1e-3, self.box / 5)
        return start, scale


def _group_seed(seed: int, group: int) -> int:
    """A group's own seed (independent streams per group; the same for every run)."""
    return int(np.random.SeedSequence([int(seed), int(group)]).generate_state(1)[0])


def _names(ids: Sequence[int], background: str) -> list[str]:
    return [f"{q}_{i}" for i in ids for q in ("flux", "x", "y")] + list(_BACKGROUND_TERMS[background])


def _check_inputs(image, error, mask, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask and the start positions' x and y, or a ValueError saying which input is wrong."""
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D array, got shape {image.shape}")
    if error.shape != image.shape:
        raise ValueError(f"error map: shape {error.shape} differs from the image's {image.shape}")
    if mask is None:
        mask = np.zeros(image.shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape:
        raise ValueError(f"mask: shape {mask.shape} differs from the image's {image.shape}")
    pos = np.atleast_2d(np.asarray(positions, dtype=float))
    if pos.ndim != 2 or pos.shape[1] != 2 or not len(pos) or not np.all(np.isfinite(pos)):
        raise ValueError(f"positions: expected finite (x, y) pairs, got {np.asarray(positions)!r}")
    ny, nx = image.shape
    off = (pos[:, 0] < -0.5) | (pos[:, 0] > nx - 0.5) | (pos[:, 1] < -0.5) | (pos[:, 1] > ny - 0.5)
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise ValueError(f"source {k} at (x, y) = ({pos[k, 0]:.2f}, {pos[k, 1]:.2f}) is off the image "
                         f"({nx} x {ny} pixels): its cutout would be empty")
    return mask, pos[:, 0].copy(), pos[:, 1].copy()


def posterior_photometry(image: np.ndarray | u.Quantity, error: np.ndarray | u.Quantity, *, band: int,
                         positions: Sequence[tuple[float, float]] | np.ndarray, pixel_arcsec: float,
                         mask: np.ndarray | None = None, temperature_k: float | None = None,
                         background: str = "constant", positive_flux: bool = False,
                         position_box_pix: float = 1.0, cutout_radius_pix: int | None = None,
                         nwalkers: int | None = None, nsteps: int | None = None, burn: int | None = None,
                         seed: int,
                         chains: str | os.PathLike | None = None, overwrite: bool = False) -> QTable:
    """Posterior flux, position and local background of point sources, with credible intervals.

    Sources whose cutouts overlap are fitted together (one chain per group, grouped with photutils'
    :class:`~photutils.psf.SourceGrouper`); see the module docstring for the model and the priors.

    Parameters
    ----------
    image : (NY, NX) array or Quantity
        Surface brightness; a plain array is taken to be MJy/sr.  NaN pixels are left out.
    error : (NY, NX) array or Quantity
        1-sigma uncertainty of each pixel (a plain array: in the image's unit).  Zero, negative or NaN values at usable
        pixels of a cutout are refused (ValueError): mask such pixels.
    band : int
        24, 70 or 160: selects the PRF.
    positions : (N, 2) array-like
        Start positions (x, y), 0-based pixels (photutils' convention); each position's prior is a
        box of +-``position_box_pix`` around it.
    pixel_arcsec : float
        The image's pixel size, arcsec (the PRF's sampling and the flux conversion).
    mask : (NY, NX) bool, optional
        True where a pixel must not be used.
    temperature_k : float, optional
        Source blackbody temperature choosing the PSF (default: the band's calibrator's).
    background : {"constant", "plane"}
        Local background model.
    positive_flux : bool
        Restrict fluxes to >= 0 (biases faint sources' intervals; see the module docstring).
    position_box_pix : float
        Half-width of the flat position prior, pixels.
    cutout_radius_pix : int, optional
        Half-size of the square cutout around each source (default: twice the PRF's FWHM).
    nwalkers, nsteps, burn : int, optional
        Walkers (default ``max(32, 4 ndim)``), steps per walker and steps discarded as burn-in
        (defaults for ``ndim`` parameters: burn ``60 ndim``, nsteps burn + ``320 ndim``; with nsteps
        given, burn defaults to a quarter of it).
    seed : int
        Seeds every group's chain (bit-identical reruns).
    chains : path, optional
        HDF5 file for the chains (emcee's HDFBackend, one group ``group_<id>`` per source group),
        written under a temporary name and renamed when complete.
    overwrite : bool
        Replace an existing ``chains`` file.

    Returns
    -------
    QTable
        One row per source, in the order of ``positions``: ``id``, ``group_id``, ``x_init``,
        ``y_init``; ``flux_init`` and ``flux_init_err`` (the linear fit at the start positions,
        uJy); for ``flux`` (uJy), ``x`` and ``y`` (pixels) and the group's background terms
        (``bkg`` in image units, ``bkg_dx``/``bkg_dy`` per pixel): the posterior median, ``_err``
        (half the 16-84 % interval) and the quantiles ``_q2p5``, ``_q16``, ``_q84``, ``_q97p5``;
        ``npix`` (pixels fitted); ``chi2`` of the model at the posterior medians, ``dof`` (npix minus
        parameters) and its ``p_value`` (a small one, say < 1e-3, says the model does not describe the
        cutout: an unflagged cosmic ray, an unlisted source, a wrong PRF; the intervals then mean
        little); ``acceptance`` (mean acceptance fraction), ``tau`` (longest
        autocorrelation time, steps), ``n_tau`` (kept steps / tau), ``n_eff`` (walkers x n_tau: the
        effective number of independent samples), ``short_chain`` (n_tau < 50),
        ``at_box_edge`` (the 95 % interval of x or y reaches within 5 % of the box's edge: the
        position prior, not the data, bounds it).  ``meta`` records the settings.
    """
    unit = image.unit if isinstance(image, u.Quantity) else u.MJy / u.sr
    image = np.asarray(image.value if isinstance(image, u.Quantity) else image, dtype=float)
    error = np.asarray(error.to_value(unit) if isinstance(error, u.Quantity) else error, dtype=float)
    mask, xs, ys = _check_inputs(image, error, mask, positions)
    if background not in _BACKGROUND_TERMS:
        raise ValueError(f"background: expected one of {sorted(_BACKGROUND_TERMS)}, got {background!r}")
    if position_box_pix <= 0:
        raise ValueError(f"position_box_pix must be > 0, got {position_box_pix}")
    chains = Path(chains) if chains is not None else None
    if chains is not None and chains.exists() and not overwrite:
        raise FileExistsError(f"{chains}: exists (pass overwrite=True to replace it)")
    temperature_k = float(temperature_k or CALIBRATOR_TEMPERATURE_K[int(band)])
    prf = load_prf(int(band), temperature_k, float(pixel_arcsec))
    radius = int(cutout_radius_pix or np.ceil(2 * _fwhm_pix(prf)))
    c_ujy = flux_per_pixel_unit(pixel_arcsec, unit)
    usable = ~mask & np.isfinite(image)
    groups = SourceGrouper(min_separation=2 * radius + 1)(xs, ys) if len(xs) > 1 else np.ones(1, int)
    tmp = chains.with_name(f".{chains.name}.partial-{os.getpid()}") if chains is not None else None
    rows = [None] * len(xs)
    try:
        for gid in np.unique(groups):
            ids = np.flatnonzero(groups == gid)
            rows_g = _fit_group(image, error, usable, prf, xs[ids], ys[ids], ids, gid, radius=radius,
                                c_ujy=c_ujy, background=background, box=position_box_pix,
                                positive_flux=positive_flux, nwalkers=nwalkers, nsteps=nsteps, burn=burn,
                                seed=seed, chains=tmp)
            for i, row in zip(ids, rows_g):
                rows[i] = row
        if tmp is not None:
            os.replace(tmp, chains)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return _table(rows, unit, background, meta={
        "method": "emcee posterior photometry (reprocess.photometry.posterior)", "band": int(band),
        "temperature_k": temperature_k, "pixel_arcsec": float(pixel_arcsec),
        "ujy_per_image_unit_pixel": c_ujy, "image_unit": unit.to_string(), "background": background,
        "positive_flux": bool(positive_flux), "position_box_pix": float(position_box_pix),
        "cutout_radius_pix": radius, "nsteps": nsteps, "burn": burn, "seed": int(seed),
        "quantiles": dict(QUANTILES), "chains": None if chains is None else str(chains)})


def _fit_group(image, error, usable, prf, xs, ys, ids, gid, *, radius, c_ujy, background, box,
               positive_flux, nwalkers, nsteps, burn, seed, chains) -> list[dict]:
    """Sample one group's posterior and summarise it, one dict per source."""
    names = _names(ids, background)
    if len(ids) > 4:
        log.warning("a group of %d sources (%d parameters) around (%.1f, %.1f): its chain is slow; a "
                    "smaller cutout_radius_pix splits it", len(ids), len(names), xs.mean(), ys.mean())
    cut = _cutout(image, error, usable, xs, ys, radius, len(names))
    model = _GroupModel(prf, cut, xs, ys, c_ujy=c_ujy, background=background, box=box,
                        positive_flux=positive_flux)
    linear, scale = model.linear_start()
    start = linear.copy()
    if positive_flux:                     # the walkers' ball inside the prior
        start[0:3 * len(ids):3] = np.maximum(start[0:3 * len(ids):3], 4 * scale[0:3 * len(ids):3])
    ndim = len(names)
    nw = int(nwalkers or max(32, 4 * ndim))
    if nsteps is None:
        burn = BURN_STEPS_PER_PARAMETER * ndim if burn is None else burn
        nsteps = burn + KEPT_STEPS_PER_PARAMETER * ndim
    elif burn is None:
        burn = nsteps // 4
    post = sample_posterior(model.log_prob, start, scale, names=names, seed=_group_seed(seed, gid),
                            nwalkers=nw, nsteps=nsteps, burn=burn, vectorize=True, chains=chains,
                            group=None if chains is None else f"group_{gid}", moves=emcee.moves.DEMove())
    tau = float(np.max(post.autocorr_time))
    median = np.median(post.samples, axis=0)
    chi2 = float(np.sum(((cut.data - model.model(median[None])[0]) / cut.sigma) ** 2))
    dof = cut.data.size - ndim
    common = {"group_id": int(gid), "npix": cut.data.size, "chi2": chi2, "dof": dof,
              "p_value": float(stats.chi2.sf(chi2, dof)), "acceptance": post.acceptance_fraction,
              "tau": tau, "n_tau": post.n_steps / tau, "n_eff": nw * post.n_steps / tau,
              "short_chain": post.short_chain}
    for term in _BACKGROUND_TERMS[background]:
        common.update(_summary(post, term, term))
    rows = []
    for k, i in enumerate(ids):
        row = {"id": int(i), "x_init": xs[k], "y_init": ys[k], "flux_init": linear[3 * k],
               "flux_init_err": scale[3 * k], **common}
        for q in ("flux", "x", "y"):
            row.update(_summary(post, f"{q}_{i}", q))
        edge = box * 0.95
        row["at_box_edge"] = bool(max(abs(row["x_q2p5"] - xs[k]), abs(row["x_q97p5"] - xs[k]),
                                      abs(row["y_q2p5"] - ys[k]), abs(row["y_q97p5"] - ys[k])) >= edge)
        rows.append(row)
    return rows


def _summary(post: Posterior, name: str, column: str) -> dict[str, float]:
    """Median, half the 68 % interval and the reported quantiles of one parameter."""
    q = post.quantiles(name, (0.5, *QUANTILES.values()))
    out = {column: float(q[0]), f"{column}_err": float(0.5 * (q[3] - q[2]))}
    out.update({f"{column}_{s}": float(v) for s, v in zip(QUANTILES, q[1:])})
    return out


def _table(rows: list[dict], unit: u.UnitBase, background: str, meta: dict) -> QTable:
    """The rows as a QTable with units: uJy for fluxes, pixels for positions, ``unit`` for bkg."""
    table = QTable(rows=rows, meta=meta)
    units = {"flux": u.uJy, "x": u.pix, "y": u.pix, "bkg": unit, "bkg_dx": unit / u.pix,
             "bkg_dy": unit / u.pix}
    for name in table.colnames:
        stem = name.split("_q")[0].removesuffix("_err")
        if name in ("x_init", "y_init"):
            table[name].unit = u.pix
        elif name.startswith("flux"):
            table[name].unit = u.uJy
        elif stem in units:
            table[name].unit = units[stem]
    return table
