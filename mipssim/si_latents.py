"""24 um (Si:As) latents: what a bright source leaves on the detector pixels that saw it.

Three kinds [HB 7.1 /73], each a per-pixel state carried from DCE to DCE:

* short-lived bright latents: ~0.8 % of the signal above a threshold, added to
  later DCEs and decaying over seconds (``latent_*``);
* dark latents: after sources above ~50 Jy (seen down to 18 Jy) the pixels'
  response is 1-2 % low for ~10 h (``dark_latent_*``): a multiplicative deficit;
* long-lived bright latents: ~0.5 % of an extremely bright object's signal,
  added for days (``long_latent_*``).

Thresholds are per-pixel photocurrents (DN/s); a point source's peak pixel
carries ~1.5e4 DN/s per Jy at the flight responsivity (pre-launch 8.4e3 DN/s
per Jy [CNT] x 22.0 / 12.6 [E07]), so 18 Jy is ~2.6e5 DN/s.  Sizes and times
beyond the Handbook's words are UNCONFIRMED (``mipssim/config.py``).  The
reprocessor flags, it cannot correct: a deficit or excess of a percent on a
pixel that saw a saturating source hours ago is not measurable in one DCE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SiLatents"]


@dataclass
class SiLatents:
    """The three latent states of a 24 um array (maps (NY, NX))."""

    cfg: object                         # mipssim.config.SimConfig
    shape: tuple
    short: np.ndarray = field(init=False)    # DN/s added
    dark: np.ndarray = field(init=False)     # fractional response deficit
    long: np.ndarray = field(init=False)     # DN/s added

    def __post_init__(self):
        self.short, self.dark, self.long = (np.zeros(self.shape) for _ in range(3))

    def decay(self, dt_s: float) -> None:
        c = self.cfg
        self.short *= np.exp(-dt_s / c.latent_tau_s)
        self.dark *= np.exp(-dt_s / c.dark_latent_tau_s)
        self.long *= np.exp(-dt_s / c.long_latent_tau_s)

    def signal(self, photo: np.ndarray, dark_current: np.ndarray) -> np.ndarray:
        """What a pixel integrates (DN/s): the photocurrent less the dark-latent deficit, the
        dark current, plus the additive latents (each only when its switch is on)."""
        c = self.cfg
        out = photo * (1.0 - self.dark) if c.include_dark_latents else photo
        out = out + dark_current
        if c.include_latents:
            out = out + self.short
        if c.include_long_latents:
            out = out + self.long
        return out

    def update(self, photo: np.ndarray) -> None:
        """After a DCE whose photocurrent was ``photo`` (DN/s)."""
        c = self.cfg
        self.short += c.latent_fraction * np.maximum(photo - c.latent_threshold_dn_s, 0.0)
        hit = photo > c.dark_latent_threshold_dn_s
        self.dark[hit] = np.maximum(self.dark[hit], c.dark_latent_depth)
        self.long += c.long_latent_fraction * np.maximum(photo - c.long_latent_threshold_dn_s, 0.0)
