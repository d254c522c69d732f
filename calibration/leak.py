"""The 160 um near-IR leak: how much a source's near-infrared light adds at 160 um.

The 160 um array also sees a source's near-infrared light (~1-1.6 um) through a
filter leak: a ghost 4.5 +- 0.5 times the 160 um photosphere of a K giant
(HD 131873), which dominates for sources hotter than ~2000 K; the SSC did not
correct it and calibrated 160 um on asteroids instead [IOC-924V; S07;
mips-facts 1].  The ghost scales with the source's flux density near
``LEAK_WAVELENGTH_UM``; both the simulator (which puts it into the scene) and
the reprocessor (which flags it from a catalogue of near-IR fluxes) use this law.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LEAK_RATIO", "LEAK_REFERENCE_K", "LEAK_WAVELENGTH_UM", "leak_factor", "predicted_leak_jy"]

LEAK_RATIO = 4.5            # ghost / 160 um photosphere of a K giant [IOC-924V]
LEAK_REFERENCE_K = 4500.0   # that K giant's temperature (HD 131873, K4 III); UNCONFIRMED
LEAK_WAVELENGTH_UM = 1.4    # the leak's band, ~1-1.6 um [mips-facts 1]; UNCONFIRMED centre
LAMBDA_160_UM = 155.9       # [HB /51]


def _bb_nu(lam_um, t_k):
    """Planck B_nu up to a constant, at wavelength ``lam_um`` (0 where it underflows)."""
    with np.errstate(over="ignore"):
        return 1.0 / (lam_um ** 3 * np.expm1(14387.77 / (lam_um * np.asarray(t_k, dtype=float))))


def _reference_colour() -> float:
    """F(1.4 um) / F(160 um) of the reference K giant's photosphere (a blackbody)."""
    return float(_bb_nu(LEAK_WAVELENGTH_UM, LEAK_REFERENCE_K) / _bb_nu(LAMBDA_160_UM, LEAK_REFERENCE_K))


def leak_factor(temperature_k) -> np.ndarray:
    """Ghost / 160 um flux of a blackbody source at ``temperature_k`` (0 for a cold source)."""
    colour = _bb_nu(LEAK_WAVELENGTH_UM, temperature_k) / _bb_nu(LAMBDA_160_UM, temperature_k)
    return LEAK_RATIO * colour / _reference_colour()


def predicted_leak_jy(near_ir_jy) -> np.ndarray:
    """The 160 um ghost (Jy) of a source whose flux density near 1.4 um is ``near_ir_jy`` (Jy)."""
    return LEAK_RATIO * np.asarray(near_ir_jy, dtype=float) / _reference_colour()
