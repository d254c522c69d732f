"""Scan-map observation plan: legs at a constant telescope rate, freeze-frame DCEs, stim cadence.

Physics
-------
In the MIPS scan-map AOT the telescope slews at a constant rate along a leg
while the cryogenic scan mirror runs a ramp ("sawtooth") that cancels the
motion on the arrays during each DCE, then flies back; the Ge arrays are reset
at the flyback and again "0.5 s later to start data" [HB 2.4.3 /14; aotintro;
IOC-326H].  Each DCE therefore sees a (nearly) fixed sky: its WCS is the
boresight at mid-DCE, and consecutive DCEs advance by ``rate x cadence`` along
the leg.  The ramp does not cancel the motion perfectly: a residual fraction
``scan_smear_fraction`` of the rate trails the image during the DCE (IOC-326 saw
"only a modest trailing", in the scan direction); the plan records that trail
(``DCEPlan.smear_arcsec``, east and north) so that a later stage can smear the
scene -- the simulator does not yet.  Legs alternate direction and are stepped
by ``scan_step_arcsec`` cross-scan; between legs the telescope turns round for
``scan_turnaround_s`` without taking DCEs.  Pointing jitter is drawn per DCE
exactly as in photometry mode (:func:`mipssim.pointing.pointing_jitter`).

Geometry (a design decision, from mips-facts 8.2 and 1.5)
---------------------------------------------------------
The scan runs along each array's y axis (pixel axis 2, ``PA`` east of north):
the scan mirror already moves along y in photometry (``CSM_PRED``), and the
facts fit that orientation for all three arrays:

* 160 um: y is the short 3-row axis (two filled rows, 16" each, and a blank
  row).  At the fast rate the sky advances further per DCE than the two rows
  are deep, so one leg covers only part of the sky -- the documented "only
  1/2 of the map covered by 160 um pixels at the fast rate" [aotintro] --
  while the 5.3' x axis spans the legs' cross-scan width;
* 70 um: the usable half is 32 rows (5.3') along y and 16 columns (2.6')
  across, hence "step by at most 2.5' (1/2 array) for full 70 um coverage"
  [aotintro], and the same in-scan length as the 24 um array, matching the
  equal 24 and 70 um per-leg integration times of the fast scan [IOC-326 AOR];
* 24 um: square, either way.

A band simulated alone has its reference pixel on the boresight.  In a
multi-array AOR (``--band all``) each array's centre sits at its own offset from
the boresight (``scan_array_offset_arcsec``: in-scan along y, cross-scan along x;
defaults ``mipssim.config.FOCAL_PLANE_OFFSETS_ARCSEC``, UNCONFIRMED), so at a given
time the arrays see different parts of the leg; the telescope's path (the legs,
``map_footprint``) is the same for all.

Timing and the IOC-295 example map
----------------------------------
A DCE is ``scan_exptime_mips_s`` (4: "1616 4-second DCEs per array" [IOC-295]):
32 Ge reads or 8 Si:As samples, both 4.19 s, so all three arrays keep the same
cadence ``DCE + scan_flyback_s``.  The telescope scans each leg for its length
plus ``scan_overscan_arcmin`` and the DCE centres are placed symmetrically on
that length, ``floor(length / advance)`` of them per leg.  The rates (1.7, 6.5,
26.2 "/s) are UNCONFIRMED remembered values.  With them, the IOC-295 map (16
legs of 30', 111", medium) would give only ~60 DCEs per leg, not 1616 / 16 =
101: the overscan's default (21.5') is DERIVED so that it does, and the
turnaround's (46 s) so that the map takes IOC-295's 2.36 h with the 215 s slew
overhead.  Part of the overscan is real (the arrays sit at different in-scan
positions, and each must cover the whole leg), but its size is a fit to one
number: if the medium rate is in fact ~3.8 "/s, the overscan would be ~0.
The fast rate is in tension with the facts too: the fast scan's 15.7 s per leg
at 24 um and 3.1 s (one 3 MIPS-s DCE) at 160 um [IOC-326 AOR] imply an advance
of ~65" per DCE (5 DCEs over the 326" array, two 16" rows = half of 65"),
i.e. ~18 "/s with 3 MIPS-s DCEs; at 26.2 "/s the 160 um rows cover ~1/4-1/3
of each leg (:func:`in_scan_coverage`).  The plan does not force "half": the
gaps follow from the geometry and the configured rate.

Numbering
---------
Ge: a stim flash every ``stim_cycle``-th DCE, EXPID counting stim cycles and
DCENUM the DCE within one, so ``DCENUM mod stim_cycle == stim_cycle - 1`` are
the flashes, as in photometry mode (mips-facts 8.3).  A flash DCE keeps
scanning: it sees the sky at its own position (the sky moves under it).  24 um:
no stim, EXPID 0 and DCENUM counting every DCE of the AOR (the first-frame
effect depends on it), DCENUM 0 ``first_dce_fewer_reads`` reads shorter (at
least 2), as in photometry mode.  ``n_dce`` is ignored: the legs fix the count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from calibration.geometry import REFERENCE_PIXEL, array_wcs
from calibration.instrument import band_spec, ge_reads_per_dce, si_reads_per_dce

from .pointing import DCEPlan, pointing_jitter, with_header_errors

__all__ = ["FILLED_PIX", "ScanStep", "dce_nreads", "scan_cadence_s", "dces_per_leg",
           "leg_layout", "map_footprint", "offsets_to_sky", "in_scan_coverage", "plan_scan"]

# filled pixels of each array (x = cross-scan, y = in-scan): 70 um usable half; 160 um two rows
FILLED_PIX = {24: (128, 128), 70: (16, 32), 160: (20, 2)}


@dataclass(frozen=True)
class ScanStep:
    """Where and when one DCE of the map is taken (before pointing jitter).

    Attributes
    ----------
    index : int
        Position of the DCE in the AOR.
    leg : int
        Leg number (0-based).
    direction : int
        +1 when the leg runs along the array's +y axis, -1 when along -y.
    along_arcsec, cross_arcsec : float
        Boresight at mid-DCE relative to the map centre, along the array's y
        (in-scan) and x (cross-scan) axes, arcsec.
    t_start_s : float
        DCE start, s since the AOR start.
    """

    index: int
    leg: int
    direction: int
    along_arcsec: float
    cross_arcsec: float
    t_start_s: float


def dce_nreads(cfg) -> int:
    """Reads (Ge) or samples (24 um) of a scan-map DCE of ``cfg.scan_exptime_mips_s``."""
    if cfg.band == 24:
        return si_reads_per_dce(cfg.scan_exptime_mips_s)
    return ge_reads_per_dce(cfg.scan_exptime_mips_s)


def scan_cadence_s(cfg) -> float:
    """Time from one DCE's start to the next's within a leg, s (integration + flyback)."""
    return dce_nreads(cfg) * band_spec(cfg.band).read_time_s + cfg.scan_flyback_s


def dces_per_leg(cfg) -> int:
    """DCEs per leg: how many advances of ``rate x cadence`` fit in the scanned length (>= 1)."""
    scanned = 60.0 * (cfg.scan_leg_arcmin + cfg.scan_overscan_arcmin)
    advance = cfg.scan_rate_arcsec_s * scan_cadence_s(cfg)
    return max(1, math.floor(scanned / advance))


def leg_layout(cfg) -> list[ScanStep]:
    """Every DCE of the map in time order: legs alternating direction, centred on the target."""
    n, cadence = dces_per_leg(cfg), scan_cadence_s(cfg)
    advance = cfg.scan_rate_arcsec_s * cadence
    leg_time = n * cadence + cfg.scan_turnaround_s
    steps = []
    for leg in range(cfg.scan_legs):
        direction = 1 if leg % 2 == 0 else -1
        cross = (leg - 0.5 * (cfg.scan_legs - 1)) * cfg.scan_step_arcsec
        for j in range(n):
            steps.append(ScanStep(index=len(steps), leg=leg, direction=direction,
                                  along_arcsec=direction * (j - 0.5 * (n - 1)) * advance,
                                  cross_arcsec=cross, t_start_s=leg * leg_time + j * cadence))
    return steps


def map_footprint(cfg) -> tuple[float, float]:
    """Half-extents (along, cross) of the region the DCE centres span, arcsec.

    Along the scan: half the span of a leg's DCE centres; across: half the
    span of the legs.  The sky the arrays see reaches further by half an array.
    """
    n = dces_per_leg(cfg)
    half_along = 0.5 * (n - 1) * cfg.scan_rate_arcsec_s * scan_cadence_s(cfg)
    return half_along, 0.5 * (cfg.scan_legs - 1) * cfg.scan_step_arcsec


def offsets_to_sky(cfg, along_arcsec, cross_arcsec) -> SkyCoord:
    """Sky position of offsets from the map centre along the array's y (along) and x (cross) axes.

    Offsets are in the tangent plane of the map centre, in the frame of the
    array at ``cfg.pa_deg`` (the telescope keeps its roll through the AOR).
    """
    pix = band_spec(cfg.band).pixel_arcsec
    base = WCS(array_wcs(cfg.band, (cfg.ra_deg, cfg.dec_deg), cfg.pa_deg, distortion=False))
    crpix = REFERENCE_PIXEL[cfg.band]
    return base.pixel_to_world(crpix[0] - 1 + cross_arcsec / pix, crpix[1] - 1 + along_arcsec / pix)


def in_scan_coverage(cfg) -> float:
    """Fraction of a leg's sky that the array's filled rows see (1: gap-free; < 1 at 160 um fast).

    The filled in-scan depth (``FILLED_PIX`` y times the pixel size) over the
    advance per DCE, capped at 1.
    """
    depth = FILLED_PIX[cfg.band][1] * band_spec(cfg.band).pixel_arcsec
    return min(1.0, depth / (cfg.scan_rate_arcsec_s * scan_cadence_s(cfg)))


def _scan_vector(pa_deg: float) -> tuple[float, float]:
    """Unit vector (east, north) of the array's +y axis at position angle ``pa_deg``."""
    pa = math.radians(pa_deg)
    return math.sin(pa), math.cos(pa)


