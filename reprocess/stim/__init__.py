"""Ge responsivity from stim flashes, and the slope -> surface-brightness calibration (CALER).

Modules: :mod:`.flashes` measures each flash, :mod:`.checks` judges the flashes against each
other, :mod:`.sky_model` gives a flash its background at its own pointing (:mod:`.moving_sky` where
the sky moves between DCEs, as in scan maps), :mod:`.wander` models
the responsivity between flashes and :mod:`.response` interpolates it and calibrates slopes.

The physics
-----------
A Ge:Ga pixel's responsivity ``R(t)`` drifts (radiation, cosmic-ray steps that
relax over minutes) by percents within an AOR.  The stim flash, a lamp of
(nearly) constant brightness ``S``, is turned on every few DCEs; a stim DCE
sees ``R (sky + S)``, the sky DCEs around it at the same sky position see ``R
sky``.  Their difference, the stim-minus-background ``D(t_k) = R(t_k) S``, is
the responsivity at the flash time ``t_k`` [GeRT /4; HB 4.1.4 /43].  Between
flashes the SSC interpolates ``D`` linearly in time (here: its common part by
a piecewise cubic, below); before the first and after the last usable flash the
nearest one is used, never extrapolated, and a non-positive
stim-minus-background is discarded [HB S17 notes /96].

How each flash is measured here
-------------------------------
* **Background at the flash's sky.** The sky DCEs that pointed within
  ``tolerance`` of the flash's pointing (reconstructed pointings are never
  identical, so positions are matched to a fraction of a pixel, never compared
  for equality) give the background: first the nearest such DCE before and
  the nearest after, interpolated linearly to the flash time (the background
  drifts with ``R`` too); then, with five or more of them on both sides, a
  sky model at the flash's own pointing fitted over all of them
  (:mod:`.sky_model`: the jitter moves a source's flank by percents).  When no
  sky DCE saw the flash's pointing, the sky DCEs just before and after it in
  time are used (the archive's way), half their difference added to the error;
  then, given where the flash's pixels fell in those DCEs, the sky its pixels
  saw there (:mod:`.moving_sky`: a scan map's sky moves by pixels between DCEs).
* **Flash time.** A stim ramp often saturates before the DCE ends, so its
  slope describes the reads it used, not the whole DCE: every DCE is
  time-stamped at the mean time of the reads its slope used (the caller passes
  those times).
* **Is it a flash?** A stim-minus-background below ``min_snr`` times its noise
  is not a measurement of the responsivity (a flash that did not fire, a
  pixel on a bright source whose background moved): that pixel's flash is
  discarded.  A flash with usable values in fewer than ``min_pixel_fraction``
  of the pixels that had a background is unusable as a whole; when no usable
  flash remains the observation cannot be calibrated and :class:`NoStimError`
  is raised.
* **Odd flashes.** A flash whose array-median brightness is off the trend
  of the flashes before it *and* of those after it, the same way (a partial or
  misfired flash), is dropped; a real responsivity step between two flashes
  puts each on its own side's trend and is kept.
* **The first flash.** The first flash of an AOR is often anomalously bright
  or faint (the "first stim bad" effect [HB 6.5 /68; IOC-247/248]).  The
  array-median relative second difference of the flashes follows the drift's
  curvature smoothly, and an anomaly of the first flash shows up in its first
  value only: compared with the extrapolation of the later ones, it measures
  the anomaly to a fraction of a percent.  ``first_stim="auto"`` rescales an
  anomalous first flash by that measurement (its error added to the flash's);
  ``"auto-drop"`` drops it instead, ``"drop"`` always drops the first flash,
  ``"keep"`` never touches it.  Dropping costs more: the DCEs before the second
  flash then fall back on the nearest flash across twice the time.  When the
  flashes are too noisy for the test to see a 2 % anomaly at its threshold (a
  160 um array of 35 pixels at flight noise), "auto" and "auto-drop" drop the
  first flash: it can be neither cleared nor measured.

Uncertainty of the interpolated responsivity
---------------------------------------------
Two terms: the measurement noise of the two flashes (propagated), and the
responsivity's own wander between them, which no flash sees: cosmic-ray
steps at the jumps the ramp fit flagged, and a smooth random walk; both are
estimated from the flashes themselves (:mod:`.wander`).  The array's common
responsivity, measured to ~0.01 % per flash by a median over the pixels, is
interpolated by a modified-Akima cubic, which follows the drift's curvature
between flashes where a straight line cuts its chord and does not ring across a
step; the pixel's own part, linearly.
A pixel missing a flash is carried across by the common part (:mod:`.response`).

A slope then becomes a calibrated "MIPS" value ``slope / D(t) - dark``, is
divided by the illumination correction and multiplied by ``FLUXCONV``.
Everything here is a pure function of arrays; the pipeline module feeds it.

``constant`` mode (stim calibration off) divides by each pixel's median ``D``
over the observation instead: the pixel-to-pixel response is still removed,
but not its change with time -- what the time tracking buys.
"""
from __future__ import annotations

from .checks import FIRST_STIM_MODES
from .flashes import NoStimError, same_sky, stim_minus_background
from .moving_sky import MovingSky
from .response import StimResponse, calibrate, common_response, constant_response, interpolate_response
from .wander import Hits, WanderModel, fit_wander

__all__ = ["FIRST_STIM_MODES", "MovingSky", "StimResponse", "NoStimError", "stim_minus_background",
           "interpolate_response", "constant_response", "calibrate", "same_sky", "common_response",
           "Hits", "WanderModel", "fit_wander"]
