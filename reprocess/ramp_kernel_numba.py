"""The ramp kernel compiled per pixel with numba: the GLS + jump search of :mod:`reprocess.ramps`.

Same algorithm, other loop order
--------------------------------
:mod:`reprocess.ramps` runs the algorithm vectorised over pixels: every step is an array
operation over a block of a few thousand ramps, so each step is a pass over (NDIFF, P)
temporaries in memory, and every difference's weight is recomputed from scratch.  Here each
ramp is handled from start to end in registers and a few NDIFF-long scratch arrays (one pass
over its reads), and blocks of 128 pixels are spread over threads with ``prange``.  The work
per ramp also drops, without changing the arithmetic of what is computed:

* the closed-form weights of a run of ``m`` differences need ``expm1(k log r)`` only for
  ``k = 1..m`` -- ``r^i - 1`` and ``r^(m+1-i) - 1`` are both entries of that table -- and the
  weights are symmetric (``w_i = w_(m+1-i)`` to the last bit), so half are computed;
* the table itself needs one call of ``expm1``: ``r - 1``; the others follow from
  ``r^(a+b) - 1 = (r^a - 1) + (r^b - 1) + (r^a - 1)(r^b - 1)`` with ``a`` the largest power of
  two below ``k``.  Nothing cancels (the first two terms have one sign, the product is smaller
  than either), so the rounding errors add up slowly: within 4 ulps of ``expm1(k log r)`` for
  ``k <= 79`` and any ``log r`` (checked over 1e-9..60); the ``2 m`` calls of ``expm1`` it
  replaces were the largest single cost of a fit;
* the median that starts each fit comes from a sorting network (:mod:`._sort32_numba`),
  branch-free, instead of a sort that mispredicts half its branches on noise;
* the worst jump candidate is found on ``|d - rate dt|`` (its noise is the same for every
  difference of the ramp): one division per round instead of one per difference.

Otherwise every floating-point operation of :mod:`reprocess.ramps` is kept, in the same order
(sums over reads run from the first difference to the last, skipping the zero-weight terms the
numpy path adds as exact zeros).  The results differ by the table's few ulps and by numpy's
vectorised ``expm1``/``log1p``, which may differ from the C library's by an ulp: ~1e-14 of a
slope's error bar, while jump flags and segment counts are the same.

Threads and determinism
-----------------------
Each pixel's result depends on that pixel's reads only and nothing is reduced across pixels,
so the output is bit-identical for any number of threads and any split of the pixels.

numba's default threading layer on Linux is GNU OpenMP when it is found, and a process that
has used it aborts its forked children ("fork() called from a process already using GNU
OpenMP") -- which is how :func:`reprocess.pipeline.reprocess_many` starts its workers.  Unless
the user chose a layer (``NUMBA_THREADING_LAYER``), this module asks for a fork-safe one (TBB
when installed, else numba's own workqueue).  The workqueue must not be entered by two Python
threads at once, so launches are serialised by a lock (each launch uses every thread anyway).

The compiled code is cached on disk (``cache=True``, in ``__pycache__`` or
``NUMBA_CACHE_DIR``), one version per reads dtype (float32, float64; others are converted to
float64 first): the first call of a new installation compiles for 8-10 CPU-seconds, later
processes load it (~0.5 CPU-seconds on the first call, mostly numba's own start-up).  Divisions follow IEEE
(``error_model="numpy"``), as numpy's do, instead of raising on a zero.
"""
from __future__ import annotations

import math
import os
import threading

import numba
import numpy as np
from numba import njit, prange

from ._sort32_numba import SIZE as _NET
from ._sort32_numba import sort32
from .ramps import _EPS_FLOOR, _P_FLOOR, _TIE

__all__ = ["fit_pixels", "max_threads"]

if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "forksafe"

_BLOCK = 128                      # pixels per parallel task: balances the threads, tile in L2
_DBL_MAX = np.finfo(np.float64).max
_LAUNCH = threading.Lock()


