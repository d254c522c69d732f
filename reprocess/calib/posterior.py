"""Posteriors of calibration scalars and low-dimensional laws, sampled with emcee.

Every scalar a calibration derives (FLUXCONV, droop coefficients, first-frame
factors, the read-2 amplitude, nonlinearity-law parameters) is reported as the
median of its marginal posterior with the 16 and 84 % quantiles, so a product's
``<KEY>_ERR`` card is a credible interval, not a least-squares formal error that
assumes the model is right.  Nuisance parameters (an unknown extra scatter, a
background level) ride along in the same chain and are marginalised by
reporting only the parameters asked for.

Design trade-offs: the problems are small (1-6 parameters, likelihoods that
cost microseconds), so a plain :class:`emcee.EnsembleSampler` with a fixed
number of steps is fast enough (a second or two) and needs no convergence
heuristics beyond a check of the autocorrelation time against the chain length
(a warning, not an error: the chain is kept for inspection).  Chains go to an
:class:`emcee.backends.HDFBackend` group beside the products when a path is
given (one HDF5 file, one group per quantity), in memory otherwise; the same
:class:`Posterior` comes back either way.  Determinism: the walkers' start and
emcee's own generator are both seeded from ``seed``, so a run is repeatable
bit for bit.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import emcee
import numpy as np

__all__ = ["Posterior", "sample_posterior"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posterior:
    """Marginal summaries of an emcee run.

    Attributes
    ----------
    names : tuple of str
        Parameter names, in the order of ``samples``' last axis.
    samples : ndarray, shape (n, ndim)
        Flattened post-burn-in samples.
    acceptance_fraction : float or None
        Mean fraction of proposals the walkers accepted (emcee's stretch move: 0.2-0.5 is healthy).
    autocorr_time : ndarray, shape (ndim,), or None
        Integrated autocorrelation time of each parameter, steps (emcee's estimate after burn-in).
    n_steps : int or None
        Steps per walker after burn-in.
    """

    names: tuple[str, ...]
    samples: np.ndarray
    acceptance_fraction: float | None = None
    autocorr_time: np.ndarray | None = None
    n_steps: int | None = None

    @property
    def short_chain(self) -> bool:
        """True when the chain after burn-in is shorter than 50 autocorrelation times (False when
        they are not known)."""
        if self.autocorr_time is None or self.n_steps is None:
            return False
        return bool(np.any(50 * np.asarray(self.autocorr_time) > self.n_steps))

    def _column(self, name: str) -> np.ndarray:
        try:
            return self.samples[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no parameter {name!r} (have {', '.join(self.names)})") from None

    def median(self, name: str) -> float:
        """Posterior median of ``name``."""
        return float(np.median(self._column(name)))

    def quantiles(self, name: str, q: Sequence[float] = (0.16, 0.5, 0.84)) -> np.ndarray:
        """Posterior quantiles of ``name`` (fractions, not percent)."""
        return np.quantile(self._column(name), q)

    def sigma(self, name: str) -> float:
        """Half the 16-84 % interval of ``name``: the 1-sigma equivalent uncertainty."""
        lo, hi = self.quantiles(name, (0.16, 0.84))
        return float(0.5 * (hi - lo))

    def interval(self, name: str, level: float = 0.68) -> tuple[float, float]:
        """Central credible interval of ``name`` holding ``level`` of the posterior."""
        lo, hi = self.quantiles(name, (0.5 - level / 2, 0.5 + level / 2))
        return float(lo), float(hi)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{name: {"median", "q16", "q84"}}`` for every parameter."""
        out = {}
        for n in self.names:
            q16, q50, q84 = self.quantiles(n)
            out[n] = {"median": float(q50), "q16": float(q16), "q84": float(q84)}
        return out


def sample_posterior(log_prob: Callable[[np.ndarray], float], start: Sequence[float],
                     scale: Sequence[float], *, names: Sequence[str], seed: int,
                     nwalkers: int = 32, nsteps: int = 2000, burn: int = 500,
                     vectorize: bool = False, chains: str | os.PathLike | None = None,
                     group: str | None = None, moves=None) -> Posterior:
    """Sample ``log_prob`` with emcee and return the posterior's samples.

    Parameters
    ----------
    log_prob : callable
        Log posterior of a parameter vector (``-inf`` outside the prior).
    start, scale : sequences of float
        Walkers start in a Gaussian ball ``start + scale * N(0, 1)``; ``scale``
        should be of the order of the expected posterior width.
    names : sequence of str
        One name per parameter.
    seed : int
        Seeds the starting ball and emcee's generator (bit-identical reruns).
    nwalkers, nsteps, burn : int
        Walkers, steps per walker, and steps discarded as burn-in.
    vectorize : bool
        ``log_prob`` takes an ``(nwalkers, ndim)`` array and returns
        ``(nwalkers,)`` (much faster for numpy likelihoods).
    chains : path, optional
        HDF5 file for emcee's :class:`~emcee.backends.HDFBackend`; the chain is
        written to ``group`` (required then) and any previous chain there is
        replaced.  None keeps the chain in memory.
    moves : emcee move(s), optional
        Proposal moves (emcee's ``moves`` argument); default emcee's stretch move.

    Returns
    -------
    Posterior
    """
    start = np.asarray(start, dtype=float)
    ndim = start.size
    if len(names) != ndim or len(scale) != ndim:
        raise ValueError(f"names ({len(names)}), start ({ndim}) and scale ({len(scale)}) differ in length")
    if not 0 <= burn < nsteps:
        raise ValueError(f"burn ({burn}) must be in [0, nsteps = {nsteps})")
    rng = np.random.default_rng(seed)
    p0 = start + np.asarray(scale, dtype=float) * rng.standard_normal((nwalkers, ndim))
    backend = None
    if chains is not None:
        if not group:
            raise ValueError("a chains file needs a group name")
        backend = emcee.backends.HDFBackend(os.fspath(chains), name=group)
        backend.reset(nwalkers, ndim)
    sampler = emcee.EnsembleSampler(nwalkers, ndim, log_prob, backend=backend,
                                    vectorize=vectorize, moves=moves)
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(p0, nsteps, progress=False)
    tau = sampler.get_autocorr_time(quiet=True, discard=burn)
    if np.any(50 * tau > nsteps - burn):
        log.warning("emcee chain for %s shorter than 50 autocorrelation times (tau = %s)",
                    ", ".join(names), np.round(tau, 1))
    return Posterior(names=tuple(names), samples=sampler.get_chain(discard=burn, flat=True),
                     acceptance_fraction=float(np.mean(sampler.acceptance_fraction)),
                     autocorr_time=tau, n_steps=nsteps - burn)
