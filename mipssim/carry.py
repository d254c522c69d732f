"""What one DCE leaves to the next: the state a chunk of DCEs starts from.

Physics that carries over between DCEs
--------------------------------------
Most of the simulator is a function of the DCE alone: each random effect draws
from its own stream per (effect, DCE) (:mod:`.streams`), the plan fixes each
DCE's pointing, time and numbering, and the AOR-level effects are functions of
time drawn once from AOR-level streams (the slow drift, the common
responsivity steps, the anneal times, the scene).  The first stim flash's
factor is a function of the plan.  What remains is state that the detector
carries from one DCE to the next:

* **Ge (70, 160 um): the cosmic-ray responsivity excess** (:class:`~.ge_ga.CRState`):
  raised by every hit, relaxing with ``cr_resp_tau_s``, emptied by an anneal.
  Its value at the AOR start is drawn from the AOR-level ``cr_history`` stream
  (:mod:`.anneal`); after that it depends on the hits alone, never on the
  signal, and the hits come from the per-DCE streams.
* **Ge: the transient adaptation state** (:mod:`.ge_transient`, off by default):
  depends on the illumination every pixel saw, i.e. on the rendered sky.
* **24 um: the three latents** (:mod:`.si_latents`): left by photocurrent above
  a threshold, decaying over seconds, hours and days.
* the times of the previous DCE (gaps, anneals between DCEs).

How a chunk gets its starting state
-----------------------------------
Two ways were possible: (a) make each state a closed-form function of the DCE
index and time, or (b) a cheap state-only pass over the preceding DCEs that
renders no ramps.  (a) fits the AOR-level effects (already so) but not these
states: a responsivity excess with a 600 s memory is a sum over every earlier
hit, and bit-identical output needs the same floating-point operations in the
same order whatever the chunking, which a closed form evaluated from a
different starting point does not give.  So the states above use (b), made
cheap:

* the excess is carried by :func:`~.ge_ga.advance_cr_state`, which redraws the
  DCE's hits from its own ``cosmic_rays`` stream (sparse draws: the count,
  then the cells, ~100 variates) and sizes from ``cr_responsivity``, and runs
  the one implementation of the per-read arithmetic that the full simulation
  runs (~0.1 ms per 70 um DCE, against ~7 ms to simulate it);
* the transient state needs the sky, so the pass renders it (no ramps) when
  the effect is on (~0.5 ms per Ge DCE);
* a latent update with a photocurrent below every latent threshold adds exact
  zeros, so the pass decays the latents every DCE and renders the photocurrent
  only for DCEs where a rigorous upper bound on it (:func:`si_latent_dces`:
  the brightest diffuse emission plus what each source can put in a pixel at
  its distance from the array, through the largest gain) exceeds a threshold.

The pass runs once, in the parent process, over the whole plan (O(N): ~0.2 s
for a 1616-DCE 70 um map) and keeps a snapshot at each chunk's start (the
latents by their non-zero pixels); the chunks then run in any order, anywhere.
With one worker the chunks run in order, each from the full simulation's
state at the end of the one before: comparing the files of one and several
workers is the check that the state-only pass is exact (tests/test_sim_chunks.py).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from .ge_ga import CRState, advance_cr_state
from .ge_transient import TransientState
from .si_latents import SiLatents
from .streams import dce_streams, noise_seed

__all__ = ["GeCarry", "PrfReach", "SiCarry", "ge_state_step", "si_latent_dces", "si_state_step"]


@dataclass
class GeCarry:
    """What a Ge DCE leaves to the next.

    Attributes
    ----------
    cr : CRState
        Cosmic-ray responsivity excess per pixel (fraction).
    transient : TransientState or None
        The pixels' adaptation state (None when the effect is off).
    prev_start_s, prev_end_s : float
        Start of the previous DCE and its last read, s since the AOR start (-inf and 0
        before the first DCE).
    """

    cr: CRState
    transient: TransientState | None = None
    prev_start_s: float = -math.inf
    prev_end_s: float = 0.0

    def copy(self) -> GeCarry:
        """An independent copy (a snapshot for a chunk's start)."""
        return copy.deepcopy(self)

    def enter(self, t_start_s: float, t_last_read_s: float, *, tau_s: float,
              anneals: np.ndarray) -> float:
        """Step to a DCE starting at ``t_start_s``: the excess relaxes over the gap since the
        previous DCE's last read and empties at an anneal in between.  Returns the gap, s."""
        gap_s = t_start_s - self.prev_end_s
        self.cr.relax(gap_s, tau_s)
        if np.any((anneals > self.prev_start_s) & (anneals <= t_start_s)):
            self.cr.excess[:] = 0.0          # an anneal before this DCE empties the traps
        self.prev_start_s, self.prev_end_s = t_start_s, t_last_read_s
        return gap_s


@dataclass
class SiCarry:
    """What a 24 um DCE leaves to the next: the latents and the previous DCE's mid time."""

    latents: SiLatents
    prev_mid_s: float | None = None
    _snapshot: dict | None = field(default=None, repr=False)

    def enter(self, t_mid_s: float) -> None:
        """Step to a DCE whose middle is at ``t_mid_s``: the latents decay since the last one."""
        if self.prev_mid_s is not None:
            self.latents.decay(t_mid_s - self.prev_mid_s)
        self.prev_mid_s = t_mid_s

    def copy(self) -> SiCarry:
        """A compact snapshot: the latent maps by their non-zero pixels (mostly none)."""
        maps = {}
        for name in ("short", "dark", "long"):
            flat = getattr(self.latents, name).ravel()
            idx = np.flatnonzero(flat)
            maps[name] = (idx, flat[idx].copy())
        return SiCarry(latents=None, prev_mid_s=self.prev_mid_s, _snapshot=maps)

    def restore(self, cfg, shape) -> SiCarry:
        """A working state from a snapshot made by :meth:`copy` (a working state is returned as is)."""
        if self._snapshot is None:
            return self
        latents = SiLatents(cfg, shape)
        for name, (idx, values) in self._snapshot.items():
            getattr(latents, name).ravel()[idx] = values
        return SiCarry(latents=latents, prev_mid_s=self.prev_mid_s)


def ge_state_step(aor, carry: GeCarry, plan, stim_factor: float) -> None:
    """Carry ``carry`` through Ge DCE ``plan`` without simulating its ramps.

    ``aor`` is the AOR's shared context (``mipssim.observe._GeAor``); the steps are
    those of its full simulation (``_GeAor.simulate_dce``) minus the ramps, through the same
    functions, so the state is the same to the bit.
    """
    t_reads = aor.read_times(plan)
    gap_s = carry.enter(plan.t_start_s, t_reads[-1], tau_s=aor.cfg.cr_resp_tau_s, anneals=aor.anneals)
    if carry.transient is not None:
        _, before, during = aor.currents(plan, stim_factor)
        carry.transient.relax(before, gap_s)
        carry.transient.advance(during, aor.spec.read_time_s, len(t_reads))
    advance_cr_state(carry.cr, cfg=aor.cfg, streams=dce_streams(noise_seed(aor.cfg), plan.index),
                     dt=aor.spec.read_time_s, ramp_starts=aor.ramp_starts)


def si_state_step(aor, carry: SiCarry, plan, render: bool) -> None:
    """Carry ``carry`` through 24 um DCE ``plan``: the latents decay, and when ``render`` (the
    photocurrent may exceed a latent threshold, :func:`si_latent_dces`) the DCE's photocurrent
    updates them as the full simulation does (``mipssim.observe._SiAor.simulate_dce``)."""
    carry.enter(aor.mid_time(plan))
    if render:
        _, _, photo, _ = aor.signal(plan)
        carry.latents.update(photo)


@dataclass(frozen=True)
class PrfReach:
    """An upper bound on the flux fraction a PRF puts in a pixel, as a function of the distance.

    ``bound(d)``: no pixel whose centre is ``d`` or more detector pixels from the source gets a
    larger fraction.  A pixel collects the PSF (constant over each of its samples) over a square
    of ``ratio`` samples, i.e. ``sum_ij psf_ij oy_i ox_j`` with ``oy_i``, ``ox_j`` the overlaps of
    the square's sides with sample ``i``'s and ``j``'s.  For pixel centres within a small cell
    (1/16 of a pixel a side), each overlap is at most its largest value over the cell, so
    ``sum_ij max(psf_ij, 0) max oy_i max ox_j`` bounds every pixel centred in the cell (the
    24 um PSF, from real data, has negative samples); the bound at ``d`` is the largest among
    the cells that reach ``d`` or beyond.  About 1.2 x the PRF's largest value at ``d = 0``.
    The samples are recovered from the PRF's integral image.
    """

    max_dist: np.ndarray     # (K,) the cells' farthest centre offset, pixels, descending
    running_max: np.ndarray  # (K,) the largest cell bound among the first k cells

    @classmethod
    def of(cls, prf, cells_per_pixel: int = 16) -> PrfReach:
        psf = np.maximum(np.diff(np.diff(prf._integral, axis=0), axis=1), 0.0)
        q = prf.ratio / cells_per_pixel                       # cell size, samples
        weights, far = [], []
        for n, c in zip(psf.shape, prf.center):
            y0 = np.arange(-0.5 * prf.ratio - 1.0, n + 0.5 * prf.ratio + 1.0, q)   # cell starts
            weights.append(_max_overlap(y0, q, 0.5 * prf.ratio, n))
            far.append(np.maximum(np.abs(y0 - c), np.abs(y0 + q - c)) / prf.ratio)
        bounds = weights[0] @ psf @ weights[1].T
        dist = np.hypot(far[0][:, None], far[1][None, :]).ravel()
        order = np.argsort(-dist, kind="stable")
        return cls(max_dist=dist[order],
                   running_max=np.maximum.accumulate(bounds.ravel()[order]) * (1 + 1e-9) + 1e-12)

    def bound(self, d: np.ndarray) -> np.ndarray:
        """The bound for pixel centres at least ``d`` pixels away (any shape)."""
        k = np.searchsorted(-self.max_dist, -np.asarray(d, dtype=float), side="right")
        return np.where(k > 0, self.running_max[np.maximum(k - 1, 0)], 1e-12)   # beyond: rounding


def _max_overlap(y0: np.ndarray, q: float, h: float, n: int) -> np.ndarray:
    """(cells, n): the largest overlap of ``[y - h, y + h]`` with sample ``[i, i + 1]`` for ``y`` in
    ``[y0, y0 + q]``.  The overlap is a trapezoid in ``y`` (breaks at ``i - h``, ``i + 1 - h``,
    ``i + h``, ``i + 1 + h``), so its largest value is at an end of the cell or at a break in it."""
    i = np.arange(n)[None, :]
    lo, hi = y0[:, None], y0[:, None] + q

    def overlap(y):
        return np.maximum(0.0, np.minimum(i + 1, y + h) - np.maximum(i, y - h))

    best = np.maximum(overlap(lo), overlap(hi))
    for brk in (i - h, i + 1 - h, i + h, i + 1 + h):
        inside = (brk >= lo) & (brk <= hi)
        best = np.where(inside, np.maximum(best, overlap(np.where(inside, brk, lo))), best)
    return best


def si_latent_dces(aor, plans) -> np.ndarray:
    """Which 24 um DCEs may leave a latent: True where the photocurrent may exceed a threshold.

    An upper bound on a DCE's photocurrent (DN/s) is the largest gain (first-frame factor,
    DN/s per MJy/sr, flat; spots only darken) times the brightest diffuse emission plus, for
    every source, its flux times :class:`PrfReach`'s bound at its distance from the nearest
    pixel centre of the array.  Source positions come from the gnomonic projection through the
    WCS's CD matrix, less a 1-pixel margin for the SIP distortion (< 0.3 pixel within a PRF's
    reach of the 24 um array).  Where the bound stays at or below every latent threshold the
    latent update adds exact zeros, and the state-only pass need not render the DCE.
    """
    cfg, scene, det = aor.cfg, aor.scene, aor.detector
    spec = det.spec
    threshold = min(cfg.latent_threshold_dn_s, cfg.dark_latent_threshold_dn_s,
                    cfg.long_latent_threshold_dn_s)
    ff = max([1.0, *cfg.first_frame_factors]) if cfg.include_first_frame else 1.0
    depths = det.spots[:, 3] if (cfg.include_spots and len(det.spots)) else np.zeros(0)
    spots = float(np.prod(np.maximum(1.0, np.abs(depths) - 1.0)))     # |1 - d g| <= max(1, d - 1)
    gain = ff * spec.dn_s_per_mjysr * float(np.max(np.abs(det.gainflat))) * spots
    diffuse = 0.0
    if scene.include_background:
        diffuse += abs(scene.zodi_mjysr) + abs(scene.cirrus_mjysr) * (1 + abs(scene.cirrus_contrast))
    if scene.include_sources and scene.blob_peak_mjysr > 0:
        diffuse += scene.blob_peak_mjysr
    bound = np.full(len(plans), gain * diffuse)
    prep = scene._prepared()
    if scene.include_sources and len(prep.flux) and len(plans):
        made: dict[int, PrfReach] = {}                                      # sources share PRFs
        for prf in prep.prfs:
            if id(prf) not in made:
                made[id(prf)] = PrfReach.of(prf)
        reach = [made[id(prf)] for prf in prep.prfs]
        flux = np.abs(prep.flux) / spec.pixel_sr / 1e6                       # Jy -> MJy/sr
        for lo in range(0, len(plans), 1024):                                # bounded memory
            block = plans[lo:lo + 1024]
            d = _distance_to_array(block, prep.ra, prep.dec, spec.shape)     # (plans, sources)
            d = np.maximum(d - 1.0, 0.0)
            for k in range(len(flux)):
                bound[lo:lo + len(block)] += gain * flux[k] * reach[k].bound(d[:, k])
    return bound > threshold


def _distance_to_array(plans, ra_deg, dec_deg, shape) -> np.ndarray:
    """Distance (pixels) of each source from the nearest pixel centre of each DCE's array, by the
    gnomonic projection and the CD matrix (no SIP); ``inf`` for a source 90 deg away or more."""
    hdr = plans[0].wcs_template
    cd = np.array([[hdr["CD1_1"], hdr["CD1_2"]], [hdr["CD2_1"], hdr["CD2_2"]]])
    crpix = np.array([hdr["CRPIX1"], hdr["CRPIX2"]]) - 1.0
    ra0, dec0 = (np.radians(np.array([p.crval[i] for p in plans]))[:, None] for i in (0, 1))
    ra, dec = np.radians(np.asarray(ra_deg, float))[None], np.radians(np.asarray(dec_deg, float))[None]
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.degrees(np.cos(dec) * np.sin(ra - ra0) / cos_c)
        eta = np.degrees((np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0))
                         / cos_c)
    inv = np.linalg.inv(cd)
    x = crpix[0] + inv[0, 0] * xi + inv[0, 1] * eta
    y = crpix[1] + inv[1, 0] * xi + inv[1, 1] * eta
    dx = np.maximum(np.maximum(-x, x - (shape[1] - 1)), 0.0)
    dy = np.maximum(np.maximum(-y, y - (shape[0] - 1)), 0.0)
    return np.where(cos_c > 0, np.hypot(dx, dy), np.inf)
