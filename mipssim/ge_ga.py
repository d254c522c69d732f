"""Ge:Ga detector physics, read by read.

For each read interval ``k`` of a DCE the photocurrent ``R_k * I`` (DN/s at
nominal responsivity ``I`` times the responsivity in force) delivers
``Poisson(R_k I dt gain)`` electrons; they accumulate into the integrated
signal ``q`` (DN), which restarts at every reset (two ramps per 10 s DCE at
160 um).  Cosmic rays add charge in the interval they hit and raise the
pixel's responsivity by a random step that relaxes with ``cr_resp_tau_s``
(CR-induced responsivity changes, [IOC-2015]; sizes UNCONFIRMED).  The
excess noise of the flight arrays is white noise in the current
(:mod:`calibration.instrument` "Ge noise"): each interval gains an independent
Gaussian charge of variance ``excess_noise * dt``.  Optional
large common steps (:class:`StepModel`, off by default) let stim tracking be
tested under step-like changes.  The responsivity of interval ``k`` is evaluated
at the interval's middle.  The
electronic nonlinearity compresses ``q`` (:mod:`calibration.nonlinearity`);
the reset level (with per-ramp kTC-like scatter) and Gaussian read noise are
added at the output; the A/D converter rounds and clips to 0..65535 (with
``include_saturation`` off the upper rail is gone and the cube is int32).

Each effect draws from its own random stream per DCE (:mod:`.streams`), so
switching one effect off never changes another's noise, nor any other DCE's.
Every random event is returned for the truth file.

Cosmic-ray hits are drawn sparsely (:func:`draw_hits`): the total count over
the DCE's (read interval, pixel) cells, then each hit's cell -- the same
Poisson process as one count per cell, for ~100 variates per 70 um DCE instead
of 32768 (0.5 ms), and cheap enough to be redrawn by the state-only pass.

Design trade-off: DCEs are simulated one at a time (the responsivity state
carries from one to the next); a Ge frame is tiny (32x32 or 3x20), so the
per-DCE numpy work is a few hundred microseconds and batching DCEs would buy
little.  The only state a DCE leaves to the next through this module is the
cosmic-ray responsivity excess (:class:`CRState`); it depends on the hits
alone, never on the signal, so :func:`advance_cr_state` carries it through a
DCE without rendering the ramps, with the same arithmetic as
:func:`simulate_ramps` (bit for bit: :mod:`.carry`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration import nonlinearity

from .streams import EFFECTS as STREAMS

__all__ = ["STREAMS", "DriftModel", "StepModel", "RampTruth", "CRState", "simulate_ramps", "adc",
           "draw_hits", "advance_cr_state"]


@dataclass
class DriftModel:
    """Common slow responsivity drift: a sum of sinusoids normalised to ``rms``.

    The pixel-level drift is ``drift(t) * (1 + spread * z_pix)``.
    """

    periods_s: np.ndarray
    phases: np.ndarray
    rms: float

    @classmethod
    def draw(cls, rng: np.random.Generator, *, rms: float, min_period_s: float,
             max_period_s: float, n_terms: int = 4) -> DriftModel:
        periods = np.exp(rng.uniform(np.log(min_period_s), np.log(max_period_s), n_terms))
        return cls(periods_s=periods, phases=rng.uniform(0, 2 * np.pi, n_terms), rms=rms)

    def __call__(self, t_s: np.ndarray) -> np.ndarray:
        t = np.asarray(t_s, dtype=float)[..., None]
        wave = np.sin(2 * np.pi * t / self.periods_s + self.phases).sum(-1)
        return self.rms * wave / np.sqrt(len(self.periods_s) / 2.0)


@dataclass
class StepModel:
    """Occasional large common responsivity steps: ``R += size_k`` for ``t > t_k`` (all pixels).

    Step times are a Poisson process of ``rate_per_hr`` over the AOR; each step
    has magnitude ``size`` and a random sign (both UNCONFIRMED test knobs, off by
    default: :class:`~mipssim.config.SimConfig` ``resp_step_rate_per_hr``).
    """

    t_s: np.ndarray
    size: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, *, rate_per_hr: float, size: float,
             duration_s: float) -> StepModel:
        n = rng.poisson(max(rate_per_hr, 0.0) * duration_s / 3600.0)
        t = np.sort(rng.uniform(0.0, duration_s, n))
        return cls(t_s=t, size=size * rng.choice([-1.0, 1.0], n))

    def __call__(self, t_s: np.ndarray) -> np.ndarray:
        """Summed fractional step in force at times ``t_s``."""
        t = np.asarray(t_s, dtype=float)
        if not len(self.t_s):
            return np.zeros(t.shape)
        return np.where(t[..., None] > self.t_s, self.size, 0.0).sum(-1)


@dataclass
class CRState:
    """Per-pixel fractional responsivity excess left by cosmic rays (carried between DCEs)."""

    excess: np.ndarray

    def relax(self, dt_s: float, tau_s: float) -> None:
        self.excess *= np.exp(-dt_s / tau_s)


@dataclass
class RampTruth:
    """What one simulated DCE really contained."""

    raw: np.ndarray             # (NREADS, NY, NX) uint16 (int32 without saturation)
    slope_dn_s: np.ndarray      # noiseless mean slope, DN/s
    responsivity: np.ndarray    # mean responsivity over the read intervals of the DCE's ramps
    cr_events: np.ndarray       # structured: read, y, x, amplitude_dn
    t_mid_s: float = 0.0        # mean time of those read intervals (their middles), s


CR_DTYPE = np.dtype([("read", "i4"), ("y", "i4"), ("x", "i4"), ("amplitude_dn", "f8")])


def simulate_ramps(current_dn_s: np.ndarray, *, t_reads_s: np.ndarray, ramp_starts: np.ndarray,
                   detector, cfg, drift: DriftModel, cr_state: CRState,
                   streams: dict[str, np.random.Generator],
                   steps: StepModel | None = None, transient=None) -> RampTruth:
    """Simulate one DCE.

    Parameters
    ----------
    current_dn_s : (NY, NX) array
        Signal at nominal responsivity (sky + stim + dark), DN/s.
    t_reads_s : (NREADS,) array
        Time of each read since the AOR start, s.
    ramp_starts : (NREADS,) bool array
        True at the first read after a reset.
    detector : mipssim.detector.GeDetector
    cfg : mipssim.config.SimConfig
    drift : DriftModel
    cr_state : CRState
        Updated in place.
    streams : dict of numpy Generators
        This DCE's per-effect streams (:func:`mipssim.streams.dce_streams`).
    steps : StepModel, optional
        Common responsivity steps (applied when ``cfg.include_resp_steps``).
    transient : mipssim.ge_transient.TransientState, optional
        The pixels' adaptation state (updated in place): its response factors multiply the
        responsivity of each read interval.
    """
    spec = detector.spec
    gain = cfg.gain_e_per_dn or spec.gain_e_per_dn
    dt = spec.read_time_s
    nreads = len(t_reads_s)
    shape = (nreads,) + current_dn_s.shape

    # responsivity per read interval (at its middle): drift, common steps, then cosmic-ray steps
    t_mid = np.asarray(t_reads_s, dtype=float) - 0.5 * dt
    resp = np.ones(shape)
    if cfg.include_drift:
        resp += drift(t_mid)[:, None, None] * (1.0 + cfg.drift_pixel_spread * detector.drift_z)
    if steps is not None and cfg.include_resp_steps:
        resp += steps(t_mid)[:, None, None]
    if transient is not None:
        resp *= transient.factors(current_dn_s, dt, nreads)
    hits = _dce_hits(cfg, streams, shape, ramp_starts, dt)
    events, cr_charge = _cosmic_ray_charge(hits, shape, cfg, streams["cosmic_rays"])
    _cr_excess_through(cr_state, hits, cfg, streams, dt, nreads, record=resp)

    # charge per interval (DN), integrated within each ramp
    mean_dn = resp * current_dn_s * dt
    if cfg.include_poisson:
        delta = streams["poisson"].poisson(np.maximum(mean_dn, 0.0) * gain) / gain
    else:
        delta = mean_dn
    if cfg.include_excess_noise:
        delta = delta + streams["excess_noise"].standard_normal(shape) * np.sqrt(
            detector.excess_noise * dt)
    q = _integrate(delta + cr_charge, ramp_starts)
    measured = nonlinearity.forward(q, detector.enl_beta) if cfg.include_nonlinearity else q

    level = np.broadcast_to(detector.enl_zero, shape).copy()
    if cfg.include_reset_noise:
        ramp_id = np.cumsum(ramp_starts) - 1
        n_ramps = ramp_id[-1] + 1
        jitter = streams["reset_noise"].normal(0.0, cfg.reset_noise_dn, (n_ramps,) + current_dn_s.shape)
        level += jitter[ramp_id]
    if cfg.include_read_noise:
        level += streams["read_noise"].standard_normal(shape) * detector.read_noise
    raw = adc(level + measured, spec.adc_max_dn, saturate=cfg.include_saturation)

    interval = ~ramp_starts
    mean_resp = resp[interval].mean(axis=0)
    return RampTruth(raw=raw, slope_dn_s=mean_resp * current_dn_s, responsivity=mean_resp,
                     cr_events=events, t_mid_s=float(t_mid[interval].mean()))


def adc(signal_dn: np.ndarray, adc_max_dn: int, *, saturate: bool = True) -> np.ndarray:
    """A/D conversion: round, clip at 0 and (``saturate``) at the upper rail ``adc_max_dn``.

    Returns uint16 with the rail; without it, int32 (values above the rail kept).
    """
    dn = np.rint(signal_dn)
    if saturate:
        return np.clip(dn, 0, adc_max_dn).astype(np.uint16)
    return np.clip(dn, 0, np.iinfo(np.int32).max).astype(np.int32)


def draw_hits(rng: np.random.Generator, mean_per_cell: float, shape: tuple[int, ...],
              skip_reads: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosmic-ray hits of one DCE: the read interval and pixel of each, in (read, y, x) order.

    Parameters
    ----------
    rng : numpy Generator
        The DCE's ``cosmic_rays`` stream; only its first draws are used (the count, then the
        cells), so the hits' amplitudes can follow from the same stream.
    mean_per_cell : float
        Mean hits per (read interval, pixel): rate (per pixel per s) x read time.
    shape : (NREADS, NY, NX)
    skip_reads : (NREADS,) bool array, optional
        Reads whose interval takes no hit (the first read of a ramp: charge before it only moves
        the intercept).

    Returns
    -------
    read, y, x : int arrays
        One entry per hit (a cell hit twice appears twice), sorted by read, then row, then column.

    Notes
    -----
    Independent Poisson counts per cell are a Poisson total over the cells, each hit in a
    uniformly chosen cell: the same process as drawing every cell's count, for a few variates
    per hit.
    """
    nreads, npix = shape[0], int(np.prod(shape[1:]))
    reads = np.arange(nreads) if skip_reads is None else np.flatnonzero(~np.asarray(skip_reads))
    ncell = len(reads) * npix
    n = int(rng.poisson(mean_per_cell * ncell)) if ncell else 0
    cells = np.sort(rng.integers(0, ncell, n)) if n else np.zeros(0, dtype=np.int64)
    y, x = np.divmod(cells % npix, shape[-1])
    return reads[cells // npix], y, x


def _dce_hits(cfg, streams, shape, ramp_starts, dt):
    """The DCE's hits (:func:`draw_hits`), none with cosmic rays off."""
    if not cfg.include_cosmic_rays:
        return (np.zeros(0, dtype=np.int64),) * 3
    return draw_hits(streams["cosmic_rays"], cfg.cr_rate_per_s * dt, shape, ramp_starts)


def _cr_excess_through(cr_state: CRState, hits, cfg, streams, dt: float, nreads: int, *,
                       record: np.ndarray | None = None) -> None:
    """Carry the CR responsivity excess through one DCE's ``nreads`` read intervals (in place).

    Each hit raises its pixel's excess by an exponential step (``cr_responsivity`` stream) in
    its interval; the excess decays by ``exp(-dt / tau)`` from one interval to the next.
    ``record`` (NREADS, NY, NX), when given, gets each interval's excess added.  The one
    implementation of this arithmetic for :func:`simulate_ramps` and :func:`advance_cr_state`,
    so that both leave the same bits.
    """
    steps = None
    if cfg.include_cosmic_rays and cfg.include_cr_responsivity and len(hits[0]):
        sizes = streams["cr_responsivity"].exponential(cfg.cr_resp_step, len(hits[0]))
        steps = np.zeros((nreads,) + cr_state.excess.shape)
        np.add.at(steps, hits, sizes)
    decay = np.exp(-dt / cfg.cr_resp_tau_s)
    excess = cr_state.excess
    for k in range(nreads):
        if k:
            excess *= decay
        if steps is not None:
            excess += steps[k]
        if record is not None:
            record[k] += excess


def advance_cr_state(cr_state: CRState, *, cfg, streams, dt: float, ramp_starts: np.ndarray) -> None:
    """Carry ``cr_state`` through one DCE as :func:`simulate_ramps` does, without the ramps.

    Parameters
    ----------
    cr_state : CRState
        Updated in place, to the same bits :func:`simulate_ramps` leaves.
    cfg : mipssim.config.SimConfig
    streams : mapping of numpy Generators
        The DCE's per-effect streams; only ``cosmic_rays`` (the hits, not their amplitudes)
        and ``cr_responsivity`` are drawn from.
    dt : float
        Read time, s.
    ramp_starts : (NREADS,) bool array
    """
    shape = (len(ramp_starts),) + cr_state.excess.shape
    hits = _dce_hits(cfg, streams, shape, ramp_starts, dt)
    _cr_excess_through(cr_state, hits, cfg, streams, dt, len(ramp_starts))


def _cosmic_ray_charge(hits, shape, cfg, rng):
    """Amplitudes (log-normal, DN of charge) of the hits; returns the event table and charge cube."""
    charge = np.zeros(shape)
    read, y, x = hits
    if not len(read):
        return np.zeros(0, dtype=CR_DTYPE), charge
    amp = cfg.cr_amp_median_dn * np.exp(cfg.cr_amp_sigma_ln * rng.standard_normal(len(read)))
    np.add.at(charge, (read, y, x), amp)
    events = np.zeros(len(read), dtype=CR_DTYPE)
    events["read"], events["y"], events["x"], events["amplitude_dn"] = read, y, x, amp
    return events, charge


def _integrate(delta, ramp_starts):
    """Cumulative sum over reads that restarts at every ramp start."""
    q = np.cumsum(delta, axis=0)
    starts = np.flatnonzero(ramp_starts)
    for s in starts[1:]:
        q[s:] -= q[s - 1]
    return q
