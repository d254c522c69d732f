"""Extra flat field (self-calibration) from a stack of BCDs, as MOPEX's flatfield.pl did for MIPS.

A BCD is divided by the calibration product's flat; what remains of the
array's pixel-to-pixel response is the ratio of the true flat to the
product's (its error, and, at 24 um, what the product cannot know: the flats
change with the scan rate, whose smearing blurs the dust-spot shadows, and
slowly with time).  On a sky whose features move across the array from one
BCD to the next (a scan map or a dithered stack), that ratio is the only
structure that stays in place, so a per-pixel mean of the BCDs each divided
by its own sky level measures it:

    F(x, y) = < I_i(x, y) / b_i >_i ,   normalised to median 1,

with ``b_i`` the BCD's sigma-clipped median.  An additive error (the
product's dark) enters as ``dark error / b_i`` and is corrected at the
group's mean sky level.  Sources are masked (pixels
several sigma above the sky, grown by about a PSF FWHM, found after dividing
by the previous estimate so that the flat error itself is not masked),
cosmic rays and latents clipped against the previous estimate, and the mean
weighted by the inverse variance.  The error is the BCDs' scatter about the
mean of blocks of consecutive BCDs over the square root of their number
(see :class:`.kernel.FlatAccumulator`): 0.022 % for the default 1615-BCD
24 um scan map (``benchmarks/extra_flat.py``), where the shipped product's
flat is 0.137 % RMS off the truth and a 1 % error put into it is brought
to 0.025 %, with pulls against truth of spread 1.007 and 1.010.

Trade-offs and limits:

* The flat is normalised to median 1, so it does not change the flux scale
  (FLUXCONV was set on the product's flat).  A sky gradient that lies along
  the array the same way in every BCD of a group (a scan leg in one
  direction over a large-scale gradient) enters the flat; grouping by leg
  (MOPEX's per-leg option) isolates it per leg but does not remove it.
* At 24 um the flats depend on the scan-mirror position, so the default
  grouping is by ``CSM_PRED``; fewer BCDs per group mean larger errors.
* The output ``_bunc`` adds the extra flat's error in quadrature and keeps the
  product flat's error that the BCD already carried (conservative: the
  product's error is what the extra flat corrects).

``flatfield_observation(obs_dir, out_dir)`` writes flat-fielded BCDs into
``out_dir/bcd`` (a folder `mips mosaic` reads like any other);
``extra_flat(paths)`` returns the flat of one group; the array kernels are in
:mod:`.kernel`.
"""
from .flatfield import GROUPINGS, FlatfieldReport, extra_flat, flatfield_observation
from .kernel import FlatAccumulator, FlatEstimate, background_level, source_mask

__all__ = ["GROUPINGS", "FlatfieldReport", "extra_flat", "flatfield_observation", "FlatAccumulator",
           "FlatEstimate", "background_level", "source_mask"]
