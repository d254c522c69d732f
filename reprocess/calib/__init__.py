"""Calibration products derived from calibration observations, with reprocessing code.

The instrument team measured darks, flats, nonlinearity, read noise and flux
conversion from dedicated observations; these modules do the same from raw
data (simulated calibration campaigns or real ones) and never see a
simulator's truth.  Each function works on arrays or on raw / BCD files and
returns maps with 1-sigma error maps, or :class:`.posterior.Posterior` objects
for scalars (emcee).  They live in ``reprocess`` because they use its ramp
fitting and stim handling; ``calibration`` only holds the product formats.
"""
from .posterior import Posterior, sample_posterior

__all__ = ["Posterior", "sample_posterior"]
