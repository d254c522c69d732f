"""Thermal anneals of the Ge arrays and the responsivity build-up between them.

Physics
-------
Cosmic-ray hits leave the Ge:Ga detectors slightly more responsive (trapped
charge; [IOC-2015]); in this simulator each hit raises its pixel's
responsivity by an exponentially distributed step (mean ``cr_resp_step``) that
relaxes with ``cr_resp_tau_s`` (:class:`mipssim.ge_ga.CRState`).  A thermal
anneal heats the array and empties the traps: the excess returns to zero
[stimcal; IOC-160].  Between anneals the excess builds up again, towards
``rate x step x tau`` (5 % with the defaults) over a few ``tau``: that build-up
is the post-anneal responsivity trend.  The anneal cadence was 3 h pre-launch
and tuned later [IOC-160, IOC-990/992]; anneals were commanded between
observations, so an AOR normally starts some time after the last one
(``t_since_anneal_s``) with the excess part-way up its trend.  A cadence shorter
than the AOR puts anneals inside it, a test knob for the reprocessor's stim
tracking (the responsivity drops by the accumulated excess at once).

Design
------
The state at the AOR start is drawn exactly, not by simulating the hours
before: the hits since the last anneal are a Poisson process in time, so each
pixel's excess is a sum of ``size x exp(-age / tau)`` over a Poisson number of
hits at uniform times -- a few hundred thousand draws from the AOR-level
stream ``cr_history``.  No raw file records anneals (the SSC's BCD headers
carry no anneal keyword that the sources show), so the reprocessor must see
them in the flashes; truth records their times (``/anneals``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["initial_cr_excess", "anneal_times"]


def initial_cr_excess(rng: np.random.Generator, shape: tuple[int, ...], *, since_anneal_s: float,
                      rate_per_s: float, mean_step: float, tau_s: float) -> np.ndarray:
    """Per-pixel cosmic-ray responsivity excess ``since_anneal_s`` after an anneal (fraction).

    Parameters
    ----------
    rng : numpy Generator
        The AOR-level ``cr_history`` stream.
    shape : tuple
        Detector shape.
    since_anneal_s : float
        Time from the last anneal to the AOR start, s (``inf``: steady state, approximated by
        ``10 tau``).
    rate_per_s, mean_step, tau_s : float
        Hits per pixel per second, mean responsivity step per hit, relaxation time (s).
    """
    span = float(min(since_anneal_s, 10.0 * tau_s))
    n = rng.poisson(rate_per_s * span, shape)
    total = int(n.sum())
    age = rng.uniform(0.0, span, total)
    size = rng.exponential(mean_step, total)
    excess = np.zeros(int(np.prod(shape)))
    np.add.at(excess, np.repeat(np.arange(excess.size), n.ravel()), size * np.exp(-age / tau_s))
    return excess.reshape(shape)


def anneal_times(*, since_anneal_s: float, interval_s: float, duration_s: float) -> np.ndarray:
    """Times (s since the AOR start) of the anneals inside an AOR of ``duration_s``."""
    if not np.isfinite(interval_s) or interval_s <= 0:
        return np.zeros(0)
    first = interval_s - (since_anneal_s % interval_s)
    return np.arange(first, duration_s, interval_s)
