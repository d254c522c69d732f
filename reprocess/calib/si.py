"""24 um (Si:As) calibration products from calibration observations (raw files only).

What each product is measured from, and why (the campaign is described in
``mipssim.campaign.si``; real AORs of the same kinds would do):

read-2 law
    The second read near the bottom of the array is low by ``a(y) = A exp(-y/s)``
    [IOC-190D2/F], which biases a SUR slope by ``-a(y) w_1(n) / dt`` (DN/s; ``w_1``
    the second read's least-squares weight, :func:`calibration.si_as.sur_weight`).
    Darks of 3 and 10 MIPS-s at the same DCENUM share dark and droop, so the
    row profile of their difference is ``a(y) (w_1(20) - w_1(6)) / dt``:
    ``A`` and ``s`` are fitted to it with emcee.
read noise
    The scatter of dark slopes over DCEs is read-noise dominated; per pixel, the
    pooled variance over groups of DCEs sharing nreads and dark plane (cosmic
    rays clipped), less the dark's Poisson term, scaled by the SUR law
    (:func:`calibration.si_as.sur_variance`).
droop, row droop
    ``M = T + c mean(T) + c_row rowmean(T)`` (:func:`calibration.si_as.droop_forward`).
    With a bright source on the array in one DCE and off it in the next (same
    scan-mirror position, DCENUM >= 4: same dark, flat and read-2 bias), pixels
    that see blank sky in both change by ``c dTbar + c_row dR_y``, where the
    true array and row means follow from the measured ones exactly
    (``Mbar = (1 + c + c_row) Tbar``, ``M_y = (1 + c_row) R_y + c Tbar``).
    Row means of those blank pixels are fitted with emcee.
darks per DCENUM
    Dark slopes with the read-2 bias and the droop offsets removed (the
    pipeline's order, :func:`reprocess.si_bcd.calibrate_si`), averaged per
    dark plane ``min(DCENUM, NDARK - 1)``; the jailbar lives in DCENUM.
first-frame factors
    On a uniform field, DCENUM 0, 1, 2 against the later DCEs of the same AOR
    and mirror position: the median over pixels of the ratio of their
    photocurrents (robust to the faint field sources), one sample per AOR,
    combined with emcee.
flats
    Per scan-mirror position: photocurrents of DCENUM >= 3 (dark, read-2 and
    droop removed), each divided by its median (the zodi level), field
    sources found in the flattened frames and masked (dilated), then averaged.
    The gain flat is the pixel median over mirror positions (the spots move
    with the mirror, so most positions are spot-free at a pixel); each
    position's flat is scaled so that its ratio to the gain flat has median 1,
    and all so that the gain flat has median 1 (the shipped FLUXCONV's
    convention).
permanent mask
    Pixels with no response (flat below ``dead_fraction``) or with a read
    noise ``noisy_factor`` times the median.

Errors are 1-sigma: maps from the noise law (SUR variance with the derived
read noise and the product set's gain) propagated through the averages,
plus the propagated uncertainty of the read-2 law and the droop; scalars and
laws are posterior medians and half the 16-84 % interval.  Nothing here
knows the simulator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from calibration import si_as
from calibration.bitmask import PMASK

from ..io import RawDCE, raw_files, read_all, read_raw_si
from .posterior import Posterior, sample_posterior

__all__ = ["read2_law", "read_si_dces", "SiRates", "si_rates", "fit_read2", "read_noise_map",
           "fit_droop", "dark_planes", "first_frame_samples", "fit_first_frame", "flat_for_position",
           "gain_and_spot_flats", "permanent_mask"]

CLIP_SIGMA = 5.0        # outlier (cosmic-ray) clip, robust sigmas


def read2_law(shape, amplitude_dn: float, scale_rows: float) -> np.ndarray:
    """Read-2 deficit ``a(y) = amplitude exp(-y / scale)`` in DN, largest at row 0 (every column)."""
    y = np.arange(shape[0], dtype=float)[:, None]
    return amplitude_dn * np.exp(-y / scale_rows) * np.ones((1, shape[1]))


def read_si_dces(obs_dir: str | Path) -> list[RawDCE]:
    """The raw 24 um DCEs of an observation folder, in file order (any bad file is an error)."""
    return read_all(raw_files(Path(obs_dir)), read_raw_si, keep_going=False, failures=[], band=24)


@dataclass
class SiRates:
    """A stack of 24 um DCEs as rates: ``rate`` (N, NY, NX) DN/s and per-DCE metadata."""

    rate: np.ndarray
    nreads: np.ndarray
    dcenum: np.ndarray
    csm: np.ndarray
    read_time: float
    pointing: np.ndarray | None = None   # (N, 2) CRVAL1, CRVAL2 (deg)

    def select(self, keep) -> "SiRates":
        """The DCEs where ``keep`` (bool array) is true."""
        keep = np.asarray(keep, dtype=bool)
        return SiRates(self.rate[keep], self.nreads[keep], self.dcenum[keep], self.csm[keep],
                       self.read_time, None if self.pointing is None else self.pointing[keep])

    def w1_rate(self) -> np.ndarray:
        """``w_1(n) / dt`` per DCE: slope bias (DN/s) per DN of read-2 deficit is minus this."""
        return np.array([si_as.sur_weight(int(n))[1] for n in self.nreads]) / self.read_time


def si_rates(dces: list[RawDCE]) -> SiRates:
    """On-board slopes (DN/s) and DCENUM, NREADS, CSM_PRED of ``dces``."""
    if not dces:
        raise ValueError("no 24 um DCEs given")
    return SiRates(rate=np.stack([d.reads[0] / d.samptime for d in dces]).astype(float),
                   nreads=np.array([d.nreads for d in dces]),
                   dcenum=np.array([int(d.header["DCENUM"]) for d in dces]),
                   csm=np.array([float(d.header["CSM_PRED"]) for d in dces]),
                   read_time=float(dces[0].samptime),
                   pointing=np.array([[float(d.header.get("CRVAL1", np.nan)),
                                       float(d.header.get("CRVAL2", np.nan))] for d in dces]))


def _robust_sigma(x, axis=None):
    """1.4826 x the median absolute deviation (a float when ``axis`` is None)."""
    med = np.median(x, axis=axis, keepdims=True)
    sig = 1.4826 * np.median(np.abs(x - med), axis=axis, keepdims=True)
    return float(sig.ravel()[0]) if axis is None else sig


def _clip_mask(stack: np.ndarray, axis: int = 0) -> np.ndarray:
    """True where a value is within CLIP_SIGMA robust sigmas of the median along ``axis``."""
    med = np.median(stack, axis=axis, keepdims=True)
    sig = _robust_sigma(stack, axis=axis)
    return np.abs(stack - med) <= CLIP_SIGMA * np.maximum(sig, 1e-12)


# ----------------------------------------------------------------------------- read-2 law
def read2_profile(short: SiRates, long: SiRates, good: np.ndarray):
    """Row profile of ``short - long`` dark rates (DN/s), its standard error, and the factor k.

    Both stacks must share dark plane and droop (DCENUM >= the last plane) and
    each its own nreads; the model is ``profile(y) = k a(y)`` with
    ``k = (w_1(n_long) - w_1(n_short)) / dt``.
    """
    def rows(s: SiRates):
        if len(set(s.nreads)) != 1:
            raise ValueError("read2_profile: a stack must have one nreads")
        ok = _clip_mask(s.rate) & good
        r = np.where(ok, s.rate, 0.0).sum(-1) / ok.sum(-1)                 # (N, NY) row means
        # the rows share one pixel noise: pool their scatter (a few DCEs alone would give
        # noisy per-row errors, and a posterior too narrow half the time)
        se = np.sqrt(np.mean(r.var(0, ddof=1)) / r.shape[0])
        return r.mean(0), np.full(r.shape[1], se)
    ms, es = rows(short)
    ml, el = rows(long)
    k = long.w1_rate()[0] - short.w1_rate()[0]
    return ms - ml, np.hypot(es, el), k


def fit_read2(profile, err, k, *, seed: int, chains=None, nsteps: int = 2000) -> Posterior:
    """emcee posterior of the read-2 law (``amplitude`` DN, ``scale`` rows) from a row profile.

    Flat priors: amplitude in [0, 1000] DN, scale in [0.3, 128] rows.
    """
    y = np.arange(profile.size, dtype=float)
    w = 1.0 / err ** 2

    def log_prob(p):
        a, s = p[:, :1], p[:, 1:2]
        ok = (a[:, 0] >= 0) & (a[:, 0] <= 1000) & (s[:, 0] > 0.3) & (s[:, 0] < 128)
        model = k * a * np.exp(-y / np.where(s > 0.3, s, 1.0))
        lp = -0.5 * np.sum(w * (profile - model) ** 2, axis=1)
        return np.where(ok, lp, -np.inf)

    a0 = max(float(profile[0] / k), 1.0)
    return sample_posterior(log_prob, [a0, 10.0], [0.05 * a0, 1.0], names=("amplitude", "scale"),
                            seed=seed, vectorize=True, chains=chains, group="read2", nsteps=nsteps, burn=nsteps // 4)


def read2_error_map(post: Posterior, shape, n_draws: int = 400) -> np.ndarray:
    """1-sigma of the read-2 map (DN) over posterior draws (half the 16-84 % range per row)."""
    idx = np.linspace(0, len(post.samples) - 1, n_draws).astype(int)
    a, s = post.samples[idx, 0], post.samples[idx, 1]
    y = np.arange(shape[0], dtype=float)
    rows = a[:, None] * np.exp(-y[None, :] / s[:, None])
    q16, q84 = np.quantile(rows, (0.16, 0.84), axis=0)
    return (0.5 * (q84 - q16))[:, None] * np.ones((1, shape[1]))


# ----------------------------------------------------------------------------- read noise
def read_noise_map(darks: SiRates, *, gain: float, n_planes: int, clip_sigma: float = 5.0):
    """Per-pixel read noise (DN) and its 1-sigma error from the scatter of dark slopes.

    DCEs are grouped by (nreads, dark plane).  Cosmic rays are clipped against
    a per-pixel robust sigma pooled over all groups (residuals from the group
    medians scaled by each group's read-noise factor ``12 / (n (n^2 - 1) dt^2)``:
    a small group alone cannot clip reliably) at ``clip_sigma`` (the variance
    is corrected for the Gaussian truncation).  Then each group's per-pixel
    mean is removed and the pooled residual variance, less the dark's
    Poisson term, is divided by that factor.  The Poisson term must be that
    of the charge: give rates with the read-2 bias and droop removed
    (:func:`corrected_rates`).  Error: from ``var(SS_g) = 2 nu_g sigma_g^4``
    per group, the Poisson part of ``sigma_g`` included.
    """
    dt = darks.read_time
    plane = np.minimum(darks.dcenum, n_planes - 1)
    groups = []
    for n in np.unique(darks.nreads):
        for p in np.unique(plane):
            sel = (darks.nreads == n) & (plane == p)
            if sel.sum() >= 3:
                groups.append((int(n), sel, 12.0 / (n * (n * n - 1) * dt * dt)))
    if not groups:
        raise ValueError("read_noise_map: no group of >= 3 dark DCEs sharing nreads and DCENUM plane")
    scaled = np.concatenate([(darks.rate[sel] - np.median(darks.rate[sel], axis=0)) / np.sqrt(f)
                             for _, sel, f in groups])
    sigma = _robust_sigma(scaled, axis=0)[0]
    num = np.zeros(darks.rate.shape[1:])
    dof = np.zeros(darks.rate.shape[1:])
    terms = []                 # (dof, Poisson variance / factor) per group, for the error
    for n, sel, factor in groups:
        x = darks.rate[sel]
        ok = np.abs(x - np.median(x, axis=0)) <= clip_sigma * sigma * np.sqrt(factor)
        cnt = ok.sum(0)
        mean = np.where(ok, x, 0).sum(0) / np.maximum(cnt, 1)
        ss = np.where(ok, (x - mean) ** 2, 0).sum(0)
        poisson = si_as.sur_variance(mean, nreads=n, read_time=dt, gain=gain, read_noise=0.0)
        num += (ss - np.maximum(cnt - 1, 0) * poisson) / factor
        dof += np.maximum(cnt - 1, 0)
        terms.append((np.maximum(cnt - 1, 0), poisson / factor))
    dof1 = np.maximum(dof, 1)
    rn2 = np.maximum(num / dof1, 0.0) / _truncated_variance(clip_sigma)
    var_rn2 = sum(2.0 * nu * (rn2 + pf) ** 2 for nu, pf in terms) / dof1 ** 2
    rn = np.sqrt(rn2)
    return rn, np.sqrt(var_rn2) / (2.0 * np.maximum(rn, 1e-6))


def _truncated_variance(c: float) -> float:
    """Variance of a unit Gaussian truncated at +-c."""
    from scipy.stats import norm
    return float(1.0 - 2.0 * c * norm.pdf(c) / (2.0 * norm.cdf(c) - 1.0))


# ----------------------------------------------------------------------------- droop
def droop_rows(on: np.ndarray, off: np.ndarray, good: np.ndarray, *, margin_px: int = 12,
               min_pixels: int = 10):
    """Blank-pixel row means of ``on - off`` with the measured array and row means (DN/s).

    Returns ``(d_y, err_y, dMbar, dM_y)`` for the rows with at least
    ``min_pixels`` blank pixels.  Blank: good, not within ``margin_px`` of
    where the source is detected (5 robust sigmas on the row-flattened,
    smoothed difference), not an outlier in its row (cosmic rays).
    """
    diff = on - off
    flat = diff - np.median(diff, axis=1, keepdims=True)
    sm = ndimage.gaussian_filter(flat, 2.0)
    src = np.abs(sm) > 5.0 * _robust_sigma(sm[good])
    src = ndimage.binary_dilation(src, iterations=margin_px)
    blank = good & ~src
    dev = np.abs(flat - np.median(flat[blank]))
    blank &= dev <= CLIP_SIGMA * _robust_sigma(flat[blank])
    n = blank.sum(1)
    d = np.where(blank, diff, 0).sum(1) / np.maximum(n, 1)
    var = np.where(blank, (diff - d[:, None]) ** 2, 0).sum(1) / np.maximum(n - 1, 1)
    use = n >= min_pixels
    return d[use], np.sqrt(var[use] / n[use]), float(diff.mean()), diff.mean(1)[use]


def fit_droop(pairs: list[tuple], *, seed: int, chains=None, nsteps: int = 2000) -> Posterior:
    """emcee posterior of ``droop`` and ``row_droop`` from :func:`droop_rows` outputs.

    Model per row: ``d_y = c Tbar + c_row (dM_y - c Tbar) / (1 + c_row)`` with
    ``Tbar = dMbar / (1 + c + c_row)``.  Flat priors in (-0.5, 2).
    """
    d = np.concatenate([p[0] for p in pairs])
    e = np.concatenate([p[1] for p in pairs])
    mbar = np.concatenate([np.full(len(p[0]), p[2]) for p in pairs])
    my = np.concatenate([p[3] for p in pairs])

    def log_prob(p):
        c, cr = p[:, :1], p[:, 1:2]
        ok = (c[:, 0] > -0.5) & (c[:, 0] < 2) & (cr[:, 0] > -0.5) & (cr[:, 0] < 2)
        tbar = mbar / (1.0 + c + cr)
        model = c * tbar + cr * (my - c * tbar) / (1.0 + cr)
        return np.where(ok, -0.5 * np.sum(((d - model) / e) ** 2, axis=1), -np.inf)

    return sample_posterior(log_prob, [0.2, 0.02], [0.01, 0.002], names=("droop", "row_droop"),
                            seed=seed, vectorize=True, chains=chains, group="droop", nsteps=nsteps, burn=nsteps // 4)


def droop_pairs(stack: SiRates, good: np.ndarray, *, first_dcenum: int, margin_px: int = 12):
    """Consecutive disjoint (on, off) pairs of an on/off AOR from DCENUM ``first_dcenum`` on.

    The DCE with the larger array mean of a pair is "on".
    """
    idx = np.flatnonzero(stack.dcenum >= first_dcenum)
    out = []
    for a, b in zip(idx[0::2], idx[1::2]):
        if stack.csm[a] != stack.csm[b] or stack.nreads[a] != stack.nreads[b]:
            continue
        on, off = (a, b) if stack.rate[a].mean() > stack.rate[b].mean() else (b, a)
        out.append(droop_rows(stack.rate[on], stack.rate[off], good, margin_px=margin_px))
    if not out:
        raise ValueError("droop_pairs: no pair of DCEs at one mirror position past the first frames")
    return out


# ----------------------------------------------------------------------------- corrections
def corrected_rates(stack: SiRates, read2: np.ndarray, droop: float, row_droop: float) -> np.ndarray:
    """Rates (DN/s) with the read-2 bias and droop offsets removed, in the pipeline's order."""
    rate = stack.rate + read2[None] * stack.w1_rate()[:, None, None]
    return si_as.droop_inverse(rate, droop, row_droop)


