"""Judging the flashes against each other: misfired flashes and the anomalous first flash.

Both tests use array medians of the flashes' relative brightness, whose trend follows the
drift smoothly; see :func:`drop_odd_flashes` and :func:`first_flash`.
"""
from __future__ import annotations

import numpy as np

from .response import StimResponse

FIRST_STIM_MODES = ("auto", "auto-drop", "drop", "keep")
# the smallest first-flash anomaly the test must be able to see; the documented effect is of
# several percent [HB 6.5 /68], so a test that cannot see 2 % cannot clear the flash either
JUDGEABLE_ANOMALY = 0.02

__all__ = ["FIRST_STIM_MODES", "first_flash", "rescale_first", "drop_odd_flashes", "find_steps"]


def first_flash(stim: StimResponse, kept_idx: list, mode: str, nsigma: float) -> float:
    """Treat the first usable flash as ``mode`` says (in place); record what was done and why.

    Returns the factor the first flash was divided by (1.0 when it was not rescaled).
    """
    if mode == "keep" or not len(stim.t):
        return 1.0
    if mode == "drop":
        _drop_first(stim, kept_idx, "first flash dropped (first_stim='drop')")
        return 1.0
    if len(stim.t) < 5:
        stim.report["first_stim"] = "kept (fewer than 5 flashes: cannot judge)"
        return 1.0
    size, scatter = _first_flash_anomaly(stim)
    stim.report["first_stim_deviation"] = float(size)
    if not np.isfinite(scatter):
        stim.report["first_stim"] = "kept (too few later flashes to measure the scatter: cannot judge)"
        return 1.0
    if nsigma * scatter > JUDGEABLE_ANOMALY:
        _drop_first(stim, kept_idx, f"first flash dropped: cannot be judged (deviation {size:+.2%}, "
                                    f"scatter {scatter:.2%}: {nsigma:g} sigma exceeds "
                                    f"{JUDGEABLE_ANOMALY:.0%})")
        return 1.0
    if not abs(size) > max(nsigma * scatter, 1e-3):
        stim.report["first_stim"] = f"kept (deviation {size:+.2%}, scatter {scatter:.2%})"
        return 1.0
    why = f"anomalous first flash: {size:+.2%} off the later flashes' trend (scatter {scatter:.2%})"
    if mode == "auto-drop":
        _drop_first(stim, kept_idx, why + "; dropped")
        return 1.0
    rescale_first(stim, 1.0 + size, scatter)
    stim.report["first_stim"] = why + "; rescaled"
    stim.report["first_stim_scatter"] = scatter
    stim.report["rescaled"] = [(kept_idx[0], why)]
    return 1.0 + size


def rescale_first(stim: StimResponse, factor: float, scatter: float) -> None:
    """Divide the first flash by its measured anomaly ``factor``, adding the measurement's
    relative ``scatter`` to its error (in place)."""
    stim.value[0] = stim.value[0] / factor
    stim.err[0] = np.hypot(stim.err[0] / factor, scatter * stim.value[0])


def _drop_first(stim: StimResponse, kept_idx: list, why: str) -> None:
    stim.report["first_stim"] = why
    stim.report["dropped"].append((kept_idx.pop(0), why))
    stim.t, stim.value, stim.err = stim.t[1:], stim.value[1:], stim.err[1:]


def _first_flash_anomaly(stim: StimResponse) -> tuple[float, float]:
    """Relative brightness excess of the first flash and its 1-sigma scatter.

    ``s_k``, the array-median relative second difference at flash ``k``, follows
    the drift's curvature smoothly; an anomaly ``a`` of the first flash adds
    ``(1 - u_0) a`` to ``s_0`` only.  ``s_0`` is compared with the linear
    extrapolation ``2 s_1 - s_2``; the scatter is that of the same prediction
    one flash later on (``s_k`` against ``2 s_{k+1} - s_{k+2}``).
    """
    s = _second_differences(stim)
    u0 = (stim.t[1] - stim.t[0]) / (stim.t[2] - stim.t[0])
    resid = s[:-2] - (2 * s[1:-1] - s[2:])
    later = resid[1:]
    later = later[np.isfinite(later)]
    scatter = 1.4826 * np.median(np.abs(later - np.median(later))) if later.size else np.inf
    return float(resid[0] / (1.0 - u0)), float(scatter / (1.0 - u0))


