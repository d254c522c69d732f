"""Overlap background matching: one additive offset per BCD.

Model: BCD ``i`` holds ``sky + c_i + noise``.  For each pair of BCDs whose
cutouts overlap on the output grid, ``O_ij = median(x_i - x_j)`` over the
pixels both cover (the median ignores sources and cosmic rays) estimates
``c_i - c_j`` with error ``sqrt(pi/2) sigma_d / sqrt(n_eff)``, where
``sigma_d`` is the noise of one input pixel of the difference and ``n_eff``
the number of independent input pixels in the overlap (output pixels times
the ratio of output to input pixel area, at most the output pixels).  All
pairs make ONE weighted sparse least-squares problem
``sqrt(w_ij) (c_i - c_j) = sqrt(w_ij) O_ij`` plus a row fixing ``sum c = 0``,
solved by ``scipy.sparse.linalg.lsqr``; pairs whose normalised residual is
more than ``reject_sigma`` robust sigmas (1.4826 MAD) from 0 are dropped and
the problem solved again until no pair changes (only pairs within a factor 2 of
the worst residual per round, since one bad pair also inflates its neighbours').  Errors are the diagonal of
the covariance with the mean fixed (from a sparse LU factorisation of the
grounded normal matrix), scaled up by sqrt(reduced chi^2) when that is > 1,
and added in quadrature to a floor: the pairs of one BCD reuse its pixels, so
they are not independent, and an offset can never be known better than the
median of that BCD's own noise over its area (``sqrt(pi/2) sigma /
sqrt(n_pixels)``), which the pair formalism alone would overlook.
Nothing is random: same input, same offsets.

Overlapping pairs come from the cutouts' rectangles through a k-d tree of
their centres (Chebyshev distance), O(N log N), not from an N^2 loop.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import lsqr, splu
from scipy.spatial import cKDTree

from .cutout import CutoutStore
from .grid import Box

__all__ = ["overlapping_pairs", "measure_pairs", "error_floor", "solve_offsets"]

_MAD_TO_SIGMA = 1.4826
_MEDIAN_EFFICIENCY = np.sqrt(np.pi / 2)


def overlapping_pairs(boxes: list[Box | None]) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of rectangles that overlap, in sorted order."""
    idx = np.array([k for k, b in enumerate(boxes) if b is not None], dtype=np.int64)
    if idx.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = np.array([(boxes[k].y0, boxes[k].x0) for k in idx], dtype=float)
    hi = np.array([(boxes[k].y1, boxes[k].x1) for k in idx], dtype=float)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    cand = cKDTree(centre).query_pairs(2 * half.max(), p=np.inf, output_type="ndarray")
    if cand.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = cand[:, 0], cand[:, 1]
    overlap = np.all(np.abs(centre[a] - centre[b]) < half[a] + half[b], axis=1)
    i, j = np.sort(np.stack([idx[a[overlap]], idx[b[overlap]]]), axis=0)
    order = np.lexsort((j, i))
    return i[order], j[order]


def _pair(ci, cj, in_over_out: float, min_pixels: int):
    """(median difference, its error, overlap pixels) of two cutouts, or None."""
    y0, y1 = max(ci.box.y0, cj.box.y0), min(ci.box.y1, cj.box.y1)
    x0, x1 = max(ci.box.x0, cj.box.x0), min(ci.box.x1, cj.box.x1)
    if y1 <= y0 or x1 <= x0:
        return None
    si = (slice(y0 - ci.box.y0, y1 - ci.box.y0), slice(x0 - ci.box.x0, x1 - ci.box.x0))
    sj = (slice(y0 - cj.box.y0, y1 - cj.box.y0), slice(x0 - cj.box.x0, x1 - cj.box.x0))
    d = ci.data[si].astype(np.float64) - cj.data[sj]
    good = np.isfinite(d)
    n = int(good.sum())
    if n < min_pixels:
        return None
    noise = np.sqrt(np.median(ci.var_smooth[si][good].astype(np.float64) + cj.var_smooth[sj][good]))
    n_eff = max(min(n, n / in_over_out), 1.0)
    return float(np.median(d[good])), float(_MEDIAN_EFFICIENCY * noise / np.sqrt(n_eff)), n


