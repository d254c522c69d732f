"""PRF-fitting photometry on one image (a mosaic), like APEX's single-frame fit, vectorised.

Method
------
Each source ``s`` is ``F_s P(y - y_s, x - x_s)`` with ``P`` the PRF (for a ``reprocess.mosaic``
mosaic the resampled one of :mod:`.mosaic_prf`), on top of a background per *group* (a constant,
or a plane or quadratic surface: ``background_order``).  Sources closer than twice the fit radius
(default 1.5 FWHM, so 3 FWHM) are one group: their fit regions touch, so they share pixels and a
background and are fitted together (blends).  The grouping radius is a trade-off: a larger fit
radius adds pixels with less information per pixel (and more background structure and neighbour
light) while making groups larger; within 1.5 FWHM a PRF fit has ~99 % of the information on a
flux that the whole image has (for a Gaussian, 1 - exp(-4 ln2 1.5^2)).  A pixel is
fitted when it lies within the fit radius of a source; every source is modelled on every fitted
pixel within its model radius (3 FWHM), so a bright neighbour's wings are part of the model even
across groups.

Background
----------
``background_scope="group"`` gives each group one polynomial (centred on its mean source
position); ``"source"`` gives each source its own, centred on it and defined over its fit disc,
and where discs overlap a pixel's background is the discs' polynomials averaged with weights
``1 - (d / (r_fit + 1))^2`` normalised to sum 1 (a partition of unity).  For an isolated source
the two are the same.  A group is a chain of touching discs, so its size is set by the source
density, not by the sky: at 160 um (FWHM 40", fit discs 130" across) a group of a crowded map
spans several arcminutes, across which cirrus changes by more than a faint source's peak, and
one polynomial per group read sources of a simulated 160 um scan map wrong by tens of percent
(noise-free, at the true positions: ratio scatter 0.5).  Per-source polynomials follow the sky
along the chain (scatter 0.03-0.06 with planes or quadratics) and still hold any global
polynomial of their order exactly.  The cost is parameters: ``n_terms`` per source instead of per
group, so more noise for blends; a plane costs a centred source almost nothing (its terms are
orthogonal to a symmetric PRF), a constant or quadratic does.

For fixed positions the model is linear in the fluxes and backgrounds: one weighted linear
least-squares problem ``J p = d`` over all fitted pixels of the image at once, rows weighted by
``1 / UNC``.  ``J`` is sparse (a source touches ~``pi (3 FWHM)^2`` pixels), so it is assembled as a
``scipy.sparse`` matrix from flat arrays -- no Python loop over sources -- and its normal equations,
block-diagonal up to the couplings of neighbours, are solved by one sparse LU (``spsolve``) --
the Tractor's forced photometry, done for a single image.
Positions are then refined by Gauss-Newton: the PRF's gradient adds two columns per source
(``-F dP/dy``, ``-F dP/dx``) and each iteration is the same sparse solve for all sources together;
a step is capped at 0.5 pixel per iteration and the total shift at ``max_shift_pix`` (flagged when
reached); sources below ``min_snr_position`` keep the detected position (flagged).  After two
iterations only the groups still moving are solved again.  This is the
trade-off against photutils' ``PSFPhotometry``, which calls an astropy fitter (Levenberg-Marquardt
/ TRF with numerical model evaluations) once per group in Python: one sparse solve per iteration
for the whole image costs a few array passes, whatever the number of sources.

Errors
------
The covariance of a group's parameters (on the group's own pixels; the weak couplings to other
groups through far wings are left out, so that blocks stay small in crowded fields) is
``C = (J^T W J)^-1``; that is the error for independent pixel noise.  A resampled mosaic's noise is
correlated between neighbouring pixels (:func:`.mosaic_prf.noise_correlation`), so the reported
error is the sandwich ``var(p_k) = e_k^T R e_k`` with ``e_k = (C J^T W^1/2)_k`` the estimator of
parameter ``k`` on the normalised pixels and ``R`` their correlation: the least-squares estimate
stays unbiased, only its variance changes (about 2.5x in sigma at 70 um).  A chi^2 check: each
source's reduced chi^2 over its fit disc is reported and flagged ``POOR_FIT`` beyond ``1 + 5
sqrt(2 sum rho^2 / n)``, the spread of a noise-only chi^2 of ``n`` correlated pixels.  This module
reports the noise error; :func:`reprocess.photometry.catalog.measure` scales it by
``sqrt(max(1, chi^2))`` for the catalogue (a PRF mismatch on a bright source is an error too).
"""
from __future__ import annotations