def max_threads() -> int:
    """Most threads a launch can use (``NUMBA_NUM_THREADS``, default the number of cores)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def fit_pixels(flat: np.ndarray, good: np.ndarray | None, *, read_time: float, gain: np.ndarray,
               read_noise: np.ndarray, excess_noise: np.ndarray, threshold: float,
               min_segment_reads: int, max_jumps: int, threads: int | None = None):
    """Fit ``flat`` (NREADS, P) with per-pixel ``gain``, ``read_noise`` and ``excess_noise`` (P,).

    Returns slope, slope_err (P,), jumps (NREADS, P) and n_reads, n_segments (P,), as
    :func:`reprocess.ramps.fit_ramps` defines them.  ``threads`` (default: numba's current
    setting) only changes the speed.
    """
    nreads, npix = flat.shape
    slope = np.empty(npix)
    err = np.empty(npix)
    jumps = np.zeros((nreads, npix), dtype=np.bool_)
    n_reads = np.empty(npix, dtype=np.int32)
    n_seg = np.empty(npix, dtype=np.int32)
    has_good = good is not None
    good_arr = good if has_good else np.ones((1, 1), dtype=np.bool_)
    with _LAUNCH:
        previous = numba.get_num_threads()
        if threads is not None:
            numba.set_num_threads(int(threads))
        try:
            _fit_all(flat, good_arr, has_good, float(read_time), gain, read_noise, excess_noise,
                     float(threshold), int(min_segment_reads), int(max_jumps),
                     slope, err, jumps, n_reads, n_seg)
        finally:
            numba.set_num_threads(previous)
    return slope, err, jumps, n_reads, n_seg


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _fit_all(flat, good, has_good, dt, gain, rn, excess, threshold, min_reads, max_jumps,
             slope, err, jumps, n_reads, n_seg):
    """Blocks of ``_BLOCK`` pixels spread over the threads.

    The helpers are inlined at numba's level (``inline="always"``; not ``_gls_sums``, which has
    two call sites, nor the sorting network): ~15 % faster than calls, for ~2 CPU-s more of the
    one-off compilation.
    """
    npix = flat.shape[1]
    for b in prange((npix + _BLOCK - 1) // _BLOCK):
        _fit_block(b * _BLOCK, min(npix, (b + 1) * _BLOCK), flat, good, has_good, dt, gain, rn, excess,
                   threshold, min_reads, max_jumps, slope, err, jumps, n_reads, n_seg)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _fit_block(p0, p1, flat, good, has_good, dt, gain, rn, excess, threshold, min_reads, max_jumps,
               slope, err, jumps, n_reads, n_seg):
    """Fit pixels ``p0 .. p1 - 1``, one ramp at a time, into the output arrays."""
    nreads = flat.shape[0]
    n = nreads - 1
    tile = np.empty((p1 - p0, nreads))                 # the block's reads, ramp by ramp
    ok = np.ones((p1 - p0, nreads), dtype=np.bool_)
    for k in range(nreads):                            # read rows are contiguous: copy them across
        for j in range(p1 - p0):
            tile[j, k] = flat[k, p0 + j]
        if has_good:
            for j in range(p1 - p0):
                ok[j, k] = good[k, p0 + j]
    d = np.empty(n)                                    # differences, DN (0 where unusable)
    usable = np.empty(n, dtype=np.bool_)
    jump = np.empty(n, dtype=np.bool_)
    use = np.empty(n, dtype=np.bool_)
    nchunks = (n + _NET - 1) // _NET
    work = np.empty(nchunks * _NET)                    # median scratch
    heads = np.empty(nchunks, dtype=np.int64)
    table = np.empty((2, n + 1))                       # expm1(k log r); weights of a run
    for j in range(p1 - p0):
        p = p0 + j
        _differences(tile[j], ok[j], d, usable)
        s2 = rn[p] * rn[p]
        ex = max(excess[p], 0.0) * dt                  # as np.maximum: NaN stays NaN
        rate = _find_jumps(d, usable, jump, use, work, heads, table, dt, gain[p], s2, ex,
                           threshold, max_jumps)
        for k in range(n):
            use[k] = usable[k] and not jump[k]
            if jump[k]:
                jumps[k + 1, p] = True
        nused, nsegs = _drop_short_segments(use, min_reads - 1)
        num, den = _gls_sums(d, use, table, _independent_var(rate, dt, gain[p], ex), s2)
        if den > 0.0:
            slope[p] = num / (den * dt)
            err[p] = 1.0 / math.sqrt(den) / dt
        else:
            slope[p] = np.nan
            err[p] = np.nan
        n_seg[p] = nsegs
        n_reads[p] = nused + nsegs


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _differences(reads, ok, d, usable):
    """Differences of one ramp's reads, and whether both reads of each are usable (finite, good)."""
    prev = reads[0]
    prev_ok = ok[0] and math.isfinite(prev)
    for k in range(d.size):
        cur = reads[k + 1]
        cur_ok = ok[k + 1] and math.isfinite(cur)
        both = prev_ok and cur_ok
        usable[k] = both
        d[k] = cur - prev if both else 0.0
        prev = cur
        prev_ok = cur_ok


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _find_jumps(d, usable, jump, use, work, heads, table, dt, gain, s2, ex, threshold, max_jumps):
    """Flag jumps (into ``jump``) like ``ramps._find_jumps``; returns the GLS rate without them.

    Each round compares every used difference with the rate in units of its noise, flags the
    worst above ``threshold`` (the first of those within ``_TIE`` of it) and refits.  The noise
    is the same for all differences, so the candidates are ranked by ``|d - rate dt|`` (held in
    ``work``, which the median is done with by then) and only the worst is divided by it;
    numpy ranks the quotients, which can only differ for a value within rounding of the
    ``_TIE`` boundary.
    """
    n = d.size
    for k in range(n):
        jump[k] = False
        use[k] = usable[k]
    rate = np.nan
    for rnd in range(max_jumps + 1):                   # a fit, then up to max_jumps flag-and-refit
        rate = _rate_gls(d, use, work, heads, table, dt, gain, s2, ex)
        if rnd == max_jumps:
            break
        sd = math.sqrt(max(2.0 * s2 + _independent_var(rate, dt, gain, ex), _P_FLOOR))
        rate_dt = rate * dt
        amax = -1.0
        for k in range(n):
            a = abs(d[k] - rate_dt) if use[k] else -1.0
            work[k] = a
            amax = max(amax, a)                        # a NaN rate: no candidate
        zmax = amax / sd if amax >= 0.0 else -1.0      # = the largest z, one division
        if not zmax > threshold:
            break
        worst = 0
        tied = amax * (1.0 - _TIE)
        for k in range(n):                             # the first of the worst (ramps._find_jumps)
            if work[k] >= tied:
                worst = k
                break
        jump[worst] = True
        use[worst] = False
    return rate


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _independent_var(rate, dt, gain, ex):
    """Shot + excess variance of one difference at ``rate`` (``_Noise.independent_var``), DN^2."""
    if math.isnan(rate):                               # np.nan_to_num
        rate = 0.0
    return max(min(rate, _DBL_MAX), 0.0) * dt / gain + ex


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _rate_gls(d, use, work, heads, table, dt, gain, s2, ex):
    """GLS rate of the used differences with weights at their median rate (DN/s)."""
    start = _median(d, use, work, heads) / dt
    num, den = _gls_sums(d, use, table, _independent_var(start, dt, gain, ex), s2)
    if den > 0.0:
        return num / (den * dt)
    return np.nan


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _median(d, use, work, heads):
    """Median of ``d`` where ``use`` (NaN when none): the mean of the two middle values when even.

    The values are sorted in chunks of 32 by the network (padded with +inf), then the chunks'
    heads are merged up to the middle.
    """
    cnt = 0
    for k in range(d.size):                            # branch-free compaction
        work[cnt] = d[k]
        cnt += use[k]
    if cnt == 0:
        return np.nan
    nchunks = (cnt + _NET - 1) // _NET
    for k in range(cnt, nchunks * _NET):
        work[k] = np.inf
    for c in range(nchunks):
        sort32(work[c * _NET:(c + 1) * _NET])
    lo = (cnt - 1) // 2
    hi = cnt // 2
    if nchunks == 1:
        return 0.5 * (work[lo] + work[hi])
    for c in range(nchunks):
        heads[c] = 0
    low = np.inf
    best = np.inf
    for rank in range(hi + 1):                         # pop the smallest head hi + 1 times
        best = np.inf
        which = 0
        for c in range(nchunks):
            if heads[c] < _NET and work[c * _NET + heads[c]] < best:
                best = work[c * _NET + heads[c]]
                which = c
        heads[which] += 1
        if rank == lo:
            low = best
    return 0.5 * (low + best)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _weight_table(table, mmax, p, s2):
    """Fill ``table[k] = expm1(k log r)`` for k = 1..mmax; return the weights' scale (= p, floored).

    The same steps as :func:`reprocess.ramps.gls_weights` (see there for why they do not cancel).
    """
    p = max(p, 0.0)                                    # as np.maximum: NaN stays NaN
    eps = max(p / s2 if s2 > 0.0 else np.inf, _EPS_FLOOR)
    if s2 > 0.0:
        scale = eps * s2
    elif p > 0.0:
        scale = p
    else:
        scale = _P_FLOOR
    logr = -math.log1p(0.5 * eps + math.sqrt(eps * (1.0 + 0.25 * eps)))
    table[1] = math.expm1(logr)
    top = 1                                            # table[1..top] done
    while top < mmax:                                  # r^(top+j) - 1 from r^top - 1 and r^j - 1
        e_top = table[top]
        for j in range(1, min(top, mmax - top) + 1):
            table[top + j] = e_top + table[j] + e_top * table[j]
        top *= 2
    return scale


