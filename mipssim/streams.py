"""Random streams of the simulator: one per effect for the AOR, or one per (effect, DCE).

Every random effect draws from its own generator, keyed by the observation's
seed and ``spawn_key = (effect index, DCE index)`` (``numpy.random.SeedSequence``).
Two properties follow (DESIGN.md "Principles"):

* switching one effect off, or changing what it draws (a Poisson draw consumes a
  number of variates that depends on its mean), never changes another effect's
  noise, nor the same effect's noise in any other DCE -- e.g. the read noise of a
  sky DCE is the same whether the stim flashed before it or not;
* any DCE's noise can be regenerated alone, in any order or process -- which is
  what lets a scan map be simulated in chunks of DCEs, in parallel, with the
  same output for any chunk size and worker count (:mod:`.carry`).

:func:`dce_streams` makes a DCE's generators lazily: building one costs
~15-35 us (``SeedSequence`` hashing), a DCE touches only the effects that are
switched on, and the state-only pass over earlier DCEs (:mod:`.carry`) needs
only the cosmic-ray streams.  A generator is the same whenever it is made.

Effects that belong to the whole AOR (the scene, the slow drift, common
responsivity steps) use ``spawn_key = (effect index,)``; for ``scene`` and
``drift`` that is what ``SeedSequence(seed).spawn(n)`` gives, so their
realisation for a given seed did not change when per-DCE streams came in.

The arrays of one AOR (``mips simulate --band all``) share the scene and the
pointing jitter (one sky, one telescope) but not their detectors: the per-DCE
streams and the detector's AOR-level ones (drift, steps, CR history) are keyed by
:func:`noise_seed`, a seed of the array's own (``SimConfig.noise_seed``; the
observation's seed when absent, so a single array's streams did not change).

The effect indices are part of a seed's meaning: never reorder ``EFFECTS``;
append new effects at the end.  An effect is either AOR-level or per-DCE, never
both, so no two streams share a key.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["EFFECTS", "PER_DCE_EFFECTS", "effect_rng", "dce_streams", "DCEStreams", "noise_seed"]

EFFECTS = ("scene", "drift", "poisson", "read_noise", "reset_noise", "cosmic_rays",
           "cr_responsivity", "pointing_jitter", "resp_steps", "excess_noise", "cr_history",
           "pointing_error", "pointing_error_aor")
AOR_EFFECTS = ("scene", "drift", "resp_steps", "cr_history", "pointing_error_aor")
PER_DCE_EFFECTS = tuple(e for e in EFFECTS if e not in AOR_EFFECTS)


def effect_rng(seed: int, effect: str, dce: int | None = None) -> np.random.Generator:
    """Generator of ``effect`` for the AOR (``dce`` None) or for DCE number ``dce`` (0-based index).

    Raises ValueError for an unknown effect or for a DCE key of an AOR-level
    effect (and the reverse), which would break the one-key-per-stream rule.
    """
    if effect not in EFFECTS:
        raise ValueError(f"unknown random effect {effect!r}; known: {', '.join(EFFECTS)}")
    if (dce is None) != (effect in AOR_EFFECTS):
        kind = "AOR-level" if effect in AOR_EFFECTS else "per-DCE"
        raise ValueError(f"effect {effect!r} is {kind}")
    key = (EFFECTS.index(effect),) if dce is None else (EFFECTS.index(effect), int(dce))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


class DCEStreams(Mapping):
    """The per-DCE generators of one DCE, keyed by effect name, each made on first use."""

    def __init__(self, seed: int, dce: int, effects=PER_DCE_EFFECTS):
        self.seed, self.dce, self._effects = int(seed), int(dce), tuple(effects)
        self._made: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        rng = self._made.get(name)
        if rng is None:
            if name not in self._effects:
                raise KeyError(name)
            rng = self._made[name] = effect_rng(self.seed, name, self.dce)
        return rng

    def __iter__(self):
        return iter(self._effects)

    def __len__(self) -> int:
        return len(self._effects)


def dce_streams(seed: int, dce: int, effects=PER_DCE_EFFECTS) -> DCEStreams:
    """The per-DCE generators of DCE ``dce`` (0-based position in the AOR), keyed by effect name
    (made lazily, :class:`DCEStreams`)."""
    return DCEStreams(seed, dce, effects)


def noise_seed(cfg) -> int:
    """Seed of the detector's random streams: ``cfg.noise_seed``, else ``cfg.seed``."""
    return int(cfg.seed if cfg.noise_seed is None else cfg.noise_seed)
