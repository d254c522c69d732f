"""The array kernel of Ge filtering: column filter, time-median high-pass, source masks.

All functions take a ``(NDCE, NY, NX)`` stack of BCDs in time order and a
boolean ``mask`` of the same shape (True: do not use this value to estimate a
correction).  Non-finite values are never used either.  Masks only decide
which values *estimate* a correction; every pixel is corrected, so a masked
source keeps its flux above the background estimated around it.
"""
from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = ["highpass", "column_medians", "running_median", "source_mask"]

_CHUNK = 256        # windows per nanmedian call: bounds the temporary copy


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian`` without the all-NaN warning (all-NaN slices give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _usable(stack: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``stack`` as float64 with masked and non-finite values set to NaN."""
    vals = np.array(stack, dtype=np.float64)
    bad = ~np.isfinite(vals)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    vals[bad] = np.nan
    return vals


def column_medians(stack: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Median of each column (fixed x, over y) of each DCE, from unmasked finite values.

    Parameters
    ----------
    stack : ndarray, shape (NDCE, NY, NX)
        BCDs in time order.
    mask : ndarray of bool, optional
        True where a value must not enter the median.

    Returns
    -------
    ndarray, shape (NDCE, NX)
        The medians.  A column whose values are all masked in a DCE (e.g. a
        whole DCE left out of the time median, as after a stim flash) takes
        the median of its finite values regardless of the mask; one without
        any finite value gets 0 (left uncorrected).
    """
    med = _nanmedian(_usable(stack, mask), axis=1)
    hole = np.isnan(med)
    if mask is not None and hole.any():
        med[hole] = _nanmedian(_usable(stack, None), axis=1)[hole]
    return np.nan_to_num(med, nan=0.0)


def _fill_nearest(corr: np.ndarray) -> np.ndarray:
    """Undefined (NaN) corrections replaced by the nearest defined one in time (0 if none)."""
    ny_nx = corr.reshape(corr.shape[0], -1)
    for p in np.flatnonzero(np.isnan(ny_nx).any(axis=0)):
        col = ny_nx[:, p]
        good = np.flatnonzero(~np.isnan(col))
        if good.size == 0:
            col[:] = 0.0
            continue
        bad = np.flatnonzero(np.isnan(col))
        right = np.clip(np.searchsorted(good, bad), 0, good.size - 1)
        left = np.clip(right - 1, 0, good.size - 1)
        use_left = np.abs(good[left] - bad) <= np.abs(good[right] - bad)
        col[bad] = col[np.where(use_left, good[left], good[right])]
    return corr


def running_median(stack: np.ndarray, *, mask: np.ndarray | None = None,
                   window_dces: int = 15) -> np.ndarray:
    """Per pixel, the median over a window of ``window_dces`` DCEs around each DCE.

    The window is centred on the DCE where it can be; within half a window of
    either end it keeps its full length and slides inward (the first
    ``window_dces // 2`` DCEs all use DCEs ``0 .. window_dces - 1``).  A stack
    shorter than the window uses all of it.  Where a window holds no usable
    value the correction of the nearest DCE in time that has one is used; a
    pixel with none at all gets 0.

    Parameters
    ----------
    stack : ndarray, shape (NDCE, NY, NX)
        BCDs in time order.
    mask : ndarray of bool, optional
        True where a value must not enter the median.
    window_dces : int
        Odd window length in DCEs (>= 1).

    Returns
    -------
    ndarray, shape (NDCE, NY, NX)
        The running median (float64).
    """
    if window_dces < 1 or window_dces % 2 == 0:
        raise ValueError(f"window_dces must be a positive odd integer, not {window_dces!r}")
    vals = _usable(stack, mask)
    n = vals.shape[0]
    w = min(window_dces, n)
    view = sliding_window_view(vals, w, axis=0)          # (n - w + 1, NY, NX, w), no copy
    meds = np.concatenate([_nanmedian(view[s:s + _CHUNK], axis=-1)
                           for s in range(0, view.shape[0], _CHUNK)])
    starts = np.clip(np.arange(n) - window_dces // 2, 0, n - w)
    return _fill_nearest(meds[starts])


def _segments(times: np.ndarray, n: int, max_gap_s: float | None) -> list[slice]:
    """Slices of the stack between gaps in ``times`` longer than ``max_gap_s``."""
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (n,):
        raise ValueError(f"times has shape {times.shape}, expected ({n},)")
    if n > 1 and not np.all(np.diff(times) > 0):
        raise ValueError("times must be strictly increasing (BCDs in time order)")
    if max_gap_s is None or n < 2:
        return [slice(0, n)]
    cuts = np.flatnonzero(np.diff(times) > max_gap_s) + 1
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _one_pass(stack: np.ndarray, mask: np.ndarray, segments: list[slice], *,
              window_dces: int, column: bool) -> np.ndarray:
    """Column filter (optional) then time-median high-pass, ``mask`` excluded from both."""
    out = np.array(stack, dtype=np.float64)
    if column:
        out -= column_medians(out, mask=mask)[:, None, :]
    for seg in segments:
        out[seg] -= running_median(out[seg], mask=mask[seg], window_dces=window_dces)
    return out


def _disk(radius_pix: float) -> np.ndarray:
    """Boolean disk of ``radius_pix`` as a (1, 2r+1, 2r+1) structuring element."""
    r = int(np.floor(radius_pix))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= radius_pix * radius_pix)[None]


def _robust_sigma(vals: np.ndarray) -> np.ndarray:
    """1.4826 MAD of each DCE's non-NaN values (NaN for a DCE without any)."""
    dev = np.abs(vals - _nanmedian(vals, axis=(1, 2))[:, None, None])
    return 1.4826 * _nanmedian(dev, axis=(1, 2))


def source_mask(filtered: np.ndarray, *, n_sigma: float = 3.0, grow_pix: float = 2.0,
                sigma: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels above ``n_sigma`` in a filtered stack, grown by ``grow_pix`` in each DCE.

    Parameters
    ----------
    filtered : ndarray, shape (NDCE, NY, NX)
        A high-pass filtered stack (background near 0).
    n_sigma : float
        Detection threshold in sigma (positive excursions only).
    grow_pix : float
        Radius (pixels) of the disk each detected pixel is grown by, within its DCE.
    sigma : ndarray, optional
        1-sigma of each value (broadcastable to ``filtered``); default the robust
        scatter (1.4826 MAD) of each DCE's unmasked finite values (all its finite
        values if ``mask`` covers the whole DCE).
    mask : ndarray of bool, optional
        Values left out of the robust scatter.

    Returns
    -------
    ndarray of bool, shape (NDCE, NY, NX)
    """
    if sigma is None:
        sigma = _robust_sigma(_usable(filtered, mask))
        hole = np.isnan(sigma)                         # a wholly masked DCE: all its values
        sigma[hole] = _robust_sigma(_usable(filtered, None))[hole]
        sigma = sigma[:, None, None]
    with np.errstate(invalid="ignore"):
        hits = np.nan_to_num(np.asarray(filtered, dtype=np.float64), nan=-np.inf) > n_sigma * sigma
    if grow_pix <= 0 or not hits.any():
        return hits
    return ndimage.binary_dilation(hits, structure=_disk(grow_pix))


def highpass(stack: np.ndarray, times: np.ndarray, *, mask: np.ndarray | None = None,
             window_dces: int = 15, column: bool = True, n_sigma: float | None = 3.0,
             grow_pix: float = 2.0, sigma: np.ndarray | None = None,
             max_gap_s: float | None = None, return_mask: bool = False):
    """Column and time-median high-pass filter of a Ge BCD stack, in one or two passes.

    Pass 1: subtract from each DCE its column medians (``column``), then from
    each pixel its running median over ``window_dces`` DCEs (see
    :func:`running_median`); values under ``mask`` or non-finite never enter
    a median.  Pass 2 (``n_sigma`` not None): mask also what pass 1 found
    (:func:`source_mask`: above ``n_sigma``, grown by ``grow_pix``) and
    filter the input again.

    Parameters
    ----------
    stack : ndarray, shape (NDCE, NY, NX)
        BCDs in time order (MJy/sr).
    times : ndarray, shape (NDCE,)
        Strictly increasing DCE times (seconds); the stack is cut at gaps
        longer than ``max_gap_s`` and each piece filtered on its own.
    mask : ndarray of bool, optional
        True where a value must not estimate a correction (bad pixels, known sources).
    window_dces : int
        Odd running-median window in DCEs.
    column : bool
        Apply the column filter (off for extended emission, as the SSC advised at 70 um).
    n_sigma : float or None
        Threshold of the second pass's source mask; None: one pass.
    grow_pix : float
        Radius (pixels) the second-pass detections are grown by (about a PSF FWHM).
    sigma : ndarray, optional
        1-sigma per value for the detection; default each DCE's robust scatter.
    max_gap_s : float, optional
        Time gap (s) that splits the running median; default: never split.
    return_mask : bool
        Also return the mask the last pass used.

    Returns
    -------
    filtered : ndarray, shape (NDCE, NY, NX)
        ``stack`` minus the corrections (float64; NaN stays NaN).
    used_mask : ndarray of bool
        Only with ``return_mask``.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (NDCE, NY, NX), not shape {stack.shape}")
    segments = _segments(times, stack.shape[0], max_gap_s)
    used = np.zeros(stack.shape, bool) if mask is None else np.array(mask, dtype=bool)
    out = _one_pass(stack, used, segments, window_dces=window_dces, column=column)
    if n_sigma is not None:
        used = used | source_mask(out, n_sigma=n_sigma, grow_pix=grow_pix, sigma=sigma,
                                  mask=used)
        out = _one_pass(stack, used, segments, window_dces=window_dces, column=column)
    return (out, used) if return_mask else out
