"""Ramp fitting at the Cramer-Rao bound, with jump (cosmic-ray) detection.

The physics
-----------
A non-destructive ramp samples the integrated charge ``q_k`` at reads
``k = 0..N-1`` spaced ``dt`` apart, plus read noise ``n_k`` (sigma_r, DN).  The
successive differences ``d_k = q_k - q_{k-1} + n_k - n_{k-1}`` have mean
``rate * dt`` and a *tridiagonal* covariance: the Poisson part ``p = rate dt /
gain`` (DN^2) is independent from one interval to the next, and each read's
noise appears in two neighbouring differences::

    C = tridiag(-sigma_r^2, 2 sigma_r^2 + p, -sigma_r^2)

Generalised least squares (GLS) on the differences with this covariance is
the minimum-variance unbiased estimator -- the Cramer-Rao bound for Gaussian
noise.  Any other noise with independent increments (the Ge arrays' excess
current noise, density ``excess_noise`` DN^2/s) simply adds to ``p``:
``p = rate dt / gain + excess_noise dt``.  Ordinary least squares on the reads reaches it only when read noise
dominates, the mean of the differences only when Poisson noise dominates;
stcal's OLS_C interpolates with ad-hoc weights and loses ~10 % in between
(anchors.md 1.7).

The trick that makes GLS cheap
------------------------------
``C`` is a symmetric tridiagonal Toeplitz matrix, so ``x = C^-1 1`` has a
closed form.  With ``c = 2 + p / sigma_r^2`` and ``r`` the root below one of
``r^2 - c r + 1 = 0``::

    x_i = (1 / p) * (1 - (r^i + r^(m+1-i)) / (1 + r^(m+1))),   i = 1..m

for a segment of ``m`` differences.  The estimate is ``rate = sum(x d) / (dt
sum(x))`` with variance ``1 / (dt^2 sum(x))``.  No matrix is ever formed or
solved: the cost is a few array operations per read, vectorised over pixels.

Evaluated as written, ``1 - bracket`` cancels catastrophically when ``p <<
sigma_r^2`` (``r`` -> 1: at zero rate and 600 DN read noise the weights are
pure rounding).  Because ``r^i r^(m+1-i) = r^(m+1)`` it factors as
``(1 - r^i)(1 - r^(m+1-i)) / (1 + r^(m+1))``, and ``1 - r^i = -expm1(i log
r)`` with ``log r = -log1p(eps/2 + sqrt(eps (1 + eps/4)))``, ``eps = p /
sigma_r^2``: every factor is then accurate to a few ulps for any rate and read
noise (:func:`gls_weights`).

Segments and jumps
------------------
A cosmic ray adds charge between two reads: it shows up in one difference
only.  Dropping that difference splits the ramp into two segments whose
noise is *independent* (the reads on either side of the dropped difference
appear in no shared difference), so the GLS of the whole ramp is the sum of
the per-segment GLS sums: noise-weighted fusion of segments falls out exactly.
Unusable reads (saturated, NaN, masked) split segments the same way.
Segments with fewer than ``min_segment_reads`` reads are dropped, as in the
SSC's SLOPER (>= 4 reads, [GeRT /4]).

Jumps are found iteratively: each difference's residual from the pixel's
rate, in units of its own noise ``sqrt(2 sigma_r^2 + p)``, is compared with
``threshold``; the largest offender above it is flagged, the rate re-fitted
without it, and so on until none is left.  The first rate is the median of
the differences (robust to the jumps themselves); later ones are GLS.  Under
the null hypothesis each difference is a false positive with probability
``erfc(threshold / sqrt(2))``: :func:`false_jump_rate` gives that number, so
validation can compare what is flagged with what the threshold predicts.

Two kernels, one algorithm
--------------------------
The algorithm runs in one of two kernels, chosen with ``fit_ramps(kernel=...)``:

* ``"numba"`` (:mod:`reprocess.ramp_kernel_numba`, the default when numba is
  importable): compiled, one ramp at a time from start to end, pixels spread
  over threads.  ``benchmarks/ramp_kernel.py`` measures ~3x the numpy kernel's
  throughput on one thread (10^5 32-read ramps), more on several cores.
* ``"numpy"`` (this module): vectorised over blocks of pixels; the fallback
  when numba is missing (it is the optional ``fast`` extra).

They compute the same quantities in the same order, up to a few ulps in the
GLS weights (how each evaluates ``expm1``): slopes agree to ~1e-14 of their
error bars, errors to ~1e-15, jump flags and segment counts exactly; the tests
hold them to 1e-12.

Determinism
-----------
Every operation is per pixel, and sums over reads run in a fixed order, so
the result for a pixel is bit-identical whatever the chunking or the number
of threads.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "KERNELS", "RampFit", "default_kernel", "false_jump_rate", "fit_ramps",
           "gls_weights"]

DEFAULT_THRESHOLD = 4.5   # sigma of a difference; 2-sided false-positive rate 6.8e-6 per difference
_P_FLOOR = 1e-12          # DN^2: weights for zero rate and zero read noise (uniform), and z-score floor
_EPS_FLOOR = 1e-200       # p / sigma_r^2 floor: zero rate gives the read-noise limit, not 0/0
_TIE = 1e-9               # jump candidates this close (relative) to the worst are tied with it
KERNELS = ("numba", "numpy")
_NUMBA_DTYPES = "fd"      # reads the numba kernel takes as they are (one compiled version each)


@dataclass
class RampFit:
    """Result of :func:`fit_ramps`; every map is ``(NY, NX)`` unless said otherwise.

    Attributes
    ----------
    slope : ndarray
        Rate, DN/s (NaN where no segment had enough reads).
    slope_err : ndarray
        1-sigma uncertainty of ``slope``, DN/s, from the noise model evaluated at
        the fitted rate.
    jumps : ndarray of bool, (NREADS, NY, NX)
        True at read k when a jump was found between reads k-1 and k.
    n_reads : ndarray of int
        Reads in the segments that entered the fit.
    n_segments : ndarray of int
        Segments that entered the fit.
    """

    slope: np.ndarray
    slope_err: np.ndarray
    jumps: np.ndarray
    n_reads: np.ndarray
    n_segments: np.ndarray


def false_jump_rate(threshold: float = DEFAULT_THRESHOLD) -> float:
    """Expected false-jump probability per difference for a two-sided ``threshold`` (sigma)."""
    return math.erfc(threshold / math.sqrt(2.0))


def fit_ramps(reads: np.ndarray, *, read_time: float, gain, read_noise, excess_noise=0.0,
              good: np.ndarray | None = None, threshold: float = DEFAULT_THRESHOLD,
              min_segment_reads: int = 4, max_jumps: int = 20,
              chunk_pixels: int | None = None, kernel: str | None = None,
              threads: int | None = None) -> RampFit:
    """Fit the slope of every ramp in a cube, finding and excluding jumps.

    Parameters
    ----------
    reads : array_like, (NREADS, NY, NX)
        Ramp samples in DN (integer or float; already linearised).  Not modified.
    read_time : float
        Time between reads, s.
    gain : float or (NY, NX) array
        Conversion gain, e-/DN.
    read_noise : float or (NY, NX) array
        Noise of one read, DN.
    excess_noise : float or (NY, NX) array, optional
        Density of white current noise beyond the shot noise, DN^2/s: each
        difference gains ``excess_noise * read_time`` of independent variance
        (the Ge arrays' excess noise, :mod:`calibration.instrument`).
    good : (NREADS, NY, NX) bool array, optional
        False for reads that must not be used (saturated, masked).  NaN reads
        are never used.
    threshold : float, optional
        Jump threshold in sigma of one difference (two-sided).
    min_segment_reads : int, optional
        Segments with fewer reads are not used.
    max_jumps : int, optional
        At most this many jumps are flagged per ramp.
    chunk_pixels : int, optional
        Pixels processed at once (bounds memory; does not change results).  By
        default a sixteenth of the frame, between 512 and 4096 pixels: the
        temporaries then stay below the input's size, and blocks of a few
        thousand pixels are also the fastest (they stay in cache).  Numpy
        kernel only.
    kernel : {"numba", "numpy"}, optional
        Which implementation runs (the same numbers to ~1e-14 of the error bars); by
        default :func:`default_kernel`.
    threads : int, optional
        Threads of the numba kernel (default: numba's setting, all cores
        unless ``NUMBA_NUM_THREADS`` says otherwise).  Does not change results.

    Returns
    -------
    RampFit
    """
    reads = np.asarray(reads)
    if reads.ndim != 3:
        raise ValueError(f"reads must be (NREADS, NY, NX), got shape {reads.shape}")
    nreads, ny, nx = reads.shape
    if nreads < 2:
        raise ValueError(f"a ramp needs at least 2 reads, got {nreads}")
    if not read_time > 0:
        raise ValueError(f"read_time must be positive, got {read_time!r}")
    if good is not None and np.shape(good) != reads.shape:
        raise ValueError(f"good has shape {np.shape(good)}, reads {reads.shape}")
    kernel = default_kernel() if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    npix = ny * nx
    flat = reads.reshape(nreads, npix)
    good_flat = None if good is None else np.asarray(good, dtype=bool).reshape(nreads, npix)
    gain_flat = np.broadcast_to(np.asarray(gain, dtype=float), (ny, nx)).reshape(npix)
    rn_flat = np.broadcast_to(np.asarray(read_noise, dtype=float), (ny, nx)).reshape(npix)
    ex_flat = np.broadcast_to(np.asarray(excess_noise, dtype=float), (ny, nx)).reshape(npix)
    if kernel == "numba":
        out = _fit_numba(flat, good_flat, read_time, gain_flat, rn_flat, ex_flat, threshold,
                         min_segment_reads, max_jumps, threads)
    else:
        out = _fit_numpy(flat, good_flat, read_time, gain_flat, rn_flat, ex_flat, threshold,
                         min_segment_reads, max_jumps, chunk_pixels)
    slope, err, jumps, n_reads, n_seg = out
    shape = (ny, nx)
    return RampFit(slope.reshape(shape), err.reshape(shape), jumps.reshape(reads.shape),
                   n_reads.reshape(shape), n_seg.reshape(shape))


@functools.cache
def _numba_module():
    """:mod:`reprocess.ramp_kernel_numba`, or None when numba is not importable."""
    try:
        from . import ramp_kernel_numba
    except ImportError:
        return None
    return ramp_kernel_numba


def default_kernel() -> str:
    """``"numba"`` when numba is importable, else ``"numpy"`` (the fallback)."""
    return "numba" if _numba_module() is not None else "numpy"


def _fit_numba(flat, good, dt, gain, rn, excess, threshold, min_reads, max_jumps, threads):
    """The compiled kernel on (NREADS, P) reads and (P,) noise maps."""
    mod = _numba_module()
    if mod is None:
        raise ValueError("kernel='numba' needs numba: pip install 'mips-toolkit[fast]'")
    if threads is not None and not 1 <= int(threads) <= mod.max_threads():
        raise ValueError(f"threads must be 1..{mod.max_threads()} (NUMBA_NUM_THREADS), got {threads!r}")
    if not (flat.dtype.isnative and flat.dtype.char in _NUMBA_DTYPES):
        flat = flat.astype(float)       # one compiled version per dtype: keep them few (FITS: big-endian)
    as_c = np.ascontiguousarray
    return mod.fit_pixels(as_c(flat), None if good is None else as_c(good), read_time=dt,
                          gain=as_c(gain), read_noise=as_c(rn), excess_noise=as_c(excess),
                          threshold=threshold, min_segment_reads=min_reads, max_jumps=max_jumps,
                          threads=threads)


def _fit_numpy(flat, good_flat, dt, gain_flat, rn_flat, ex_flat, threshold, min_reads, max_jumps,
               chunk_pixels):
    """The vectorised kernel, block by block of pixels."""
    nreads, npix = flat.shape
    slope = np.empty(npix)
    err = np.empty(npix)
    jumps = np.zeros((nreads, npix), dtype=bool)
    n_reads = np.empty(npix, dtype=np.int32)
    n_seg = np.empty(npix, dtype=np.int32)
    step = int(chunk_pixels) if chunk_pixels else int(np.clip(npix // 16, 512, 4096))
    step = max(1, step)
    for p0 in range(0, npix, step):
        sl = slice(p0, min(npix, p0 + step))
        g = None if good_flat is None else good_flat[:, sl]
        out = _fit_chunk(flat[:, sl], g, dt, gain_flat[sl], rn_flat[sl], ex_flat[sl],
                         threshold, min_reads, max_jumps)
        slope[sl], err[sl], jumps[1:, sl], n_reads[sl], n_seg[sl] = out
    return slope, err, jumps, n_reads, n_seg


def _fit_chunk(reads, good, dt, gain, rn, excess, threshold, min_reads, max_jumps):
    """Fit a (NREADS, P) block; returns slope, err, jump flags of the differences, n_reads, n_seg."""
    r = reads.astype(float)
    ok = np.isfinite(r)
    if good is not None:
        ok &= good
    d = np.diff(r, axis=0)
    usable = ok[1:] & ok[:-1]
    d[~usable] = 0.0
    noise = _Noise(dt, gain, rn * rn, np.maximum(excess, 0.0) * dt)
    jump, rate = _find_jumps(d, usable, noise, threshold, max_jumps)
    use = usable & ~jump
    seg_pos, seg_len = _segments(use)
    use &= seg_len >= (min_reads - 1)
    # final GLS with weights from the detection's GLS rate (itself weighted by the median):
    # two passes, which removes the dependence on the starting rate (anchors.md 1.7)
    num, den = _gls_sums(d, use, seg_pos, seg_len, rate, noise)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(den > 0, num / (den * dt), np.nan)
        err = np.where(den > 0, 1.0 / np.sqrt(den) / dt, np.nan)
    n_seg = _sum0((seg_pos == 1) & use).astype(np.int32)
    n_reads = (_sum0(use) + n_seg).astype(np.int32)
    return rate, err, jump, n_reads, n_seg


@dataclass
class _Noise:
    """Noise model of the differences of a block of P pixels: read time ``dt`` (s), ``gain``
    (e-/DN), read variance ``sig2`` (DN^2 per read) and excess variance ``ex`` (DN^2 per
    difference), the last three (P,) arrays."""

    dt: float
    gain: np.ndarray
    sig2: np.ndarray
    ex: np.ndarray

    def take(self, idx) -> _Noise:
        return _Noise(self.dt, self.gain[idx], self.sig2[idx], self.ex[idx])

    def independent_var(self, rate: np.ndarray) -> np.ndarray:
        """Variance per difference that is independent between differences (shot + excess), DN^2."""
        return np.maximum(np.nan_to_num(rate), 0.0) * self.dt / self.gain + self.ex


def _find_jumps(d, usable, noise, threshold, max_jumps):
    """Flag jumps in the differences ``d`` (NDIFF, P).

    Returns the jump flags (bool, NDIFF x P) and the GLS rate of the unflagged
    differences.  Each round compares every difference with the pixel's GLS rate
    (a median would be robust but its own noise, ignored by the threshold, raises
    the false-positive rate by ~50 % on 32-read ramps), flags the worst offender
    above ``threshold`` and refits those pixels only.

    Offenders within ``_TIE`` (relative) of the worst count as tied with it, and a
    tie goes to the first: the two differences of a 3-read ramp are always equally
    far from their mean, and which one rounding makes the larger must not decide
    (nor make the compiled kernel disagree with this one).
    """
    jump = np.zeros(d.shape, dtype=bool)
    rate = _rate_gls(d, usable, noise)
    act = np.arange(d.shape[1])
    for _ in range(max_jumps):
        dd, uu, ra, nz = d[:, act], usable[:, act] & ~jump[:, act], rate[act], noise.take(act)
        var_d = 2.0 * nz.sig2 + nz.independent_var(ra)
        z = np.abs(dd - ra * noise.dt) / np.sqrt(np.maximum(var_d, _P_FLOOR))
        z = np.nan_to_num(np.where(uu, z, -1.0), nan=-1.0)
        zmax = z.max(axis=0)
        worst = np.argmax(z >= zmax * (1.0 - _TIE), axis=0)
        hit = zmax > threshold
        if not hit.any():
            break
        jump[worst[hit], act[hit]] = True
        act = act[hit]
        rate[act] = _rate_gls(d[:, act], usable[:, act] & ~jump[:, act], noise.take(act))
    return jump, rate


def _rate_gls(d, use, noise):
    """GLS rate of differences ``d`` where ``use``, starting from their median (DN/s)."""
    seg_pos, seg_len = _segments(use)
    rate = _median_rate(d, use, noise.dt)
    num, den = _gls_sums(d, use, seg_pos, seg_len, rate, noise)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / (den * noise.dt), np.nan)


def _median_rate(d, use, dt):
    """Median of the usable differences of each pixel / dt (NaN where none)."""
    x = np.where(use, d, np.inf)
    x.sort(axis=0)
    n = _sum0(use)
    lo = np.clip((n - 1) // 2, 0, None)
    hi = np.clip(n // 2, 0, None)
    cols = np.arange(d.shape[1])
    with np.errstate(invalid="ignore"):
        med = 0.5 * (x[lo, cols] + x[hi, cols])
    return np.where(n > 0, med / dt, np.nan)


def gls_weights(seg_pos: np.ndarray, seg_len: np.ndarray, poisson_var: np.ndarray,
                read_var: np.ndarray) -> np.ndarray:
    """Closed-form ``C^-1 1`` for differences at 1-based position ``seg_pos`` in segments of ``seg_len``.

    ``poisson_var`` (DN^2 per difference) and ``read_var`` (DN^2 per read) are per pixel
    and broadcast against the (NDIFF, P) position arrays.

    Written so that no step cancels: with ``eps = p / sigma_r^2``,
    ``log r = -acosh(1 + eps / 2) = -log1p(eps / 2 + sqrt(eps (1 + eps / 4)))``
    and, since ``r^i r^(m+1-i) = r^(m+1)``,
    ``1 - bracket = (1 - r^i)(1 - r^(m+1-i)) / (1 + r^(m+1))`` with
    ``1 - r^i = -expm1(i log r)``.  The division by ``p`` is done as a division
    by ``eps sigma_r^2``, with ``eps`` floored at ``_EPS_FLOOR``: at zero rate the
    weights tend to the read-noise limit ``i (m + 1 - i) / (2 sigma_r^2)`` instead of
    0/0.  With no read noise (``eps`` infinite, ``r = 0``) they are ``1 / p``;
    with neither, uniform (``p`` floored at ``_P_FLOOR``).
    """
    p = np.maximum(np.asarray(poisson_var, dtype=float), 0.0)
    s2 = np.asarray(read_var, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eps = np.where(s2 > 0, p / s2, np.inf)               # inf when read noise is 0
        eps = np.maximum(eps, _EPS_FLOOR)
        scale = np.where(s2 > 0, eps * s2, np.where(p > 0, p, _P_FLOOR))   # = p, floored
        logr = -np.log1p(0.5 * eps + np.sqrt(eps * (1.0 + 0.25 * eps)))   # -inf when r = 0
        shape = np.broadcast_shapes(np.shape(seg_pos), np.shape(seg_len), logr.shape)
        i = np.broadcast_to(seg_pos, shape).astype(float)    # full-shape copy: in-place from here
        em_i = i * logr
        np.expm1(em_i, out=em_i)                             # r^i - 1
        em_j = seg_len - i
        em_j += 1.0
        em_j *= logr
        np.expm1(em_j, out=em_j)                             # r^(m+1-i) - 1
        num = em_i * em_j                                    # (1 - r^i)(1 - r^(m+1-i))
        den = em_i + em_j
        den += 2.0
        den += num                                           # 1 + r^(m+1) = 1 + (1 + em_i)(1 + em_j)
        den *= scale
        num /= den
        return num


def _gls_sums(d, use, seg_pos, seg_len, rate, noise):
    """Sums of x d and x over the used differences: the GLS numerator and denominator."""
    w = gls_weights(seg_pos, seg_len, noise.independent_var(rate), noise.sig2)
    w = np.where(use, w, 0.0)
    return _sum0(w * d), _sum0(w)


def _segments(use):
    """1-based position of each used difference in its run, and the run's length (0 elsewhere)."""
    u = use.astype(np.int32)
    pos = _run_position(u)
    rev = _run_position(u[::-1])[::-1]
    length = np.where(use, pos + rev - 1, 0)
    return pos, length


def _run_position(u):
    """For a 0/1 (N, P) array, the 1-based index of each 1 within its run of ones (0 elsewhere)."""
    pos = np.empty_like(u)
    run = np.zeros(u.shape[1], dtype=u.dtype)
    for k in range(u.shape[0]):
        run = (run + 1) * u[k]
        pos[k] = run
    return pos


def _sum0(a):
    """Sum over axis 0 in a fixed order (bit-identical for any number of columns).

    numpy sums a contiguous axis pairwise, so a one-column block would round
    differently from a wide one; integers are exact either way.
    """
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a.sum(axis=0, dtype=np.int64)
    total = np.zeros(a.shape[1:], dtype=a.dtype)
    for row in a:
        total += row
    return total
