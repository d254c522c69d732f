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
  the brightest diffuse emission plus the peak pixel of every source within
  reach, through the largest gain) exceeds a threshold -- tens of DCEs of a
  scan map, not 1616.

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
from .streams import dce_streams

__all__ = ["GeCarry", "SiCarry", "ge_state_step", "si_state_step", "si_latent_dces", "prf_peak_bound"]


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
    advance_cr_state(carry.cr, cfg=aor.cfg, streams=dce_streams(aor.cfg.seed, plan.index),
                     dt=aor.spec.read_time_s, ramp_starts=aor.ramp_starts)


def si_state_step(aor, carry: SiCarry, plan, render: bool) -> None:
    """Carry ``carry`` through 24 um DCE ``plan``: the latents decay, and when ``render`` (the
    photocurrent may exceed a latent threshold, :func:`si_latent_dces`) the DCE's photocurrent
    updates them as the full simulation does (``mipssim.observe._SiAor.simulate_dce``)."""
    carry.enter(aor.mid_time(plan))
    if render:
        _, _, photo, _ = aor.signal(plan)
        carry.latents.update(photo)


def prf_peak_bound(prf) -> float:
    """An upper bound on the flux fraction a PRF puts in any one detector pixel.

    A pixel collects the PSF (constant over each of its samples) over a square of ``ratio``
    samples, which lies inside some window of ``ceil(ratio) + 1`` samples: the largest sum of
    the samples' positive parts over such windows bounds it (the 24 um PSF, from real data, has
    negative samples).  The samples are recovered from the PRF's integral image.
    """
    psf = np.diff(np.diff(prf._integral, axis=0), axis=1)
    w = int(math.ceil(prf.ratio)) + 1
    pos = np.zeros((psf.shape[0] + 1, psf.shape[1] + 1))
    pos[1:, 1:] = np.maximum(psf, 0.0).cumsum(0).cumsum(1)
    if w >= min(psf.shape):
        return float(pos[-1, -1]) * (1 + 1e-9) + 1e-12
    sums = pos[w:, w:] - pos[:-w, w:] - pos[w:, :-w] + pos[:-w, :-w]
    return float(sums.max()) * (1 + 1e-9) + 1e-12


def si_latent_dces(aor, plans) -> np.ndarray:
    """Which 24 um DCEs may leave a latent: True where the photocurrent may exceed a threshold.

    An upper bound on a DCE's photocurrent (DN/s) is the largest gain (first-frame factor,
    DN/s per MJy/sr, flat; spots only darken) times the brightest diffuse emission plus the
    peak-pixel surface brightness (:func:`prf_peak_bound`) of every source close enough to the
    pointing to be rendered (generously: the array's half-diagonal plus the PRF's radius and
    two pixels, 1 % of scale).  Where the bound stays at or below every latent threshold the
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
    if scene.include_sources and len(prep.flux):
        peaks = np.array([f * prf_peak_bound(p) for f, p in zip(prep.flux, prep.prfs)])
        peaks *= 1.0 / spec.pixel_sr / 1e6                                   # Jy -> MJy/sr
        ny, nx = spec.shape
        reach = np.array([math.hypot(0.5 * nx + p.radius_pix + 1, 0.5 * ny + p.radius_pix + 1) + 2
                          for p in prep.prfs]) * spec.pixel_arcsec * 1.01
        cos_reach = np.cos(np.radians(np.minimum(reach / 3600.0, 180.0)))
        src = _unit(prep.ra, prep.dec)
        for lo in range(0, len(plans), 4096):                               # bounded memory
            crval = np.array([p.crval for p in plans[lo:lo + 4096]])
            near = _unit(crval[:, 0], crval[:, 1]) @ src.T >= cos_reach
            bound[lo:lo + len(crval)] += gain * (near * np.abs(peaks)).sum(axis=1)
    return bound > threshold


def _unit(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