import warnings

import numpy as np
from astropy.table import QTable
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import MatrixRankWarning, spsolve
from scipy.spatial import cKDTree

from .flags import PhotFlag

__all__ = ["fit_prf", "prf_fwhm_pix"]

_STEP_CAP_PIX = 0.5        # largest position change per Gauss-Newton iteration
_MIN_COVERED = 0.7         # fraction of a fit disc with valid pixels below which FEW_FIT_PIXELS


def prf_fwhm_pix(prf) -> float:
    """FWHM of a PRF (its ``fwhm_pix`` attribute, else measured on a 0.1-pixel grid), pixels."""
    if hasattr(prf, "fwhm_pix"):
        return float(prf.fwhm_pix)
    r = min(float(getattr(prf, "radius_pix", 20.0)), 20.0)
    g = np.arange(-r, r + 1e-9, 0.1)
    vals = prf(*np.meshgrid(g, g, indexing="ij"))
    return float(2.0 * np.sqrt((vals >= 0.5 * vals.max()).sum() * 0.01 / np.pi))


def _evaluate(prf, dy: np.ndarray, dx: np.ndarray, h: float = 1e-3):
    """PRF values and derivatives d/d(dy), d/d(dx): the PRF's own, else central differences."""
    if hasattr(prf, "evaluate"):
        return prf.evaluate(dy, dx)
    return (prf(dy, dx), (prf(dy + h, dx) - prf(dy - h, dx)) / (2 * h),
            (prf(dy, dx + h) - prf(dy, dx - h)) / (2 * h))


def _disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius)) + 1
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    return oy.ravel(), ox.ravel()


