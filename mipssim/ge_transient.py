"""Transient response of the Ge:Ga photoconductors: a prompt part and a slow adaptation.

Physics
-------
A Ge:Ga pixel does not answer a change of illumination at once: a fast
component (bulk generation and recombination) follows it promptly, and a slow
one (space charge re-forming at the contacts over the dielectric relaxation
time) over tens of minutes at 160 um to hours at 70 um; the relaxation time is
shorter at higher photoconductivity, i.e. under brighter illumination, and a
non-monotonic "hook" follows a step [HB 2.3.3 /10].  The consequences the
archive lived with: 70 um aperture photometry is flux-nonlinear by ~40 % over
22 mJy-17 Jy [HB 7.2.5 /81], 160 um point sources above ~2 Jy read low (~20 %
at 4 Jy, [S07]), and stim flashes leave latents [HB 6.5 /68].

Model (one named place: forward here, no inverse -- the SSC did not correct it)
------------------------------------------------------------------------------
Each pixel is *adapted* to an illumination ``A`` (DN/s).  Under a current ``I``
it delivers ``I (A / I)^(1 - b)``: a pixel adapted to what it sees (``A = I``)
answers fully, so a steady sky is seen at its true level; a small step ``dI``
above the adapted level is seen at the prompt fraction ``b``
(``(1 - (1 - b) dI / I)`` to first order); a large one is compressed further,
so bright point sources read low against faint ones -- the de-biasing of a
photoconductor under a strong source, and the sign S07 reports at 160 um (the
sign at 70 um is not stated in the sources seen: UNCONFIRMED).  ``ln A``
relaxes towards ``ln I`` with the time constant
``tau = tau_ref (I_ref / I)^p``: brighter is faster.  The state carries over
reads, DCEs (the gaps between them relax towards the next DCE's sky) and stim
flashes, so a flash leaves the pixel adapted above the sky: a latent that
decays at the sky's (slow) rate.  The hook is not modelled.

Consequences worth knowing before switching it on (hence off by default, all
numbers UNCONFIRMED): with time constants longer than the stim cycle, the
pixel adapts to the cycle's mean illumination, which the flash dominates, so
the sky, the stim and point sources are each seen at a different fraction of
their flux.  A FLUXCONV from point-source standards then misreads extended
emission (the 70 um extended-source correction of the archive's users), and
``mips validate``'s comparison with the true sky shows it: that is what the
effect table measures.  Deterministic: no random stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransientModel", "TransientState"]

_FLOOR_DN_S = 1.0      # currents below this (dead pixels, no light) adapt as if at this level


@dataclass(frozen=True)
class TransientModel:
    """Parameters (UNCONFIRMED; ``SimConfig.transient_*``)."""

    prompt_fraction: float      # b: fraction of a small step seen at once
    tau_ref_s: float            # adaptation time at the reference current, s
    ref_dn_s: float             # reference current, DN/s
    tau_power: float            # p in tau = tau_ref (ref / I)^p

    def tau_s(self, current: np.ndarray) -> np.ndarray:
        return self.tau_ref_s * (self.ref_dn_s / np.maximum(current, _FLOOR_DN_S)) ** self.tau_power


@dataclass
class TransientState:
    """Per-pixel log of the adapted illumination (None until the first DCE)."""

    model: TransientModel
    log_adapt: np.ndarray | None = None

    def relax(self, current: np.ndarray, gap_s: float) -> None:
        """Adapt towards ``current`` (DN/s, the sky the pixel sees) over a gap of ``gap_s``;
        the first call sets the state adapted to it (the detector saw that sky before the AOR)."""
        target = np.log(np.maximum(current, _FLOOR_DN_S))
        if self.log_adapt is None:
            self.log_adapt = target.copy()
            return
        keep = np.exp(-gap_s / self.model.tau_s(current))
        self.log_adapt = target + (self.log_adapt - target) * keep

    def factors(self, current: np.ndarray, read_time_s: float, nreads: int) -> np.ndarray:
        """(nreads, ...) response factors ``(A / I)^(1 - b)`` of a DCE's read intervals under the
        steady ``current`` (DN/s), each at its interval's start; advances the state to the end."""
        if self.log_adapt is None:
            self.relax(current, 0.0)
        target = np.log(np.maximum(current, _FLOOR_DN_S))
        q = np.exp(-read_time_s / self.model.tau_s(current))
        lag = (self.log_adapt - target)[None] * q[None] ** np.arange(nreads)[:, None, None]
        self.log_adapt = target + (self.log_adapt - target) * q ** nreads
        return np.exp((1.0 - self.model.prompt_fraction) * lag)