def _numbering(cfg, index: int, nreads: int) -> tuple[bool, int, int, int]:
    """(stim, EXPID, DCENUM, reads) of DCE ``index`` (see "Numbering" in the module notes)."""
    if cfg.band == 24:
        n = max(nreads - cfg.first_dce_fewer_reads, 2) if index == 0 else nreads
        return False, 0, index, n
    stim = index % cfg.stim_cycle == cfg.stim_cycle - 1
    return stim, index // cfg.stim_cycle, index % cfg.stim_cycle, nreads


def plan_scan(cfg) -> list[DCEPlan]:
    """DCE sequence of the scan map described by ``cfg`` (:class:`~mipssim.config.SimConfig`).

    Parameters
    ----------
    cfg : SimConfig
        ``mode`` is not checked: the ``scan_*`` parameters, band, target,
        ``pa_deg``, ``stim_cycle`` and the pointing jitter describe the map.

    Returns
    -------
    list of DCEPlan
        In time order; each WCS is the boresight at mid-DCE plus jitter, with
        ``smear_arcsec`` the residual trail, ``csm_ramp_arcsec`` the mirror's
        sweep and ``csm_arcsec`` (``CSM_PRED``) its mid-DCE position, 0.
    """
    nreads = dce_nreads(cfg)
    t_exp = nreads * band_spec(cfg.band).read_time_s
    east, north = _scan_vector(cfg.pa_deg)
    steps = leg_layout(cfg)
    along = np.array([s.along_arcsec for s in steps])
    cross = np.array([s.cross_arcsec for s in steps])
    if cfg.scan_array_offset_arcsec is not None:       # the array's centre, not the boresight
        along = along + cfg.scan_array_offset_arcsec[0]
        cross = cross + cfg.scan_array_offset_arcsec[1]
    centres = offsets_to_sky(cfg, along, cross)
    offsets = [pointing_jitter(cfg, step.index) for step in steps]
    if any(any(o) for o in offsets):
        east_north = np.array(offsets).T * u.arcsec
        centres = centres.spherical_offsets_by(east_north[0], east_north[1])
    template = array_wcs(cfg.band, (cfg.ra_deg, cfg.dec_deg), cfg.pa_deg)   # SIP terms: once
    ra, dec = centres.ra.deg, centres.dec.deg
    plans = []
    for step, offset in zip(steps, offsets):
        rate = step.direction * cfg.scan_rate_arcsec_s        # along the array's +y
        stim, expid, dcenum, n = _numbering(cfg, step.index, nreads)
        trail = cfg.scan_smear_fraction * rate * t_exp
        plans.append(DCEPlan(
            index=step.index, expid=expid, dcenum=dcenum, t_start_s=step.t_start_s, stim=stim,
            dither=(0.0, 0.0), wcs_template=template,
            crval=(float(ra[step.index]), float(dec[step.index])),
            nreads=n, csm_arcsec=0.0, pointing_offset_arcsec=offset,
            smear_arcsec=(trail * east, trail * north), scan_leg=step.leg,
            scan_rate_arcsec_s=rate, csm_ramp_arcsec=-(1.0 - cfg.scan_smear_fraction) * rate * t_exp))
    return with_header_errors(cfg, plans)