def _groups(x: np.ndarray, y: np.ndarray, link: float) -> np.ndarray:
    """Connected components of sources closer than ``link`` pixels."""
    n = len(x)
    pairs = cKDTree(np.c_[x, y]).query_pairs(link, output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


class _Problem:
    """The fitted pixels of an image, the sources' entries on them and the Jacobian's pattern.

    Entries (source, pixel) are found once, out to the model radius plus the largest shift, so
    that the sparse pattern is fixed and each iteration only refills the values.
    """

    def __init__(self, image, unc, valid, x0, y0, group, *, r_fit, r_model, reach, order=0,
                 scope="group"):
        ny, nx = image.shape
        n = len(x0)
        self.n, self.ng = n, int(group.max()) + 1 if n else 0
        self.group = group
        self.r_fit, self.r_model = r_fit, r_model
        oy, ox = _disc_offsets(r_fit)
        py = np.rint(y0).astype(np.intp)[:, None] + oy
        px = np.rint(x0).astype(np.intp)[:, None] + ox
        near = (py - y0[:, None]) ** 2 + (px - x0[:, None]) ** 2 <= r_fit ** 2
        inside = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
        use = near & inside
        use[use] = valid[py[use], px[use]]
        self.disc_pixels = near.sum(axis=1)
        self.disc_inside = (near & inside).sum(axis=1)
        self.disc_used = use.sum(axis=1)
        flat = (py * nx + px)[use]
        src = np.broadcast_to(np.arange(n)[:, None], use.shape)[use]
        self.pix, first = np.unique(flat, return_index=True)
        self.pix_group = group[src[first]]
        self.py, self.px = np.divmod(self.pix, nx)
        self.data = image.ravel()[self.pix].astype(float)
        self.sigma = unc.ravel()[self.pix].astype(float)
        self.nt = _n_terms(order)
        self.scope = scope
        if scope == "group":
            self._group_background(x0, y0, group, order, r_fit)
        elif scope == "source":
            self._source_background(x0, y0, flat, src, order, r_fit, nx)
        else:
            raise ValueError(f"background scope {scope!r}: expected 'group' or 'source'")
        self.active = self.disc_used > 0      # sources with at least one valid pixel to fit
        self._entries(x0, y0, self.active, r_model + reach, nx, ny)
        self._pattern()

    def _group_background(self, x0, y0, group, order, r_fit):
        """One polynomial per group: pixel ``p`` of group ``g`` has ``basis_t(p)`` in column
        ``g * nt + t``."""
        basis = _background_basis(self, x0, y0, group, order, r_fit)
        npix, nt = len(self.pix), self.nt
        self.bk_row = np.repeat(np.arange(npix), nt)
        self.bk_col = (self.pix_group[:, None] * nt + np.arange(nt)).ravel()
        self.bk_val = basis.ravel()
        self.nbk = self.ng * nt
        self.bk_group = np.repeat(np.arange(self.ng), nt)
        self.bk_const = group * nt                  # each source's constant term (its group's)
        self.bk_per_source = nt / np.maximum(np.bincount(group, minlength=self.ng)[group], 1)

    def _source_background(self, x0, y0, flat, src, order, r_fit, nx):
        """One polynomial per source, centred on it, over its own fit disc; where discs overlap
        (a blend), a pixel's background is the discs' polynomials averaged with the weights
        ``w_s = 1 - (d_s / (r_fit + 1))^2`` normalised to sum 1 (a partition of unity).

        The background surface of a blend then follows the sky from one source to the next
        instead of being one polynomial over the whole chain of touching discs (a 160 um group
        spans arcminutes, across which cirrus varies by more than a faint source's peak)."""
        nt = self.nt
        row = np.searchsorted(self.pix, flat)
        py, px = np.divmod(flat, nx)
        dy, dx = (py - y0[src]) / r_fit, (px - x0[src]) / r_fit
        w = np.clip(1.0 - (dy * dy + dx * dx) * (r_fit / (r_fit + 1.0)) ** 2, 1e-6, None)
        w = w / np.bincount(row, w, minlength=len(self.pix))[row]
        terms = [np.ones(len(row)), dx, dy, dx * dx, dx * dy, dy * dy][:nt]
        self.bk_row = np.repeat(row, nt)
        self.bk_col = (src[:, None] * nt + np.arange(nt)).ravel()
        self.bk_val = (w[:, None] * np.column_stack(terms)).ravel() if nt else np.zeros(0)
        self.nbk = self.n * nt
        self.bk_group = np.repeat(self.group, nt)
        self.bk_const = np.arange(self.n) * nt
        self.bk_per_source = np.full(self.n, float(nt))

    def _entries(self, x0, y0, active, radius, nx, ny):
        idx = np.nonzero(active)[0]
        moy, mox = _disc_offsets(radius)
        py = np.rint(y0[idx]).astype(np.intp)[:, None] + moy
        px = np.rint(x0[idx]).astype(np.intp)[:, None] + mox
        ok = ((py - y0[idx, None]) ** 2 + (px - x0[idx, None]) ** 2 <= radius ** 2)
        ok &= (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
        flat = (py * nx + px)[ok]
        pos = np.minimum(np.searchsorted(self.pix, flat), max(len(self.pix) - 1, 0))
        hit = self.pix[pos] == flat if len(self.pix) else np.zeros(len(flat), dtype=bool)
        self.e_src = np.broadcast_to(idx[:, None], ok.shape)[ok][hit]
        self.e_row = pos[hit]
        self.e_py, self.e_px = py[ok][hit], px[ok][hit]
        self.e_w = 1.0 / self.sigma[self.e_row]

    def _pattern(self):
        """CSC pattern of the Jacobian (columns: fluxes, y, x, backgrounds) and the permutation
        from the value arrays to CSC order."""
        n, npix = self.n, len(self.pix)
        rows = np.concatenate([self.e_row] * 3 + [self.bk_row])
        cols = np.concatenate([self.e_src, n + self.e_src, 2 * n + self.e_src, 3 * n + self.bk_col])
        probe = sparse.csc_matrix((np.arange(len(rows), dtype=float) + 1.0, (rows, cols)),
                                  shape=(npix, 3 * n + self.nbk))
        self.perm = probe.data.astype(np.intp) - 1
        self.jac = probe

    def jacobian(self, prf, flux, y, x, fit_pos):
        """Weighted Jacobian at (flux, y, x) (position columns zero where not ``fit_pos``), the
        model without backgrounds, and which entries lie within the fit radius."""
        dy = self.e_py - y[self.e_src]
        dx = self.e_px - x[self.e_src]
        d2 = dy ** 2 + dx ** 2
        f, gy, gx = _evaluate(prf, dy, dx)
        f = np.where(d2 <= self.r_model ** 2, f, 0.0)
        amp = np.where(fit_pos[self.e_src], -flux[self.e_src] * self.e_w, 0.0)
        vals = np.concatenate([f * self.e_w, amp * gy, amp * gx,
                               self.bk_val / self.sigma[self.bk_row]])
        jac = self.jac.copy()
        jac.data = vals[self.perm]
        model = np.bincount(self.e_row, flux[self.e_src] * f, minlength=len(self.pix))
        return jac, model, d2 <= self.r_fit ** 2

    def background(self, bkg: np.ndarray) -> np.ndarray:
        """The background surface at the fitted pixels."""
        return np.bincount(self.bk_row, self.bk_val * bkg[self.bk_col], minlength=len(self.pix))


def _n_terms(order) -> int:
    """Number of polynomial terms of a background of ``order`` (None: no background)."""
    if order is None:
        return 0
    if order not in (0, 1, 2):
        raise ValueError(f"background order {order!r}: expected None, 0, 1 or 2")
    return (1, 3, 6)[order]


def _background_basis(prob, x0, y0, group, order, r_fit) -> np.ndarray:
    """(pixels, terms) polynomial basis of each pixel's group background: 1; x, y; x^2, xy, y^2,
    in units of the fit radius from the group's mean source position (no terms for None)."""
    if order is None:
        return np.zeros((len(prob.pix), 0))
    terms = [np.ones(len(prob.pix))]
    if order and len(prob.pix):
        count = np.bincount(group, minlength=prob.ng)
        cx = np.bincount(group, x0, minlength=prob.ng) / np.maximum(count, 1)
        cy = np.bincount(group, y0, minlength=prob.ng) / np.maximum(count, 1)
        u = (prob.px - cx[prob.pix_group]) / r_fit
        v = (prob.py - cy[prob.pix_group]) / r_fit
        terms += [u, v] + ([u * u, u * v, v * v] if order == 2 else [])
    return np.column_stack(terms) if len(prob.pix) else np.zeros((0, len(terms)))


def _solve(jac, resid, cols=None):
    """Gauss-Newton step of the columns ``cols`` (default all) of ``jac`` (0 for empty columns)
    by one sparse solve of the normal equations; also returns their diagonal."""
    if cols is not None:
        step, diag = np.zeros(jac.shape[1]), np.zeros(jac.shape[1])
        step[cols], diag[cols] = _solve(jac[:, cols], resid)
        return step, diag
    normal = (jac.T @ jac).tocsc()
    diag = normal.diagonal()
    normal = normal + sparse.diags(np.where(diag > 0, 1e-12 * diag, 1.0))
    rhs = jac.T @ resid
    with warnings.catch_warnings():
        warnings.simplefilter("error", MatrixRankWarning)
        try:
            step = spsolve(normal, rhs)
        except MatrixRankWarning:
            step = sparse.linalg.lsqr(jac, resid, atol=1e-12, btol=1e-12)[0]
    return np.atleast_1d(step), diag


def fit_prf(image: np.ndarray, uncertainty: np.ndarray, x: np.ndarray, y: np.ndarray, *, prf,
            fit_radius_pix: float | None = None, model_radius_pix: float | None = None,
            mask: np.ndarray | None = None, fit_positions: bool = True,
            min_snr_position: float = 5.0, max_shift_pix: float | None = None,
            max_iter: int = 20, tol_pix: float = 1e-3, tol_sigma: float = 0.05,
            correlation: np.ndarray | None = None, background_order: int | None = 0,
            background_scope: str = "group") -> QTable:
    """Fit fluxes, positions and group backgrounds of point sources starting at (x, y).

    Parameters
    ----------
    image, uncertainty : (NY, NX) arrays
        Surface brightness (any unit) and its 1-sigma uncertainty; NaN or non-positive
        uncertainties mark pixels without data.
    x, y : arrays
        Starting positions, 0-based pixels (a detection's).
    prf : callable
        ``prf(dy, dx)`` -> fraction of the flux in the pixel whose centre is (dy, dx) from the
        source (:class:`.mosaic_prf.MosaicPRF` or :class:`calibration.psf.PRF`); its
        ``evaluate(dy, dx)`` gives the derivatives too (else central differences).
    fit_radius_pix : float, optional
        Pixels within this of a source are fitted; default 1.5 FWHM.  Groups link at twice it.
    model_radius_pix : float, optional
        A source is modelled out to this; default the PRF's ``radius_pix`` (else 2 fit radii).
    mask : (NY, NX) bool, optional
        True: pixel not used.
    fit_positions : bool
        False: fluxes and backgrounds only, at (x, y) (forced photometry).
    min_snr_position : float
        Sources below this S/N after the first (linear) pass keep their starting position.
    max_shift_pix : float, optional
        Largest total shift from the start; default 0.5 FWHM.
    max_iter, tol_pix, tol_sigma : int, float, float
        Gauss-Newton iterations; converged when no position moves more than ``tol_pix`` or
        ``tol_sigma`` times its own error.
    correlation : 2-D array, optional
        Noise correlation between pixels by offset (default the PRF's ``correlation``, else none).
    background_order : {0, 1, 2, None}
        Each group's background: a constant, a plane, or a quadratic surface (for structured
        backgrounds, e.g. cirrus under a 160 um PSF; each order costs noise); None: no background
        (an image whose background has been subtracted).
    background_scope : {"group", "source"}
        ``"group"``: one polynomial per fit group; ``"source"``: one per source, centred on it over
        its fit disc, blended between overlapping discs (a partition of unity), so that the
        background of a chain of blended sources can vary along it.

    Returns
    -------
    QTable
        One row per input source, in input order: ``x_fit``, ``y_fit``, ``x_err``, ``y_err``
        (pixels), ``flux_fit``, ``flux_err`` (image unit x pixel: the model's sum over all
        pixels, i.e. the total flux), ``flux_err_indep`` (the independent-noise error),
        ``background``, ``background_err`` (image unit), ``group_id``, ``group_size``, ``n_pix``,
        ``reduced_chi2``, ``flags`` (:class:`.flags.PhotFlag`), ``n_iter``.
    """
    image = np.asarray(image, dtype=float)
    unc = np.asarray(uncertainty, dtype=float)
    if image.shape != unc.shape:
        raise ValueError(f"image {image.shape} and uncertainty {unc.shape} shapes differ")
    x0 = np.atleast_1d(np.asarray(x, dtype=float)).copy()
    y0 = np.atleast_1d(np.asarray(y, dtype=float)).copy()
    n = len(x0)
    fwhm = prf_fwhm_pix(prf)
    r_fit = 1.5 * fwhm if fit_radius_pix is None else float(fit_radius_pix)
    r_model = (float(getattr(prf, "radius_pix", 2 * r_fit)) if model_radius_pix is None
               else float(model_radius_pix))
    r_model = max(r_model, r_fit)
    max_shift = 0.5 * fwhm if max_shift_pix is None else float(max_shift_pix)
    corr = np.asarray(correlation if correlation is not None
                      else getattr(prf, "correlation", np.ones((1, 1))), dtype=float)
    valid = np.isfinite(image) & np.isfinite(unc) & (unc > 0)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    finite = np.isfinite(x0) & np.isfinite(y0)
    x0[~finite], y0[~finite] = -1e6, -1e6
    group = _groups(x0, y0, 2 * r_fit) if n else np.zeros(0, int)
    prob = _Problem(image, unc, valid, x0, y0, group, r_fit=r_fit, r_model=r_model,
                    reach=max_shift + _STEP_CAP_PIX, order=background_order,
                    scope=background_scope)
    active = prob.active
    flags = np.zeros(n, dtype=np.int32)
    flags[prob.disc_inside < prob.disc_pixels] |= PhotFlag.OFF_IMAGE
    flags[prob.disc_used < _MIN_COVERED * prob.disc_pixels] |= PhotFlag.FEW_FIT_PIXELS
    state = _iterate(prob, prf, x0, y0, active, flags, fit_positions=fit_positions,
                     min_snr=min_snr_position, max_shift=max_shift, max_iter=max_iter, tol=tol_pix,
                     tol_sigma=tol_sigma)
    return _result(prob, prf, x0, y0, group, active, flags, state, corr)


def _iterate(prob, prf, x0, y0, active, flags, *, fit_positions, min_snr, max_shift, max_iter,
             tol, tol_sigma):
    """A linear pass, Gauss-Newton position refinement, a final linear pass; the final state."""
    n = prob.n
    flux, bkg = np.zeros(n), np.zeros(prob.nbk)
    y, x = y0.copy(), x0.copy()
    fit_pos = np.zeros(n, dtype=bool)
    limited = np.zeros(n, dtype=bool)
    if len(prob.pix) == 0:
        return flux, bkg, y, x, fit_pos, 0
    moving = np.zeros(n, dtype=bool)
    diag = np.zeros(3 * n + prob.nbk)
    cols = None
    it = 0
    for it in range(max_iter + 1):
        jac, model, _ = prob.jacobian(prf, flux, y, x, fit_pos)
        step, d = _solve(jac, (prob.data - model - prob.background(bkg)) / prob.sigma, cols)
        diag = d if cols is None else np.where(d > 0, d, diag)
        flux += step[:n]
        bkg += step[3 * n:]
        dy, dx = step[n:2 * n], step[2 * n:3 * n]
        size = np.hypot(dy, dx)
        scale = np.minimum(1.0, _STEP_CAP_PIX / np.maximum(size, 1e-300))
        y += dy * scale
        x += dx * scale
        shift = np.hypot(y - y0, x - x0)
        over = fit_pos & (shift > max_shift)
        if over.any():
            k = max_shift / shift[over]
            y[over] = y0[over] + (y[over] - y0[over]) * k
            x[over] = x0[over] + (x[over] - x0[over]) * k
            limited |= over
            fit_pos &= ~over
        if not fit_positions:
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            bright = flux * np.sqrt(diag[:n]) >= min_snr
            pos_err = 1.0 / np.sqrt(np.maximum(diag[n:2 * n], diag[2 * n:3 * n]))
            moving = fit_pos & (size > np.maximum(tol, tol_sigma * pos_err))
        if it <= 1:      # positions are fitted for the sources bright enough after a linear pass
            fit_pos = active & bright & ~limited
        else:            # ... and no longer for those that fell below the threshold
            fit_pos &= bright
            if not moving.any():
                break
            # later iterations solve only the groups that still move (the rest stay put)
            live = np.zeros(prob.ng, dtype=bool)
            live[prob.group[moving]] = True
            src = live[prob.group]
            cols = np.nonzero(np.r_[src, src & fit_pos, src & fit_pos,
                                    live[prob.bk_group]])[0]
    else:
        flags[moving] |= PhotFlag.NOT_CONVERGED
    flags[limited] |= PhotFlag.POSITION_LIMIT
    flags[active & ~fit_pos & ~limited & fit_positions] |= PhotFlag.FIXED_POSITION
    # the final linear pass: fluxes and backgrounds exact for the final positions
    jac, model, _ = prob.jacobian(prf, flux, y, x, np.zeros(n, dtype=bool))
    step, _ = _solve(jac, (prob.data - model - prob.background(bkg)) / prob.sigma)
    flux += step[:n]
    bkg += step[3 * n:]
    return flux, bkg, y, x, fit_pos, it


def _result(prob, prf, x0, y0, group, active, flags, state, corr) -> QTable:
    flux, bkg, y, x, fit_pos, n_iter = state
    n, ng, nt = prob.n, prob.ng, prob.nt
    var_corr = np.full(3 * n + prob.nbk, np.nan)
    var_ind = np.full(3 * n + prob.nbk, np.nan)
    chi2 = np.full(n, np.nan)
    npix = np.zeros(n, dtype=int)
    if len(prob.pix):
        jac, model, near = prob.jacobian(prf, flux, y, x, fit_pos)
        resid = (prob.data - model - prob.background(bkg)) / prob.sigma
        jac.eliminate_zeros()
        cols = np.nonzero(np.diff(jac.indptr) > 0)[0]
        col_group = np.r_[group, group, group, prob.bk_group][cols]
        vi, vc = _block_variances(jac[:, cols].tocsr(), prob.py, prob.px, corr,
                                  col_group, prob.pix_group)
        var_ind[cols], var_corr[cols] = vi, vc
        src, row = prob.e_src, prob.e_row
        npix = np.bincount(src, near, minlength=n).astype(int)
        ssq = np.bincount(src, near * resid[row] ** 2, minlength=n)
        dof = npix - 1 - 2 * fit_pos - prob.bk_per_source
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = np.where(dof > 0, ssq / dof, np.nan)
            spread = np.sqrt(2.0 * (corr ** 2).sum() / np.maximum(dof, 1))
        flags[chi2 > 1.0 + 5.0 * spread] |= PhotFlag.POOR_FIT
    sizes = np.bincount(group, minlength=ng)[group] if n else np.zeros(0, int)
    flags[sizes > 1] |= PhotFlag.BLENDED
    nan = ~active
    out = QTable()
    out["x_init"], out["y_init"] = x0, y0
    out["x_fit"], out["y_fit"] = np.where(nan, np.nan, x), np.where(nan, np.nan, y)
    pos_err = np.where(fit_pos, 1.0, np.nan)
    out["x_err"] = pos_err * np.sqrt(var_corr[2 * n:3 * n])
    out["y_err"] = pos_err * np.sqrt(var_corr[n:2 * n])
    out["flux_fit"] = np.where(nan, np.nan, flux)
    out["flux_err"] = np.sqrt(var_corr[:n])
    out["flux_err_indep"] = np.sqrt(var_ind[:n])
    # the background polynomial's constant term: its value at the group's mean source position
    if nt:
        out["background"] = np.where(nan, np.nan, bkg[prob.bk_const] if n else np.zeros(0))
        out["background_err"] = np.sqrt(var_corr[3 * n:][prob.bk_const]) if n else np.zeros(0)
    else:
        out["background"], out["background_err"] = np.zeros(n), np.zeros(n)
    out["group_id"] = group
    out["group_size"] = sizes
    out["n_pix"] = npix
    out["reduced_chi2"] = chi2
    out["flags"] = flags
    out["n_iter"] = np.full(n, n_iter)
    return out


def _block_variances(jac, py, px, corr, col_group, row_group):
    """Independent-noise and correlated-noise variances of every column of ``jac`` (CSR, rows =
    pixels at (py, px), weighted by 1/sigma), group by group.

    A group's block is its own parameters on its own pixels: the couplings between groups (a
    source's far wings on a neighbouring group's pixels) are left out of the errors, which keeps
    blocks small even where, through wings, the whole field is one connected component.  Blocks
    are bucketed by their number of parameters and their pixel bounding box (rounded up to 4
    pixels), and each bucket is one batched dense computation on stamps of that size.
    """
    npar = jac.shape[1]
    _, block = np.unique(col_group, return_inverse=True)
    nb = int(block.max()) + 1 if npar else 0
    coo = jac.tocoo()
    own = row_group[coo.row] == col_group[coo.col]
    coo = sparse.coo_matrix((coo.data[own], (coo.row[own], coo.col[own])), shape=jac.shape)
    eblock = block[coo.col]
    ey, ex = py[coo.row], px[coo.row]
    order = np.argsort(eblock, kind="stable")
    starts = np.searchsorted(eblock[order], np.arange(nb))
    y_lo = np.minimum.reduceat(ey[order], starts)
    x_lo = np.minimum.reduceat(ex[order], starts)
    hgt = -(-(np.maximum.reduceat(ey[order], starts) - y_lo + 1) // 4) * 4
    wid = -(-(np.maximum.reduceat(ex[order], starts) - x_lo + 1) // 4) * 4
    k_of_block = np.bincount(block, minlength=nb)
    porder = np.argsort(block, kind="stable")
    rank = np.empty(npar, dtype=np.intp)
    rank[porder] = np.arange(npar) - np.r_[0, np.cumsum(k_of_block)[:-1]][block[porder]]
    key = (k_of_block.astype(np.int64) * 100000 + hgt) * 100000 + wid
    _, bucket = np.unique(key, return_inverse=True)
    border = np.argsort(bucket, kind="stable")
    bstart = np.searchsorted(bucket[border], np.arange(bucket.max() + 1))
    slot = np.empty(nb, dtype=np.intp)             # a block's index within its bucket
    slot[border] = np.arange(nb) - bstart[bucket[border]]
    e_order = np.argsort(bucket[eblock], kind="stable")
    e_bounds = np.searchsorted(bucket[eblock][e_order], np.arange(bucket.max() + 2))
    p_order = np.argsort(bucket[block], kind="stable")
    p_bounds = np.searchsorted(bucket[block][p_order], np.arange(bucket.max() + 2))
    var_ind, var_corr = np.full(npar, np.nan), np.full(npar, np.nan)
    for u in range(bucket.max() + 1):
        e = e_order[e_bounds[u]:e_bounds[u + 1]]
        cols = p_order[p_bounds[u]:p_bounds[u + 1]]
        first = block[cols[0]]
        m, k, h, w = np.count_nonzero(bucket == u), k_of_block[first], hgt[first], wid[first]
        b = slot[eblock[e]]
        pix = (ey[e] - y_lo[eblock[e]]) * w + (ex[e] - x_lo[eblock[e]])
        jb = np.zeros((m, h * w, k))
        jb[b, pix, rank[coo.col[e]]] = coo.data[e]
        vi, vc = _dense_variances(jb, (h, w), corr)
        var_ind[cols] = vi[slot[block[cols]], rank[cols]]
        var_corr[cols] = vc[slot[block[cols]], rank[cols]]
    return var_ind, var_corr


def _dense_variances(jb, stamp, corr):
    """(independent, correlated) variances of the parameters of a stack of blocks: ``jb`` is
    (blocks, pixels of the stamp, parameters), weighted by 1/sigma."""
    jt = jb.transpose(0, 2, 1)
    normal = jt @ jb
    try:
        cov = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(normal)
    est = (cov @ jt).reshape(jb.shape[0], jb.shape[2], *stamp)
    smooth = (ndimage.correlate(est, corr[None, None], mode="constant") if corr.size > 1
              else est * corr.ravel()[0])
    return np.diagonal(cov, axis1=1, axis2=2), (est * smooth).sum(axis=(2, 3))
