"""Si:As 24 um detector physics and on-board processing, read by read.

Signal (DN/s) a pixel integrates in DCE ``n`` at scan-mirror position ``csm``::

    S = f_ff(DCENUM) * G * gainflat * spots(csm) * sky + dark(DCENUM) + latent

``G`` = 1/0.0454 DN/s per MJy/sr, ``f_ff`` the first-frame deficit, ``spots``
the pick-off-mirror spots (15-20 % deep, 3-4 px) that move on the array with
the scan mirror, ``dark`` the DCE-dependent dark with the readout-4 jailbar
(every 4th column), ``latent`` the short-lived bright latent left by earlier
DCEs (0.8 % of the signal above a threshold, decaying with ``latent_tau_s``).

Per read: Poisson electrons accumulate, cosmic rays add charge, the charge is
clipped at the full well (``include_saturation``; with it off neither the well
nor the A/D's upper rail clips), droop and row droop add offsets proportional to the
array's and row's integrated signal, the second read near the bottom is low by
``a(y)`` (read-2 effect), the reset level and read noise are added and the A/D
rounds and clips.  On board, only the least-squares slope (DN per sample) and
``read2 - read1`` (zeroed below the saturation threshold) are kept.

The truth slope is ``S`` itself (before droop, read-2 and saturation: the
electronics' artefacts that the reprocessor must remove).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from calibration import si_as
from calibration.instrument import BandSpec, band_spec

from .ge_ga import CR_DTYPE, adc, draw_hits

__all__ = ["SiDetector", "default_si_detector", "simulate_si_dce", "onboard_threshold"]

_DETECTOR_SEED = 20030825
_BASE_SPOTS = 10          # spots drawn with the rest of the detector (the shipped products' count)
RESET_LEVEL_DN = 5000.0   # reset level of the ramps; UNCONFIRMED ("near the A/D lower rail")


@dataclass
class SiDetector:
    """Per-pixel truth of the 24 um array."""

    spec: BandSpec
    gainflat: np.ndarray        # smooth spot-free flat, median 1
    spots: np.ndarray           # (K, 4): y, x, sigma_px, depth of POM spots at csm = 0
    read_noise: np.ndarray      # DN
    dark_base: np.ndarray       # DN/s before the jailbar factor
    pmask: np.ndarray

    def spot_map(self, csm_arcsec: float, *, include: bool = True) -> np.ndarray:
        """Multiplicative spot map with the spots moved by the scan mirror (along y)."""
        if not include or not len(self.spots):
            return np.ones(self.spec.shape)
        shift = csm_arcsec / self.spec.pixel_arcsec
        yy, xx = np.mgrid[0:self.spec.shape[0], 0:self.spec.shape[1]]
        out = np.ones(self.spec.shape)
        for y0, x0, sig, depth in self.spots:
            out *= 1.0 - depth * np.exp(-0.5 * ((yy - y0 - shift) ** 2 + (xx - x0) ** 2) / sig ** 2)
        return out

    def dark(self, dcenum: int, jailbar_factors, *, include_jailbar: bool = True) -> np.ndarray:
        """Dark (DN/s) of DCE number ``dcenum``: readout 4 (every 4th column) scaled by DCENUM."""
        dark = self.dark_base.copy()
        if include_jailbar:
            f = jailbar_factors[min(dcenum, len(jailbar_factors) - 1)]
            dark[:, 3::4] *= f
        return dark


def _draw_spots(rng: np.random.Generator, k: int) -> np.ndarray:
    """(k, 4): y, x, sigma_px and relative depth of ``k`` POM spots."""
    return np.column_stack([rng.uniform(64, 124, k), rng.uniform(64, 124, k),   # upper right [FEAT]
                            rng.uniform(1.5, 2.0, k),                           # 3-4 px across
                            rng.uniform(0.9, 1.15, k)])


def default_si_detector(cfg) -> SiDetector:
    """The simulator's true 24 um array (deterministic; spot depth and count from ``cfg``).

    Only the spots depend on ``cfg``: the detector's stream always draws
    ``_BASE_SPOTS`` spots (in the order the shipped products were derived with)
    and ``cfg.n_spots`` takes the first ones, further spots coming from a stream
    of their own, so the flat, bad pixels, read noise and dark never depend on
    ``n_spots`` and fewer spots are a subset of more.
    """
    spec = band_spec(24)
    rng = np.random.default_rng(_DETECTOR_SEED)
    noise = ndimage.gaussian_filter(rng.standard_normal(spec.shape), 20.0)
    gainflat = 1.0 + 0.03 * noise / noise.std() + 0.01 * rng.standard_normal(spec.shape)
    gainflat /= np.median(gainflat)
    k = int(cfg.n_spots)
    spots = _draw_spots(rng, _BASE_SPOTS)[:k]
    if k > _BASE_SPOTS:
        spots = np.vstack([spots, _draw_spots(np.random.default_rng([_DETECTOR_SEED, 1]),
                                              k - _BASE_SPOTS)])
    spots[:, 3] *= cfg.spot_depth
    pmask = np.zeros(spec.shape, dtype=np.int32)
    bad = rng.choice(spec.shape[0] * spec.shape[1], 22, replace=False)   # 22 bad pixels [HB 6.5 /68]
    pmask.flat[bad] = 1 << 14
    return SiDetector(spec=spec, gainflat=gainflat, spots=spots,
                      read_noise=spec.read_noise_dn * (1 + 0.05 * rng.standard_normal(spec.shape)),
                      dark_base=cfg.dark24_dn_s * (1 + 0.1 * rng.standard_normal(spec.shape)),
                      pmask=pmask)


def onboard_threshold(nreads: int, spec: BandSpec) -> float:
    """Difference-image threshold, DN/sample: the rate that fills the well over the DCE.

    For a 30 MIPS-s DCE (60 reads) it is 600 DN/sample [HB 5.1.2 /56]; it scales
    inversely with the number of samples ("rescaled with integration time").
    """
    return spec.saturation_dn / nreads


def read2_deficit(shape, amplitude_dn: float, scale_rows: float) -> np.ndarray:
    """Read-2 deficit a(y) in DN, largest at the bottom row (y = 0)."""
    y = np.arange(shape[0], dtype=float)[:, None]
    return amplitude_dn * np.exp(-y / scale_rows) * np.ones((1, shape[1]))


@dataclass
class SiDCE:
    """One simulated 24 um DCE."""

    planes: np.ndarray        # (2, NY, NX) float32: slope (DN/sample), difference (DN)
    ramp: np.ndarray          # (NREADS, NY, NX) uint16 reads (int32 without saturation)
    cr_events: np.ndarray


def simulate_si_dce(signal_dn_s: np.ndarray, *, nreads: int, detector: SiDetector, cfg,
                    streams: dict[str, np.random.Generator]) -> SiDCE:
    """Reads and on-board products of one DCE integrating ``signal_dn_s`` (see the module notes)."""
    spec = detector.spec
    dt = spec.read_time_s
    gain = cfg.gain_e_per_dn or spec.gain_e_per_dn
    shape = (nreads,) + spec.shape
    mean_dn = np.broadcast_to(np.maximum(signal_dn_s, 0.0) * dt, shape)
    if cfg.include_poisson:
        delta = streams["poisson"].poisson(mean_dn * gain) / gain
    else:
        delta = mean_dn.copy()
    events = np.zeros(0, dtype=CR_DTYPE)
    if cfg.include_cosmic_rays:       # none before the first read: it only moves the intercept
        read, y, x = draw_hits(streams["cosmic_rays"], cfg.cr_rate_per_s * dt, shape,
                               np.arange(nreads) == 0)
        z = streams["cosmic_rays"].standard_normal(len(read))
        amp = cfg.cr_amp_median_dn * np.exp(cfg.cr_amp_sigma_ln * z)
        np.add.at(delta, (read, y, x), amp)
        events = np.zeros(len(read), dtype=CR_DTYPE)
        events["read"], events["y"], events["x"], events["amplitude_dn"] = read, y, x, amp
    q = np.cumsum(delta, axis=0)
    if cfg.include_saturation:
        q = np.minimum(q, spec.saturation_dn)                           # full well
    q = si_as.droop_forward(q, cfg.droop_coeff if cfg.include_droop else 0.0,
                            cfg.row_droop_coeff if cfg.include_row_droop else 0.0)
    if cfg.include_read2 and nreads > 1:
        q[1] -= read2_deficit(spec.shape, cfg.read2_dn, cfg.read2_scale_rows)
    level = RESET_LEVEL_DN + q
    if cfg.include_read_noise:
        level = level + streams["read_noise"].standard_normal(shape) * detector.read_noise
    reads = adc(level, spec.adc_max_dn, saturate=cfg.include_saturation)
    slope = si_as.sur_slope(reads)
    diff = reads[1].astype(float) - reads[0]
    diff = np.where(diff >= onboard_threshold(nreads, spec), diff, 0.0)
    planes = np.stack([slope, diff]).astype(np.float32)
    return SiDCE(planes=planes, ramp=reads, cr_events=events)