def measure_pairs(store: CutoutStore, *, in_over_out: float, min_pixels: int = 16):
    """Median overlap differences of every overlapping pair of cutouts in ``store``.

    Parameters
    ----------
    store : CutoutStore
        The BCDs resampled onto the output grid.
    in_over_out : float
        Input pixel area over output pixel area (how many output pixels one
        independent input pixel spans).
    min_pixels : int
        Pairs overlapping in fewer valid output pixels are skipped.

    Returns
    -------
    i, j : numpy.ndarray of int
        BCD indices of each pair.
    offset : numpy.ndarray
        ``median(x_i - x_j)`` over the overlap, MJy/sr.
    weight : numpy.ndarray
        Inverse variance of ``offset``.
    npix : numpy.ndarray of int
        Valid output pixels in the overlap.
    """
    rows = []
    for i, j in zip(*overlapping_pairs(store.boxes)):
        got = _pair(store.get(int(i)), store.get(int(j)), in_over_out, min_pixels)
        if got is not None:
            rows.append((int(i), int(j), got[0], got[1], got[2]))
    if not rows:
        z = np.zeros(0)
        return z.astype(np.int64), z.astype(np.int64), z, z, z.astype(np.int64)
    i, j, off, err, npix = (np.array(c) for c in zip(*rows))
    return i.astype(np.int64), j.astype(np.int64), off, 1.0 / err ** 2, npix.astype(np.int64)


def error_floor(store: CutoutStore, *, in_over_out: float) -> np.ndarray:
    """Per-BCD floor of the offset error: the median's error over its own valid pixels.

    Parameters
    ----------
    store : CutoutStore
        The BCDs resampled onto the output grid.
    in_over_out : float
        Input pixel area over output pixel area.

    Returns
    -------
    numpy.ndarray
        ``sqrt(pi/2) sigma / sqrt(n_eff)`` per BCD, MJy/sr (NaN for a BCD off the grid).
    """
    floor = np.full(len(store), np.nan)
    for k in range(len(store)):
        cut = store.get(k)
        good = np.isfinite(cut.var_smooth) if cut is not None else None
        if good is not None and good.any():
            n_eff = max(min(good.sum(), good.sum() / in_over_out), 1.0)
            floor[k] = _MEDIAN_EFFICIENCY * np.sqrt(np.median(cut.var_smooth[good])) / np.sqrt(n_eff)
    return floor


def _design(i: np.ndarray, j: np.ndarray, sw: np.ndarray, n: int) -> sparse.csr_matrix:
    """Rows ``sw (c_i - c_j)`` and a last row ``sum c`` (scaled like a typical pair)."""
    m = i.size
    scale = float(np.median(sw)) if m else 1.0
    rows = np.concatenate([np.arange(m), np.arange(m), np.full(n, m)])
    cols = np.concatenate([i, j, np.arange(n)])
    vals = np.concatenate([sw, -sw, np.full(n, scale)])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(m + 1, n))


def _lsqr(i, j, off, w, n) -> np.ndarray:
    sw = np.sqrt(w)
    a = _design(i, j, sw, n)
    b = np.concatenate([sw * off, [0.0]])
    c = lsqr(a, b, atol=1e-14, btol=1e-14, iter_lim=20 * n + 100)[0]
    return c - c.mean()


