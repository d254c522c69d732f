"""Ge:Ga electronic nonlinearity: the forward law (simulator) and its inverse (reprocessor).

The SSC pipeline corrects the Ge integrating amplifiers' nonlinearity read by
read (ELECNL, [GeRT /4]); the functional form it used is UNCONFIRMED.  We
adopt the simplest law with the right behaviour, a quadratic compression of
the integrated signal above the reset level::

    u = q * (1 - beta * q / Q_FULL)          (forward: linear charge q -> measured u)

with ``q = x - zero`` the linear signal in DN above the pixel's zero level,
``u`` the measured signal above the same level, ``beta`` the fractional
deficit at ``Q_FULL`` DN (a per-pixel calibration coefficient, typically a
few per cent).  The inverse is exact::

    q = Q_FULL / (2 beta) * (1 - sqrt(1 - 4 beta u / Q_FULL))

and is monotonic while ``u < Q_FULL / (4 beta)``; above that the read is
unrecoverable and the inverse returns NaN.  The derivative ``dq/du`` scales
the read noise of linearised reads.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Q_FULL_DN", "forward", "inverse", "inverse_derivative"]

Q_FULL_DN = 60000.0  # DN above zero at which beta is quoted


def forward(q_dn: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    """Measured signal (DN above zero) for linear signal ``q_dn`` (DN above zero)."""
    q = np.asarray(q_dn, dtype=float)
    return q * (1.0 - np.asarray(beta) * q / Q_FULL_DN)


def inverse(u_dn: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    """Linear signal (DN above zero) for measured signal ``u_dn``; NaN where not invertible."""
    u = np.asarray(u_dn, dtype=float)
    b = np.broadcast_to(np.asarray(beta, dtype=float), np.broadcast_shapes(u.shape, np.shape(beta)))
    disc = 1.0 - 4.0 * b * u / Q_FULL_DN
    with np.errstate(invalid="ignore", divide="ignore"):
        # (1 - sqrt(disc)) / (2b) rewritten as 2u / (Q (1 + sqrt(disc))) is exact and stable at b=0
        q = 2.0 * u / (1.0 + np.sqrt(disc))
    return np.where(disc >= 0, q, np.nan)


def inverse_derivative(u_dn: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    """dq/du of :func:`inverse` (dimensionless): the read-noise scale of linearised reads."""
    u = np.asarray(u_dn, dtype=float)
    disc = 1.0 - 4.0 * np.asarray(beta, dtype=float) * u / Q_FULL_DN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(disc > 0, 1.0 / np.sqrt(disc), np.nan)