def dark_planes(darks: SiRates, *, read2: np.ndarray, read2_err: np.ndarray, droop: float,
                droop_err: float, row_droop: float, read_noise: np.ndarray, gain: float,
                n_planes: int):
    """Dark cube (n_planes, NY, NX) DN/s and its 1-sigma error, plane ``min(DCENUM, n_planes-1)``.

    Per plane: the clipped mean of the corrected dark rates; error from the
    SUR noise law over the DCEs used, plus the read-2 and droop uncertainties
    propagated (in quadrature).
    """
    rate = corrected_rates(darks, read2, droop, row_droop)
    plane = np.minimum(darks.dcenum, n_planes - 1)
    w1 = darks.w1_rate()
    dark = np.zeros((n_planes,) + rate.shape[1:])
    err = np.zeros_like(dark)
    for p in range(n_planes):
        sel = plane == p
        if not sel.any():
            raise ValueError(f"dark_planes: no dark DCE with DCENUM plane {p}")
        x = rate[sel]
        ok = _clip_mask(x) if sel.sum() >= 3 else np.ones(x.shape, bool)
        cnt = ok.sum(0)
        dark[p] = np.where(ok, x, 0).sum(0) / cnt
        var = sum(np.where(ok[i], si_as.sur_variance(dark[p], nreads=int(n), read_time=darks.read_time,
                                                     gain=gain, read_noise=read_noise), 0)
                  for i, n in enumerate(darks.nreads[sel]))
        r2 = read2_err * np.mean(np.abs(w1[sel]))
        dr = droop_err * np.abs(dark[p]).mean() / (1.0 + droop)
        err[p] = np.sqrt(var / cnt ** 2 + r2 ** 2 + dr ** 2)
    return dark, err


