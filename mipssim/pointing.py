"""Photometry-mode observation plan: DCE timing, scan-mirror dithers and stim flashes.

A photometry AOR is a sequence of DCEs at a fixed telescope pointing; the scan
mirror steps the array between dither positions (pattern UNCONFIRMED:
``SimConfig.dither_pix``, in array pixels).  A stim flash DCE follows every
``stim_cycle - 1`` sky DCEs, at the scan-mirror position of the DCE before it
so that DCE measures the stim's background (as in the 160 um sequence
"image -> stim image" [HB 3.1.5 /25]).  EXPID counts stim cycles and DCENUM
the DCE within one, so ``DCENUM mod stim_cycle`` is the cycle position of the
SSC's scan-mirror reconstruction [mips-facts 8.3].
"""
from __future__ import annotations

from dataclasses import dataclass

from astropy.io import fits
from astropy.wcs import WCS

from calibration.geometry import REFERENCE_PIXEL, array_wcs
from calibration.instrument import band_spec, ge_reads_per_dce, si_reads_per_dce

__all__ = ["DCEPlan", "plan_photometry"]


@dataclass(frozen=True)
class DCEPlan:
    """One DCE of the plan."""

    index: int          # position in the AOR
    expid: int
    dcenum: int
    t_start_s: float    # since the AOR start
    stim: bool
    dither: tuple[float, float]   # (dx, dy) array pixels
    wcs_header: fits.Header
    nreads: int
    csm_arcsec: float = 0.0       # scan-mirror offset along the array's y axis (CSM_PRED)

    @property
    def wcs(self) -> WCS:
        """Celestial WCS of the DCE."""
        return WCS(self.wcs_header)


def plan_photometry(cfg) -> list[DCEPlan]:
    """DCE sequence of a photometry AOR described by ``cfg`` (:class:`~mipssim.config.SimConfig`).

    At 24 um there is no stim; the AOR starts with two extra frames at the first
    position [aotintro], DCENUM counts every DCE of the AOR (the first-frame
    effect depends on it) and DCENUM 0 is ``first_dce_fewer_reads`` reads shorter.
    """
    spec = band_spec(cfg.band)
    si = cfg.band == 24
    nreads = si_reads_per_dce(cfg.exptime_mips_s) if si else ge_reads_per_dce(cfg.exptime_mips_s)
    cadence = nreads * spec.read_time_s + cfg.overhead_s
    base = WCS(array_wcs(cfg.band, (cfg.ra_deg, cfg.dec_deg), cfg.pa_deg, distortion=False))
    crpix = REFERENCE_PIXEL[cfg.band]
    plans: list[DCEPlan] = []
    n_sky = 0
    dither = tuple(cfg.dither_pix[0])
    for i in range(cfg.n_dce):
        stim = not si and i % cfg.stim_cycle == cfg.stim_cycle - 1
        if not stim:
            position = max(i - 2, 0) if si else n_sky      # 24 um: two extra frames at position 0
            dither = tuple(float(v) for v in cfg.dither_pix[position % len(cfg.dither_pix)])
            n_sky += 1
        # the target lands at CRPIX - dither: point the reference pixel at the shifted sky position
        sky = base.pixel_to_world(crpix[0] - 1 + dither[0], crpix[1] - 1 + dither[1])
        hdr = array_wcs(cfg.band, (sky.ra.deg, sky.dec.deg), cfg.pa_deg)
        if si:
            expid, dcenum = 0, i
            n = nreads - (cfg.first_dce_fewer_reads if i == 0 else 0)
        else:
            expid, dcenum, n = i // cfg.stim_cycle, i % cfg.stim_cycle, nreads
        plans.append(DCEPlan(index=i, expid=expid, dcenum=dcenum, t_start_s=i * cadence, stim=stim,
                             dither=dither, wcs_header=hdr, nreads=n,
                             csm_arcsec=dither[1] * spec.pixel_arcsec))
    return plans
