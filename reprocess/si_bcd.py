"""Si:As 24 um raw -> BCD: the corrections of the SSC's 24 um pipeline on plain arrays.

A raw 24 um DCE holds the on-board slope (DN per sample) and the difference
image ``read2 - read1``.  :func:`calibrate_si` applies, in order:

1. ``read2``: the read-2 deficit ``a(y)`` biased the slope by ``-a w_1`` (w_1 the
   least-squares weight of the second read) and the difference by ``-a``;
2. ``droop`` / ``row_droop``: the array and row offsets are measured on the
   on-board slope image with the exact inverse of
   :func:`calibration.si_as.droop_forward` (droop follows the charge the ramps
   really held, saturated pixels clipped);
3. ``saturation``: slope pixels whose difference exceeds 1.25x the on-board
   threshold (the pipeline's larger threshold, [HB 5.1.2 /56]) are replaced by
   the difference (a one-sample slope); the droop offsets are then removed;
4. ``dark``: the DCENUM-dependent dark (readout-4 jailbar) is subtracted;
5. ``first_frame``: DCENUM 1-2 (and 0 when kept) are divided by their factors;
6. ``flat``: divided by the flat of the DCE's scan-mirror position (CSM_PRED);
7. flux conversion: x FLUXCONV (0.0454 MJy/sr per DN/s [E07]).

Each step has a switch (all on by default) so validation can measure what
every correction buys.  Latents are flagged, not corrected (as the SSC did),
by :class:`LatentTracker` over the DCE sequence.
"""
from __future__ import annotations

import numpy as np

from calibration import si_as
from calibration.bitmask import BBMSK
from calibration.products import SiProducts

__all__ = ["CORRECTIONS", "calibrate_si", "LatentTracker", "PIPELINE_SAT_FACTOR"]

CORRECTIONS = ("read2", "saturation", "droop", "row_droop", "dark", "first_frame", "flat")
PIPELINE_SAT_FACTOR = 1.25   # pipeline difference threshold / on-board one (~63 / 50.3 MJy/sr)


def calibrate_si(slope_dn_sample: np.ndarray, diff_dn: np.ndarray, *, nreads: int, read_time: float,
                 dcenum: int, csm_arcsec: float, sat_threshold: float, products: SiProducts,
                 off: tuple[str, ...] = ()):
    """BCD (MJy/sr), 1-sigma uncertainty and bit mask of one 24 um DCE.

    Parameters
    ----------
    slope_dn_sample, diff_dn : (NY, NX) arrays
        On-board slope (DN per sample) and read2 - read1 difference (DN).
    nreads : int
        Samples in the on-board fit.
    read_time : float
        SAMPTIME, s.
    dcenum : int
    csm_arcsec : float
        Scan-mirror position (CSM_PRED).
    sat_threshold : float
        On-board difference threshold, DN per sample (SATTHDIF).
    products : SiProducts
    off : tuple of str
        Corrections (names in :data:`CORRECTIONS`) to skip.
    """
    unknown = set(off) - set(CORRECTIONS)
    if unknown:
        raise ValueError(f"unknown correction(s) {sorted(unknown)}; known: {CORRECTIONS}")
    slope = np.asarray(slope_dn_sample, dtype=float).copy()
    diff = np.asarray(diff_dn, dtype=float).copy()
    mask = np.where(products.pmask != 0, BBMSK["PMASK"], 0).astype(np.int32)
    if "read2" not in off:
        slope += products.read2 * si_as.sur_weight(nreads)[1]
        diff = np.where(diff > 0, diff + products.read2, 0.0)
    replaced = (diff > PIPELINE_SAT_FACTOR * sat_threshold) & ("saturation" not in off)
    mask[replaced] |= BBMSK["SATURATED"]
    mask[diff >= 0.9 * products.saturation_dn] |= BBMSK["SATURATED_HARD"]
    # droop offsets follow the charge the ramps really held (saturated pixels clipped), which is
    # what the on-board slopes saw: measure them there, then subtract them from the replaced image too
    measured = slope / read_time                                       # DN/s
    offset = measured - si_as.droop_inverse(measured, 0.0 if "droop" in off else products.droop,
                                            0.0 if "row_droop" in off else products.row_droop)
    rate = np.where(replaced, diff / read_time, measured) - offset
    # noise of the charge actually collected: droop is an offset, not charge
    var = np.where(replaced,
                   (2 * products.read_noise ** 2 + np.maximum(rate, 0) * read_time / products.gain)
                   / read_time ** 2,
                   si_as.sur_variance(rate, nreads=nreads, read_time=read_time, gain=products.gain,
                                      read_noise=products.read_noise))
    flat_rel_var = 0.0
    if "dark" not in off:
        rate = rate - products.dark_for(dcenum)
        var = var + np.square(_plane(products.error("dark"), min(int(dcenum), len(products.dark) - 1)))
    scale = np.full(rate.shape, products.fluxconv)
    if "first_frame" not in off:
        scale /= si_as.first_frame_factor(dcenum, products.first_frame)
    if "flat" not in off:
        flat, exact = products.flat_for(csm_arcsec)
        scale = scale / flat
        plane = int(np.argmin(np.abs(products.csm_arcsec - csm_arcsec)))
        flat_rel_var = np.square(_plane(products.error("flats"), plane) / flat)
        if not exact:
            mask |= BBMSK["FLAT_NEAREST"]
    image = scale * rate
    # the maps' errors (products derived from data) are in; FLUXCONV's is a header systematic
    unc = np.sqrt(scale ** 2 * var + image ** 2 * flat_rel_var)
    bad = products.pmask != 0                      # permanently bad: no value, as the contract says
    return np.where(bad, np.nan, image), np.where(bad, np.nan, unc), mask


def _plane(error, index: int):
    """Plane ``index`` of a product's error cube, or the scalar 0 a product set without errors gives."""
    error = np.asarray(error, dtype=float)
    return error[index] if error.ndim == 3 else error


class LatentTracker:
    """Flags, DCE after DCE, the detector pixels where a bright source sat within ``window_s``.

    A short-lived latent stays on the detector pixel that saw the source, so the
    flag is by detector pixel, whatever the pointing.  A pixel is flagged when
    the last DCE in which it was bright is at most ``window_s`` before this one
    (DCEs come in time order): one map of those times is kept, so the memory
    does not grow with the AOR even for the persistent latents' 3-day window
    (which held every DCE's bright mask when the masks themselves were kept).
    """

    def __init__(self, *, threshold_dn_s: float, window_s: float):
        self.threshold = threshold_dn_s
        self.window = window_s
        self._last_bright_s: np.ndarray | None = None    # -inf: never bright

    def update(self, t_s: float, rate_dn_s: np.ndarray, also_bright=None) -> np.ndarray:
        """Flag for a DCE at ``t_s`` (s), then remember where this DCE was bright (the rate above
        the threshold, or ``also_bright``: e.g. pixels saturated too fast to give a rate)."""
        if self._last_bright_s is None:
            self._last_bright_s = np.full(np.shape(rate_dn_s), -np.inf)
        flag = t_s - self._last_bright_s <= self.window
        bright = rate_dn_s > self.threshold
        if also_bright is not None:
            bright = bright | also_bright
        self._last_bright_s = np.where(bright, t_s, self._last_bright_s)
        return flag