def photocurrent(stack: SiRates, dark: np.ndarray, *, read2: np.ndarray, droop: float,
                 row_droop: float) -> np.ndarray:
    """Corrected rates less the dark of each DCE's DCENUM plane (DN/s)."""
    rate = corrected_rates(stack, read2, droop, row_droop)
    return rate - dark[np.minimum(stack.dcenum, dark.shape[0] - 1)]


# ----------------------------------------------------------------------------- first frames
def first_frame_samples(photo: np.ndarray, dcenum: np.ndarray, good: np.ndarray, n_first: int, *,
                        pointing: np.ndarray | None = None, tolerance_arcsec: float = 2.0,
                        detect_sigma: float = 4.0, margin_px: int = 4):
    """Per DCENUM ``d < n_first``: median over pixels of photo_d / photo of later DCEs.

    The reference is the mean of the DCEs with DCENUM >= ``n_first`` at the
    same pointing as DCE ``d`` (``pointing`` (N, 2) RA, Dec in deg, within
    ``tolerance_arcsec``; all of them when None), so faint field sources
    cancel: at other pointings their light, diluted below any detection,
    would bias the ratio at the 1e-4 level.  Residual source pixels (pointing
    jitter; either sign of the smoothed ratio beyond ``detect_sigma`` robust
    sigmas, dilated by ``margin_px``) are left out.  Returns (ratios, errors),
    each ``(n_first,)``, NaN where there is no DCE or reference; the error is
    the median's ``1.2533 sigma / sqrt(npix)`` with sigma robust.
    """
    ratios, errs = np.full(n_first, np.nan), np.full(n_first, np.nan)
    for d in range(n_first):
        sel = np.flatnonzero(dcenum == d)
        if not len(sel):
            continue
        ref_sel = dcenum >= n_first
        if pointing is not None:
            dra = (pointing[:, 0] - pointing[sel[0], 0]) * np.cos(np.radians(pointing[sel[0], 1]))
            ref_sel &= np.hypot(dra, pointing[:, 1] - pointing[sel[0], 1]) * 3600 <= tolerance_arcsec
        if not ref_sel.any():
            continue
        ref = photo[ref_sel].mean(0)
        ratio = photo[sel[0]] / np.where(ref > 0, ref, np.nan)
        use = good & (ref > 0) & np.isfinite(ratio)
        resid = np.where(use, ratio - np.median(ratio[use]), 0.0)
        sm = ndimage.gaussian_filter(resid, 1.5)
        src = np.abs(sm) > detect_sigma * _robust_sigma(sm[use])
        r = ratio[use & ~ndimage.binary_dilation(src, iterations=margin_px)]
        ratios[d] = np.median(r)
        errs[d] = 1.2533 * _robust_sigma(r) / np.sqrt(r.size)
    return ratios, errs


