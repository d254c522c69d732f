"""The true Ge detector of the simulator: flat, stim pattern, dark, nonlinearity, bad pixels.

A :class:`GeDetector` is the *truth* the simulator uses.  It is generated
deterministically from a fixed seed per band, so every run sees the same
detector.  The shipped calibration products (``data/cal``) are derived from a
simulated calibration campaign of it (``mips calibrate``, :mod:`.campaign`);
the reprocessor only ever sees those products.

Signal model (DN/s at the detector, before nonlinearity)::

    slope = R(t) * (G * flat * sky + stim_on * S * pattern + dark_mips * S * pattern)

``G`` is the band's DN/s per MJy/sr, ``S`` the stim brightness, ``R(t)`` the
responsivity (mean 1, drifting, stepping after cosmic rays).  The dark is
written in calibrated (stim) units because the SSC's Ge dark is subtracted
after the stim division.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from calibration.bitmask import PMASK, PMASK_FATAL
from calibration.instrument import BandSpec, band_spec

__all__ = ["DEAD_READOUT_70", "GeDetector", "default_detector"]

_DETECTOR_SEED = 20070101


@dataclass
class GeDetector:
    """Per-pixel truth of one Ge array (maps are (NY, NX))."""

    spec: BandSpec
    flat: np.ndarray          # sky flat, median 1 over good pixels
    stim_pattern: np.ndarray  # stim illumination pattern, median 1
    dark_mips: np.ndarray     # dark in calibrated units
    enl_beta: np.ndarray      # electronic nonlinearity coefficient
    enl_zero: np.ndarray      # reset level, DN
    read_noise: np.ndarray    # DN per read
    excess_noise: np.ndarray  # DN^2/s, white current noise (calibration.instrument "Ge noise")
    drift_z: np.ndarray       # standard-normal pixel deviate scaling the common drift
    pmask: np.ndarray         # permanent mask bits

    @property
    def good(self) -> np.ndarray:
        """Pixels without fatal pmask bits."""
        return (self.pmask & PMASK_FATAL) == 0

    @property
    def responds(self) -> np.ndarray:
        """1 where a pixel collects photocurrent, 0 for dead pixels (``BAD_PIXEL`` outside a bad
        readout half, which is noisy rather than dead): a calibration campaign finds them."""
        dead = ((self.pmask & PMASK["BAD_PIXEL"]) != 0) & ((self.pmask & PMASK["BAD_HALF"]) == 0)
        return np.where(dead, 0.0, 1.0)


def _smooth_field(rng, shape, scale_pix, amplitude):
    """Zero-mean smooth random field with RMS ``amplitude``."""
    noise = rng.standard_normal(shape)
    sm = ndimage.gaussian_filter(noise, scale_pix, mode="reflect")
    return amplitude * sm / max(sm.std(), 1e-12)


# The 70 um side-A readout "4,4" is inoperative [HB 6.5 /68; IOC-256J]: the lower-right corner of
# side A, next to side B.  A CRC-696 readout serves 32 pixels; taking the 32x32 array as eight 4-column
# modules of four 8-row readouts, readout (4, 4) is rows 0-7 of columns 12-15.  Location UNCONFIRMED.
DEAD_READOUT_70 = (slice(0, 8), slice(12, 16))


def default_detector(band: int, *, read_noise_dn: float | None = None,
                     excess_noise_dn2_s: float | None = None, dead_readout: bool = True) -> GeDetector:
    """The simulator's true detector for ``band`` (deterministic).

    The excess noise's amplitude (its square root) scatters by 22 % RMS over
    pixels, the spread of IOC-911's 2660 +- 581 e- per DCE.  ``dead_readout``
    (70 um): the inoperative readout of ``DEAD_READOUT_70`` collects no
    photocurrent; it is marked after every map is drawn and normalised, so
    switching it off changes no other pixel.
    """
    spec = band_spec(band)
    ny, nx = spec.shape
    rng = np.random.default_rng([_DETECTOR_SEED, band])
    pmask = np.zeros(spec.shape, dtype=np.int32)
    if band == 70:
        pmask[:, 16:] |= PMASK["BAD_HALF"] | PMASK["BAD_PIXEL"]  # side B unusable [HB 6.5 /68]
        pmask[31, 3] |= PMASK["NOISY"]                          # top row unstable [HB 7.2.4 /81]
        pmask[31, 11] |= PMASK["BAD_ENL"]
    else:
        pmask[1, :] |= PMASK["BAD_PIXEL"]   # blank row between the two 2x20 rows [HB 3.1.5 /25]
        pmask[2, 15:20] |= PMASK["BAD_PIXEL"]  # inoperative 5-pixel readout; location UNCONFIRMED
    yy, xx = np.mgrid[0:ny, 0:nx]
    flat = 1.0 + _smooth_field(rng, spec.shape, 3.0, 0.04) + 0.015 * rng.standard_normal(spec.shape)
    pattern = (1.0 + 0.15 * (xx - nx / 2) / nx - 0.10 * (yy - ny / 2) / max(ny, 2)
               + 0.03 * rng.standard_normal(spec.shape))
    good = (pmask & PMASK_FATAL) == 0
    flat /= np.median(flat[good])
    pattern /= np.median(pattern[good])
    rn0 = spec.read_noise_dn if read_noise_dn is None else read_noise_dn
    read_noise = rn0 * (1.0 + 0.05 * rng.standard_normal(spec.shape))
    read_noise[(pmask & PMASK["NOISY"]) != 0] *= 10.0
    read_noise[(pmask & PMASK["BAD_HALF"]) != 0] *= 30.0
    excess_noise = _excess_noise(spec, excess_noise_dn2_s, pmask)
    if band == 70 and dead_readout:
        pmask[DEAD_READOUT_70] |= PMASK["BAD_PIXEL"]
    return GeDetector(
        spec=spec, flat=flat, stim_pattern=pattern,
        dark_mips=spec.dark_mips * (1.0 + 0.3 * rng.standard_normal(spec.shape)).clip(0.1),
        enl_beta=(0.04 + 0.01 * rng.standard_normal(spec.shape)).clip(0.0, 0.08),
        enl_zero=2000.0 + 150.0 * rng.standard_normal(spec.shape),
        read_noise=read_noise,
        excess_noise=excess_noise,
        drift_z=rng.standard_normal(spec.shape),
        pmask=pmask,
    )


def _excess_noise(spec: BandSpec, median_dn2_s: float | None, pmask: np.ndarray) -> np.ndarray:
    """Per-pixel excess-noise density, DN^2/s, from its own stream (drawn after the other maps, so
    adding it left them unchanged)."""
    rng = np.random.default_rng([_DETECTOR_SEED, spec.band, 1])
    d0 = spec.excess_noise_dn2_s if median_dn2_s is None else median_dn2_s
    amplitude = (1.0 + 0.22 * rng.standard_normal(spec.shape)).clip(0.3)
    return d0 * amplitude ** 2 / np.median(amplitude[(pmask & PMASK_FATAL) == 0] ** 2)
