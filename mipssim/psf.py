"""The PRFs the simulator renders point sources with: :mod:`calibration.psf` (shared with the
reprocessor, which needs the same PRF for aperture corrections)."""
from calibration.psf import EMPIRICAL_24_SCALE, PRF, PSF_TEMPERATURES_K, load_prf

__all__ = ["EMPIRICAL_24_SCALE", "PRF", "PSF_TEMPERATURES_K", "load_prf"]