def fit_first_frame(ratios: np.ndarray, errors: np.ndarray, *, seed: int, chains=None,
                    nsteps: int = 2000) -> Posterior:
    """emcee posterior of the first-frame factors ``f0, f1, ...`` from per-AOR samples (K, n_first).

    Gaussian likelihood with the samples' stated errors; flat priors in (0.2, 2).
    """
    r, e = np.asarray(ratios), np.asarray(errors)
    n = r.shape[1]
    w = np.where(np.isfinite(r), 1.0 / e ** 2, 0.0)
    if not np.all(w.sum(0) > 0):
        missing = [d for d in range(n) if not w[:, d].sum() > 0]
        raise ValueError(f"fit_first_frame: no sample of DCENUM {missing} (a flat AOR needs a later "
                         f"DCE at the pointing of its first ones)")
    r = np.nan_to_num(r)

    def log_prob(p):
        ok = np.all((p > 0.2) & (p < 2.0), axis=1)
        lp = -0.5 * np.sum(w[None] * (r[None] - p[:, None, :]) ** 2, axis=(1, 2))
        return np.where(ok, lp, -np.inf)

    start = np.sum(w * r, 0) / np.sum(w, 0)
    scale = 1.0 / np.sqrt(np.sum(w, 0))
    return sample_posterior(log_prob, start, scale, names=tuple(f"f{d}" for d in range(n)),
                            seed=seed, vectorize=True, chains=chains, group="first_frame",
                            nsteps=nsteps, burn=nsteps // 4)


# ----------------------------------------------------------------------------- flats
def flat_for_position(photo: np.ndarray, var: np.ndarray, good: np.ndarray, *,
                      margin_px: int = 4, detect_sigma: float = 4.0):
    """Relative flat (median 1) and its 1-sigma error at one mirror position.

    ``photo`` (N, NY, NX) photocurrents of DCEs at that position (DN/s),
    ``var`` their variances.  Each frame is divided by its median; a first
    flat (pixel median) flattens the frames, in which sources are detected
    (``detect_sigma`` robust sigmas on a 1.5-pixel smoothed frame, dilated by
    ``margin_px``) and masked with per-pixel outliers; the flat is the mean
    of what is left, its error the noise law propagated.
    """
    level = np.median(photo[:, good], axis=1)[:, None, None]
    norm = photo / level
    nvar = var / level ** 2
    first = np.median(norm, axis=0)
    resid = norm / np.where(first > 0, first, 1.0) - 1.0
    use = np.ones(norm.shape, dtype=bool)
    for k in range(len(norm)):
        sm = ndimage.gaussian_filter(np.where(good, resid[k], 0.0), 1.5)
        src = sm > detect_sigma * _robust_sigma(sm[good])
        use[k] &= ~ndimage.binary_dilation(src, iterations=margin_px)
    use &= _outliers_ok(norm, use)
    cnt = use.sum(0)
    flat = np.where(use, norm, 0).sum(0) / np.maximum(cnt, 1)
    err = np.sqrt(np.where(use, nvar, 0).sum(0)) / np.maximum(cnt, 1)
    flat = np.where(cnt > 0, flat, first)
    err = np.where(cnt > 0, err, np.inf)
    s = np.median(flat[good])
    return flat / s, err / s


def _outliers_ok(norm: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per pixel, values within CLIP_SIGMA robust sigmas of the median of the used ones."""
    x = np.where(use, norm, np.nan)
    med = np.nanmedian(x, axis=0)
    sig = 1.4826 * np.nanmedian(np.abs(x - med), axis=0)
    return np.abs(norm - med) <= CLIP_SIGMA * np.maximum(np.nan_to_num(sig, nan=np.inf), 1e-6)


def gain_and_spot_flats(flats: np.ndarray, errs: np.ndarray, good: np.ndarray, *,
                        spot_sigma: float = 3.0, spot_margin_px: int = 3):
    """Flats of all positions on the gain-flat convention, and the gain flat.

    The spots only darken, and their faint wings overlap from one mirror
    position to the next, so a plain pixel median over positions would be
    biased low near them, and with it the gain flat's median (the flats'
    common scale, which FLUXCONV assumes).  Instead: positions are put on a
    common scale by the median ratio to the first (spots fall on both sides
    of the ratio); a spot of a position is where its flat lies ``spot_sigma``
    errors below the pixel median over positions, dilated by
    ``spot_margin_px``; the gain flat is the mean over the unspotted
    positions; each position is rescaled so its unspotted ratio to the gain
    flat has median 1, and all so that the gain flat has median 1 over good
    pixels.  Returns (flats, errors, gain flat).
    """
    flats = flats / np.array([np.median((f / flats[0])[good]) for f in flats])[:, None, None]
    med = np.median(flats, axis=0)
    spotted = np.stack([ndimage.binary_dilation(f < med - spot_sigma * e, iterations=spot_margin_px)
                        for f, e in zip(flats, errs)])
    clean = ~spotted

    def gain(fl):
        n = clean.sum(0)
        return np.where(n > 0, np.where(clean, fl, 0).sum(0) / np.maximum(n, 1), np.median(fl, 0))

    g = gain(flats)
    scale = np.array([np.median((f / g)[good & c]) for f, c in zip(flats, clean)])
    flats, errs = flats / scale[:, None, None], errs / scale[:, None, None]
    g = gain(flats)
    norm = np.median(g[good])
    return flats / norm, errs / norm, g / norm


def permanent_mask(gainflat: np.ndarray, read_noise: np.ndarray, *, dead_fraction: float = 0.5,
                   noisy_factor: float = 2.0) -> np.ndarray:
    """pmask: BAD_PIXEL where the response is below ``dead_fraction`` (dead) or above
    ``1/dead_fraction``, NOISY where the read noise exceeds ``noisy_factor`` x its median."""
    pmask = np.zeros(gainflat.shape, dtype=np.int32)
    dead = (gainflat < dead_fraction) | (gainflat > 1.0 / dead_fraction) | ~np.isfinite(gainflat)
    pmask[dead] |= PMASK["BAD_PIXEL"]
    pmask[read_noise > noisy_factor * np.median(read_noise)] |= PMASK["NOISY"]
    return pmask
