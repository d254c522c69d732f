"""Transient response of the Ge:Ga photoconductors: a prompt part, the hook and a slow adaptation.

Physics
-------
A Ge:Ga pixel does not answer a change of illumination at once [HB 2.3.3 /10]:

* a fast component (bulk generation and recombination of carriers) follows the
  change promptly;
* the non-monotonic "hook": the first rapid migration of free carriers leaves a
  charge distribution that lowers the electric field in the bulk, hence the
  photoconductive gain, so part of the response is lost again after the first
  reaction (dielectric relaxation of the bulk);
* a slow component: the space charge at the contacts readjusts at the dielectric
  (RC) time constant of the detector, tens of minutes at 160 um to hours at
  70 um; that time is shorter at higher photoconductivity, i.e. under brighter
  illumination.

So a step up of illumination is seen as a prompt jump, a dip over the hook's
time scale, then a slow rise to the full level; a step down is the mirror image
(a prompt drop, a partial recovery, a slow further decline).  The consequences
the archive lived with: 70 um aperture photometry is flux-nonlinear by ~40 %
over 22 mJy-17 Jy [HB 7.2.5 /81], 160 um point sources above ~2 Jy read low
(~20 % at 4 Jy, [S07]), and stim flashes leave latents [HB 6.5 /68].  The
Handbook describes the hook qualitatively only (its Figure 2.12); no size or
time scale of it was found in the Handbook or the IOC pages searched.

Model (one named place: forward here, no inverse -- the SSC did not correct it)
------------------------------------------------------------------------------
Each pixel carries two states, the logarithms of two illuminations it is
*adapted* to: ``s = ln A`` (the contacts, slow) and ``H`` (the bulk field, the
hook).  With ``x = ln I`` the log of the current ``I`` (DN/s) it sees, it
delivers ``I f`` with

    ln f = (1 - b) (s - x) - h (H - s)

and the states relax towards ``x``:

    ds/dt = -(s - x) / tau(I),   tau(I) = tau_ref (I_ref / I)^p   (brighter is faster)
    dH/dt = -(H - x) / tau_h                                       (tau_h << tau)

``b`` is the prompt fraction, ``h`` the hook fraction.  A pixel adapted to what
it sees (``s = H = x``) answers fully (``f = 1`` exactly), so a steady sky is
seen at its true level.  After a step of ``D = x1 - x0`` in log illumination
from a pixel adapted to ``x0`` (with ``tau`` at the new current):

    ln(I f) - x0 = D [1 - (1 - b + h) exp(-t / tau) + h exp(-t / tau_h)]

i.e. ``b D`` at once (a small step ``dI`` is seen at ``b dI``), then ``h D``
lost over ``tau_h`` (the hook: ``H`` has followed, ``s`` has not), then the
slow rise to ``D`` over ``tau``.  The response is non-monotonic when
``h tau > (1 - b + h) tau_h``; its extremum (the bottom of the dip after a step
up, the top of the rebound after a step down) is at

    t_ext = tau tau_h / (tau - tau_h) ln(h tau / ((1 - b + h) tau_h)).

A large step is compressed more than a small one (the log law): bright point
sources read low against faint ones -- the de-biasing of a photoconductor under
a strong source, and the sign S07 reports at 160 um (the sign at 70 um is not
stated in the sources seen: UNCONFIRMED).  Both states carry over reads, DCEs
(the gaps between them relax towards the next DCE's sky) and stim flashes, so a
flash leaves the pixel adapted above the sky: after it the sky first reads low
for ~``tau_h`` (the bulk field is still lowered by the flash: the hook's mirror
image), then high, a latent that decays at the sky's (slow) rate.

Which numbers are UNCONFIRMED (``SimConfig.transient_*``): all of them -- the
prompt fraction, the slow time and its dependence on the current, the hook's
fraction and time (defaults and their reasons at the config fields), the log
law itself, a hook time independent of the illumination, and the assumption
that the hook scales with the same log step as the slow part.  Response factors
are evaluated at the start of each read interval.

Consequences worth knowing before switching it on (hence off by default): with
time constants longer than the stim cycle, the pixel adapts to the cycle's mean
illumination, which the flash dominates, so the sky, the stim and point sources
are each seen at a different fraction of their flux.  A FLUXCONV from
point-source standards then misreads extended emission (the 70 um
extended-source correction of the archive's users), and ``mips validate``'s
comparison with the true sky shows it: that is what the effect table measures.
Deterministic: no random stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TransientModel", "TransientState"]

_FLOOR_DN_S = 1.0      # currents below this (dead pixels, no light) adapt as if at this level


@dataclass(frozen=True)
class TransientModel:
    """Parameters of the transient response (all UNCONFIRMED; ``SimConfig.transient_*``).

    Attributes
    ----------
    prompt_fraction : float
        ``b``: fraction of a small step seen at once.
    tau_ref_s : float
        Slow adaptation time at the reference current, s.
    ref_dn_s : float
        Reference current, DN/s.
    tau_power : float
        ``p`` in ``tau = tau_ref (ref / I)^p``.
    hook_fraction : float
        ``h``: fraction of a (log) step lost again over ``hook_tau_s`` (the hook); 0: no hook.
    hook_tau_s : float
        ``tau_h``: time of the hook (bulk dielectric relaxation), s.
    """

    prompt_fraction: float
    tau_ref_s: float
    ref_dn_s: float
    tau_power: float
    hook_fraction: float
    hook_tau_s: float

    def tau_s(self, current: np.ndarray) -> np.ndarray:
        """Slow adaptation time (s) under ``current`` (DN/s): ``tau_ref (ref / I)^p``."""
        return self.tau_ref_s * (self.ref_dn_s / np.maximum(current, _FLOOR_DN_S)) ** self.tau_power


@dataclass
class TransientState:
    """Per-pixel logs of the adapted illuminations (None until the first DCE).

    Attributes
    ----------
    model : TransientModel
    log_adapt : ndarray or None
        ``s``: log of the illumination the contacts are adapted to (slow state).
    log_hook : ndarray or None
        ``H``: log of the illumination the bulk field is adapted to (hook state).
    """

    model: TransientModel
    log_adapt: np.ndarray | None = None
    log_hook: np.ndarray | None = None

    def relax(self, current: np.ndarray, gap_s: float) -> None:
        """Adapt towards ``current`` over a gap without reads.

        Parameters
        ----------
        current : ndarray
            The current the pixels see during the gap (the sky at the next pointing), DN/s.
        gap_s : float
            Length of the gap, s.  The first call sets both states adapted to ``current``
            (the detector saw that sky before the AOR).
        """
        target = np.log(np.maximum(current, _FLOOR_DN_S))
        if self.log_adapt is None:
            self.log_adapt = target.copy()
            self.log_hook = target.copy()
            return
        keep = np.exp(-gap_s / self.model.tau_s(current))
        self.log_adapt = target + (self.log_adapt - target) * keep
        self.log_hook = target + (self.log_hook - target) * np.exp(-gap_s / self.model.hook_tau_s)

    def factors(self, current: np.ndarray, read_time_s: float, nreads: int) -> np.ndarray:
        """Response factors of a DCE's read intervals under a steady current.

        Parameters
        ----------
        current : (NY, NX) ndarray
            The current during the DCE, DN/s.
        read_time_s : float
            Length of one read interval, s.
        nreads : int
            Number of read intervals.

        Returns
        -------
        (nreads, NY, NX) ndarray
            ``f = exp((1 - b)(s - x) - h (H - s))`` at the start of each interval; the
            state is advanced to the end of the last one.
        """
        target, q, qh, slow0, hook0 = self._start(current, read_time_s)
        m = self.model
        k = np.arange(nreads)[:, None, None]
        slow = slow0[None] * q[None] ** k                         # s - x at each interval's start
        log_f = (1.0 - m.prompt_fraction) * slow
        if m.hook_fraction:
            log_f -= m.hook_fraction * (hook0[None] * qh ** k - slow)   # - h (H - s)
        self._end(target, q, qh, slow0, hook0, nreads)
        return np.exp(log_f)

    def advance(self, current: np.ndarray, read_time_s: float, nreads: int) -> None:
        """Advance the state through a DCE as :meth:`factors` does, without the factors (the
        state-only pass of :mod:`mipssim.carry`: the same arithmetic, so the same bits)."""
        self._end(*self._start(current, read_time_s), nreads)

    def _start(self, current, read_time_s):
        """Log target, per-read decays (slow, hook) and the states' offsets at a DCE's start."""
        if self.log_adapt is None:
            self.relax(current, 0.0)
        target = np.log(np.maximum(current, _FLOOR_DN_S))
        q = np.exp(-read_time_s / self.model.tau_s(current))
        qh = np.exp(-read_time_s / self.model.hook_tau_s)
        return target, q, qh, self.log_adapt - target, self.log_hook - target

    def _end(self, target, q, qh, slow0, hook0, nreads: int) -> None:
        """The states at the end of the DCE's last read interval."""
        self.log_adapt = target + slow0 * q ** nreads
        self.log_hook = target + hook0 * qh ** nreads