def _covariance_diagonal(i, j, w, n, block: int = 512) -> np.ndarray:
    """Diagonal of the covariance of the offsets with their mean fixed to 0.

    With ``G`` the inverse of the normal matrix grounded at BCD 0, the
    mean-zero covariance is ``(I - J/n) G (I - J/n)``; its diagonal needs
    ``diag(G)`` (block solves) and ``G 1`` (one solve).
    """
    lap = sparse.coo_matrix((np.concatenate([w, w, -w, -w]),
                             (np.concatenate([i, j, i, j]), np.concatenate([i, j, j, i]))),
                            shape=(n, n)).tocsc()
    lu = splu(lap[1:, 1:].tocsc())
    diag = np.zeros(n)
    for start in range(0, n - 1, block):
        stop = min(start + block, n - 1)
        rhs = np.zeros((n - 1, stop - start))
        rhs[np.arange(start, stop), np.arange(stop - start)] = 1.0
        diag[1 + start:1 + stop] = lu.solve(rhs)[np.arange(start, stop), np.arange(stop - start)]
    g1 = np.concatenate([[0.0], lu.solve(np.ones(n - 1))])
    return diag - 2 * g1 / n + g1.sum() / n ** 2


def solve_offsets(pairs_i: np.ndarray, pairs_j: np.ndarray, offsets_ij: np.ndarray,
                  weights: np.ndarray, n: int, *, floor: np.ndarray | None = None,
                  reject_sigma: float = 5.0, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Additive offsets ``c`` (mean 0) of ``n`` BCDs from pair offsets ``c_i - c_j``.

    Parameters
    ----------
    pairs_i, pairs_j : numpy.ndarray of int
        The two BCDs of each pair.
    offsets_ij : numpy.ndarray
        Measured ``c_i - c_j``.
    weights : numpy.ndarray
        Inverse variances of ``offsets_ij``.
    n : int
        Number of BCDs.
    floor : numpy.ndarray, optional
        Per-BCD error added in quadrature to the formal errors (see :func:`error_floor`).
    reject_sigma : float
        Pairs with a normalised residual beyond this many robust sigmas are dropped.
    max_iter : int
        Most rejection rounds.

    Returns
    -------
    offsets : numpy.ndarray
        One per BCD, ``sum = 0`` (within each connected group of BCDs when the
        overlaps do not connect them all; BCDs in no pair get 0).
    errors : numpy.ndarray
        1-sigma errors (NaN where the pairs do not connect the whole set).
    """
    i, j = np.asarray(pairs_i, np.int64), np.asarray(pairs_j, np.int64)
    off, w = np.asarray(offsets_ij, float), np.asarray(weights, float)
    keep = np.isfinite(off) & np.isfinite(w) & (w > 0)
    if n < 2 or not keep.any():
        return np.zeros(n), np.full(n, np.nan)
    for _ in range(max_iter):
        c = _lsqr(i[keep], j[keep], off[keep], w[keep], n)
        r = np.sqrt(w) * (off - (c[i] - c[j]))
        sigma = _MAD_TO_SIGMA * np.median(np.abs(r[keep]))
        # one bad pair drags its neighbours' residuals too: drop only the worst ones per round
        cut = max(reject_sigma * sigma, 0.5 * float(np.max(np.abs(r[keep]))))
        new = keep & (np.abs(r) <= cut) if sigma > 0 else keep
        if np.array_equal(new, keep):
            break
        keep = new
    err = _errors(i[keep], j[keep], r[keep], w[keep], n)
    return c, err if floor is None else np.hypot(err, floor)


def _errors(i, j, r, w, n) -> np.ndarray:
    """Formal errors times sqrt(max(1, reduced chi^2)); NaN if the graph is disconnected."""
    linked = np.zeros(n, bool)
    linked[i] = linked[j] = True
    n_comp = connected_components(
        sparse.coo_matrix((np.ones(i.size), (i, j)), shape=(n, n)), directed=False)[0]
    if n_comp != 1 or not linked.all():
        return np.full(n, np.nan)
    dof = max(i.size - (n - 1), 1)
    scale = max(1.0, float(np.sum(r ** 2)) / dof)
    return np.sqrt(np.clip(_covariance_diagonal(i, j, w, n), 0, None) * scale)