@njit(cache=True, nogil=True, error_model="numpy")
def _gls_sums(d, use, table, p, s2):
    """GLS numerator and denominator over the runs of used differences, first to last.

    ``p`` is the independent variance per difference (DN^2), ``s2`` the read variance (DN^2);
    ``table`` (2, NDIFF + 1) is scratch for ``expm1(k log r)`` and the first half of a run's
    weights (they are symmetric, to the last bit: the second half is not recomputed).
    """
    expm1_k = table[0]
    half = table[1]
    n = d.size
    num = 0.0
    den = 0.0
    scale = _weight_table(expm1_k, n, p, s2)           # for the longest possible run: no search
    k = 0
    while k < n:
        if not use[k]:
            k += 1
            continue
        m = 1
        while k + m < n and use[k + m]:
            m += 1
        mid = (m + 1) // 2
        for i in range(1, mid + 1):                    # gls_weights' operations, in its order
            em_i = expm1_k[i]
            em_j = expm1_k[m + 1 - i]
            wn = em_i * em_j
            wd = em_i + em_j
            wd += 2.0
            wd += wn
            wd *= scale
            w = wn / wd
            half[i] = w
            num += w * d[k + i - 1]
            den += w
        for i in range(mid + 1, m + 1):                # symmetric, to the last bit
            w = half[m + 1 - i]
            num += w * d[k + i - 1]
            den += w
        k += m
    return num, den


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _drop_short_segments(use, min_len):
    """Unset runs of ``use`` shorter than ``min_len``; return the differences and runs left."""
    n = use.size
    nused = 0
    nsegs = 0
    k = 0
    while k < n:
        if not use[k]:
            k += 1
            continue
        m = 1
        while k + m < n and use[k + m]:
            m += 1
        if m >= min_len:
            nused += m
            nsegs += 1
        else:
            for i in range(k, k + m):
                use[i] = False
        k += m
    return nused, nsegs