def drop_odd_flashes(stim: StimResponse, kept_idx: list, nsigma: float) -> None:
    """Drop interior flashes that are off the others' trend on *both* sides (in place).

    Each flash ``j`` is compared, by the array median of the ratio, with the
    linear extrapolations from its two neighbours on the left and from its two
    neighbours on the right.  A misfired flash is off both the same way; a real
    responsivity step between two flashes leaves each of them on the trend of
    its own side, so it is kept.  The worst flash off by more than ``nsigma``
    robust sigmas of the left deviations (and 0.5 %) is dropped, and the test
    repeated.  The first flash, which has no left side, is :func:`first_flash`'s.
    """
    while len(stim.t) >= 7:
        left = _extrapolation_deviation(stim.t, stim.value, side=-1)
        right = _extrapolation_deviation(stim.t, stim.value, side=+1)
        finite = left[np.isfinite(left)]
        if finite.size < 5:
            return
        scatter = 1.4826 * np.median(np.abs(finite - np.median(finite)))
        limit = max(nsigma * scatter, 5e-3)
        both = (np.sign(left) == np.sign(right)) & (np.abs(left) > limit) & (np.abs(right) > limit)
        if not both.any():
            return
        j = int(np.nanargmax(np.where(both, np.minimum(np.abs(left), np.abs(right)), -1.0)))
        why = (f"brightness {left[j]:+.2%} / {right[j]:+.2%} off the trend of the flashes before / "
               f"after it (scatter {scatter:.2%}): misfired?")
        stim.report["dropped"].append((kept_idx[j], why))
        del kept_idx[j]
        stim.t, stim.value, stim.err = (np.delete(a, j, axis=0) for a in (stim.t, stim.value, stim.err))


def find_steps(stim: StimResponse, nsigma: float) -> list[tuple[float, float, float]]:
    """Common responsivity steps between consecutive flashes (an anneal inside the AOR, a large
    jump): ``(t_before, t_after, size)`` for each, ``size`` relative (negative: a drop).

    A step between flashes ``j`` and ``j + 1`` puts ``j + 1`` off the trend of the flashes
    before it and ``j`` off the trend of those after it, with opposite signs (a misfired flash
    is off both the same way: :func:`drop_odd_flashes`); both must exceed ``nsigma`` robust
    sigmas of the left deviations and 0.5 %.  Where the step fell between the two flashes the
    flashes cannot tell: the interpolation across it keeps its minimum-variance straight line
    and states the step's cost in its error (:func:`.response.interpolate_response`).
    """
    if len(stim.t) < 7:
        return []
    left = _extrapolation_deviation(stim.t, stim.value, side=-1)
    right = _extrapolation_deviation(stim.t, stim.value, side=+1)
    finite = left[np.isfinite(left)]
    if finite.size < 5:
        return []
    limit = max(nsigma * 1.4826 * np.median(np.abs(finite - np.median(finite))), 5e-3)
    steps = []
    for j in range(len(stim.t) - 1):
        after, before = left[j + 1], right[j]
        if (np.isfinite(after) and np.isfinite(before) and abs(after) > limit
                and abs(before) > limit and np.sign(after) != np.sign(before)):
            size = 0.5 * (after - before)         # both measure the step, with opposite signs
            steps.append((float(stim.t[j]), float(stim.t[j + 1]), float(size)))
    return steps


def _extrapolation_deviation(t: np.ndarray, value: np.ndarray, *, side: int) -> np.ndarray:
    """(NFLASH,) array median of D_j / (line through the two flashes on ``side`` of j, at t_j) - 1."""
    n = len(t)
    out = np.full(n, np.nan)
    for j in range(2, n - 2):
        a, b = (j - 1, j - 2) if side < 0 else (j + 1, j + 2)
        pred = value[a] + (value[a] - value[b]) * (t[j] - t[a]) / (t[a] - t[b])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = value[j] / pred - 1
        if np.isfinite(rel).any():
            out[j] = np.nanmedian(rel)
    return out


def _second_differences(stim: StimResponse) -> np.ndarray:
    """Array median of (D_{k-1} - 2 D_k + D_{k+1}) / D_k for k = 1..n-2, time-weighted (NFLASH-2,)."""
    t, v = stim.t, stim.value
    u = ((t[1:-1] - t[:-2]) / (t[2:] - t[:-2])).reshape((-1,) + (1,) * (v.ndim - 1))
    pred = (1 - u) * v[:-2] + u * v[2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (pred - v[1:-1]) / v[1:-1]
    return np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in rel])
