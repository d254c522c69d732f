"""Si:As 24 um laws shared by the simulator (forward) and the reprocessor (inverse).

On-board slope (SUR)
    The 24 um array is read every 0.524288 s; the flight software fits a
    least-squares line to the reads of each pixel and downlinks only its
    slope, in DN per sample, plus the difference image ``read2 - read1``
    [HB 5.1.2 /56].  :func:`sur_slope` is that fit; :func:`sur_variance`
    its noise (read noise plus the correlated Poisson noise of a ramp).

Droop
    Si:As BIB arrays add to every pixel an offset proportional to the signal
    on the whole array [IRS HB 5.1.6 /36]; MIPS's pipeline corrects it but its
    coefficient is UNCONFIRMED.  Row droop (mips_sloper switch, [IOC-917I]) is
    modelled the same way along a row.  With ``c`` the array coefficient and
    ``c_row`` the row one::

        M = T + c * mean(T) + c_row * rowmean(T)

    which is linear and exactly invertible (:func:`droop_inverse`).

Read-2 effect
    The second read of pixels near the bottom of the array is low by ``a(y)``
    DN [IOC-190D2/F], which biases a SUR slope by ``-a * w_1`` where ``w_1`` is
    the least-squares weight of read index 1 (:func:`sur_weight`).

First-frame effect
    DCENUM 0 is 10-15 % depressed and DCENUM 1-2 about 2 % low [MIPS data
    reduction overview, mips-facts 3]; :func:`first_frame_factor` gives the
    response factor by DCENUM for a factor table.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sur_slope", "sur_weight", "sur_variance", "droop_forward", "droop_inverse",
           "first_frame_factor"]


def sur_weight(nreads: int) -> np.ndarray:
    """Least-squares weights ``w_k`` with ``slope = sum_k w_k read_k`` (per sample), k = 0..n-1."""
    k = np.arange(nreads, dtype=float)
    kc = k - k.mean()
    return kc / np.sum(kc ** 2)


def sur_slope(reads: np.ndarray) -> np.ndarray:
    """On-board least-squares slope of ``reads`` (NREADS, ...) in DN per sample."""
    w = sur_weight(reads.shape[0])
    return np.tensordot(w, np.asarray(reads, dtype=float), axes=(0, 0))


def sur_variance(slope_dn_s, *, nreads: int, read_time: float, gain, read_noise):
    """Variance (DN/s)^2 of a SUR slope: read noise plus correlated Poisson noise.

    ``read_noise`` is one read's noise in DN, ``gain`` e-/DN.  For ``n`` equally
    spaced reads ``dt`` apart (Rauscher et al. 2007 / Robberto 2009)::

        var = 12 rn^2 / (n (n^2 - 1) dt^2) + 6 (n^2 + 1) S / (5 n (n^2 - 1) dt gain)
    """
    n = float(nreads)
    s = np.maximum(np.asarray(slope_dn_s, dtype=float), 0.0)
    read = 12.0 * np.asarray(read_noise) ** 2 / (n * (n * n - 1) * read_time ** 2)
    poisson = 6.0 * (n * n + 1) * s / (5.0 * n * (n * n - 1) * read_time * np.asarray(gain))
    return read + poisson


def droop_forward(true: np.ndarray, coeff: float, row_coeff: float = 0.0) -> np.ndarray:
    """Measured image(s) ``(..., NY, NX)`` of true image(s) ``true`` with droop and row droop."""
    t = np.asarray(true, dtype=float)
    return (t + coeff * t.mean(axis=(-2, -1), keepdims=True)
            + row_coeff * t.mean(axis=-1, keepdims=True))


def droop_inverse(measured: np.ndarray, coeff: float, row_coeff: float = 0.0) -> np.ndarray:
    """Exact inverse of :func:`droop_forward`."""
    m = np.asarray(measured, dtype=float)
    mean_true = m.mean(axis=(-2, -1), keepdims=True) / (1.0 + coeff + row_coeff)
    row_true = (m.mean(axis=-1, keepdims=True) - coeff * mean_true) / (1.0 + row_coeff)
    return m - coeff * mean_true - row_coeff * row_true


def first_frame_factor(dcenum, factors) -> np.ndarray:
    """Response factor of DCE number ``dcenum`` from ``factors`` (factor of DCENUM 0, 1, ...; 1 after)."""
    f = np.asarray(factors, dtype=float)
    d = np.asarray(dcenum)
    return np.where(d < len(f), f[np.clip(d, 0, len(f) - 1)], 1.0)
