"""Filtered Ge BCDs (``*_fbcd.fits``): column and time-median high-pass filtering.

What the archive did
--------------------
For 70 and 160 um scan maps the SSC pipeline wrote, beside each BCD, a
filtered BCD: the Handbook recommends this "median high-pass filter for scan
maps of regions containing faint point sources" [HB 6.2.1].  The GeRT guide
and cookbook describe it as a column filter followed by a high-pass **time
median** filter of each pixel's time stream, with bad pixels and masked
sources left out of the correction; the archive's filtered mosaics show
negative side-lobes around bright sources, so users re-filtered with a table
of sources masked (``ge_mask_pointsource``).  At 70 um extended sources
should be filtered without the column filter, 160 um needs less filtering,
and ISM/extended work should not be filtered at all (mips-facts 4.3,
anchors-postbcd 6).  The archive's window length and mask radius were not
retrievable; the defaults here (15 DCEs, masks grown by ~1 FWHM, a 3-sigma
second pass) are ours.

What is done here
-----------------
:func:`highpass` (pure arrays, a ``(NDCE, NY, NX)`` stack in time order):

1. column filter: each DCE minus, per column, the median over the array of
   its unmasked finite pixels;
2. time-median high-pass: each pixel minus its running median over
   ``window_dces`` DCEs (full-length window sliding inward at the ends);
3. second pass: pixels above ``n_sigma`` in the pass-1 result, grown by a PSF
   radius, are added to the mask and the *input* is filtered again.

Masked values never enter a median but are corrected like any other, so a
masked source keeps its flux above the background estimated around it.
:func:`filter_observation` reads ``obs_dir/bcd/*_bcd.fits`` (stim DCEs have
no BCD; any that carry ``STIMFLSH = T`` are left out), masks fatal bits and
the first DCE after each flash (``STIM_LATENT``) plus optional catalogue
sources, and writes ``*_fbcd.fits`` (the BCD's header plus ``FILTERED``,
``HPFWIN``, ``HPFCOL``, ``HPFNSIG``, ``HPFSRC``) atomically.

Why it helps
------------
After stim calibration the Ge BCDs keep residuals of the responsivity drift
between flashes (the interpolation between flashes is imperfect, and cosmic
rays step the responsivity of single pixels), and a flash leaves a latent
[HB 6.5]: the pixel stays adapted above the sky and reads high while it
relaxes at the slow rate of the detector's transient (in the simulator's
transient model, ``mipssim/ge_transient.py``, also a short low dip first).
Both are slow compared with the time a point source takes to cross a pixel
in a scan map (one or two DCEs at the medium rate), and both differ from
pixel to pixel in a way a flat cannot capture: a per-pixel running median
over tens of seconds follows them, and the column filter removes what is
common along a column in one DCE.  A latent confined to the first DCE after
a flash is an outlier to the median and stays (that DCE, flagged
``STIM_LATENT``, is not used to estimate the correction).  With the
simulator's transient model on, the RMS over pixels of each pixel's
time-mean error against truth falls from 1.18 to 0.63-0.73 MJy/sr (what
noise alone gives: 0.77; the running median also takes out part of the
noise, so values below it are not a gain in information).

What it costs
-------------
Everything slow in a pixel's time stream is signal the filter cannot tell
from drift: extended emission (cirrus, galaxies larger than the window's
scan length) is removed, and an unmasked point source lifts the medians of
the pixels and columns it covers, which are then subtracted from it and
around it (the negative side-lobes).  ``benchmarks/ge_filter_loss.py``
measures both against the simulator's truth.  On a 2-leg 70 um medium-rate
scan map with 20 sources (seed 7; 15-DCE window; aperture r = 1.5 px; median
over sources of filtered / unfiltered-minus-true-background):

* no masking, one pass: 0.934 (column filter on), 0.957 (off): 4-7 % lost;
* self-masked second pass (3 sigma, grown by 20"): 0.989; with the true
  source list masked too: 0.993 (about 1 %, within the scatter over sources);
* extended emission: the mean level (15 MJy/sr of zodi and cirrus) is
  removed entirely, plus -0.15 MJy/sr more away from sources without masking
  (sources lift the medians) and -0.01 with it; structure shorter than the
  window's scan length passes and longer structure is removed (7 DCEs:
  about half the cirrus structure's amplitude kept).
"""
from .fbcd import GROW_ARCSEC, FilterReport, fbcd_path, filter_observation
from .kernel import column_medians, highpass, running_median, source_mask

__all__ = ["highpass", "column_medians", "running_median", "source_mask",
           "filter_observation", "fbcd_path", "FilterReport", "GROW_ARCSEC"]
