"""24 um raw -> BCD pipeline for one observation folder.

Reads ``obs_dir/raw/SPITZER_M1_*_raw.fits`` (on-board slope + difference
image), applies :func:`reprocess.si_bcd.calibrate_si` to every DCE, flags
latents over the DCE sequence and writes ``bcd/*_bcd.fits``, ``_bunc`` and
``_bbmsk``.  DCENUM 0 is not calibrated well enough to use (MOPEX omits it
[HB /95]) and gets no BCD unless ``keep_first_frame``.

Memory: every DCE is calibrated on its own and the latent flags need only the
bright masks of the last ``window`` seconds, so the folder is read twice: once
for the checks and the time order (:func:`reprocess.io.read_all` keeps a ~1 kB
summary per DCE), then DCE by DCE in time order (the bytes checked against the
first reading).  The peak memory does not grow with the number of DCEs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.bitmask import BBMSK
from calibration.configuration import ConfigError, check_ranges
from calibration.products import SiProducts, load_si_products

from .io import (bcd_header, raw_files, read_all, read_raw_si, reread, software, staged_output,
                 write_bcd_set)
from .si_bcd import CORRECTIONS, LatentTracker, calibrate_si

__all__ = ["SiConfig", "reprocess_si", "calibrate_dce"]

log = logging.getLogger(__name__)


@dataclass
class SiConfig:
    """24 um reprocessing parameters."""

    keep_first_frame: bool = False
    off: tuple = ()                        # corrections to skip (names in si_bcd.CORRECTIONS)
    latent_threshold_dn_s: float = 3000.0  # a rate above this may leave a latent; UNCONFIRMED
    latent_window_s: float = 40.0          # ~5 decay times of the short-lived latents; UNCONFIRMED
    persistent_latent_threshold_dn_s: float = 2.6e5  # ~18 Jy at a peak pixel: dark latents [HB 7.1]
    persistent_latent_window_s: float = 259200.0     # 3 days: long bright latents last "days"
    persistent_latent_diff_fraction: float = 0.45    # or a first difference above this fraction of
    #   the well: the pixel filled within ~a sample, its rate is beyond what the planes measure
    #   (a 60 Jy source gives ~0.5), so it may have been an 18-50 Jy source; UNCONFIRMED
    products: str | None = None

    def __post_init__(self):
        """Ranges (types are checked by :func:`calibration.configuration.resolve`)."""
        self.off = tuple(self.off)
        bad = set(self.off) - set(CORRECTIONS)
        if bad:
            raise ConfigError("off", f"unknown correction(s) {sorted(bad)}; known: "
                                     f"{', '.join(CORRECTIONS)}")
        check_ranges(self, positive=("latent_window_s", "persistent_latent_window_s"),
                     nonnegative=("latent_threshold_dn_s", "persistent_latent_threshold_dn_s"),
                     fraction=("persistent_latent_diff_fraction",))


def calibrate_dce(dce, products: SiProducts, off=()):
    """(bcd, unc, mask) of a raw 24 um DCE read by :func:`reprocess.io.read_raw_si`."""
    h = dce.header
    return calibrate_si(dce.reads[0], dce.reads[1], nreads=dce.nreads,
                        read_time=dce.samptime, dcenum=int(h["DCENUM"]),
                        csm_arcsec=float(h["CSM_PRED"]), sat_threshold=float(h["SATTHDIF"]),
                        products=products, off=off)


def reprocess_si(obs_dir: str | os.PathLike, *, config: SiConfig | None = None,
                 products: SiProducts | None = None, keep_going: bool = False,
                 overwrite: bool = False, progress=None, on_commit=None, paths=None, stage=None):
    """Turn ``obs_dir/raw`` (24 um) into ``obs_dir/bcd``; returns a ReprocessReport.

    ``on_commit(stage, report)``, ``paths`` and ``stage`` as in
    :func:`reprocess.ge_pipeline.reprocess_ge`.
    """
    from .ge_pipeline import ReprocessReport
    cfg = config or SiConfig()
    obs = Path(obs_dir)
    paths = raw_files(obs) if paths is None else list(paths)
    bcd_dir = obs / "bcd"
    report = ReprocessReport(out_dir=bcd_dir)
    output = staged_output(bcd_dir, overwrite) if stage is None else nullcontext(stage)
    with output as stage:  # noqa: PLR1704 -- a multi-array run's staging folder, or our own
        dces = read_all(paths, read_raw_si, keep_going=keep_going, failures=report.failures, band=24,
                        keep_data=False)
        prod = products or load_si_products(cfg.products)
        latents = LatentTracker(threshold_dn_s=cfg.latent_threshold_dn_s, window_s=cfg.latent_window_s)
        persistent = LatentTracker(threshold_dn_s=cfg.persistent_latent_threshold_dn_s,
                                   window_s=cfg.persistent_latent_window_s)
        for i, summary in enumerate(dces):
            dce = reread(summary)
            t_s, rate = dce.mjd_mid * 86400.0, dce.reads[0] / dce.samptime
            image, unc, mask = calibrate_dce(dce, prod, cfg.off)
            latent = latents.update(t_s, rate)
            unmeasurable = ((mask & BBMSK["SATURATED_HARD"]) != 0) | (
                dce.reads[1] >= cfg.persistent_latent_diff_fraction * prod.saturation_dn)
            lasting = persistent.update(t_s, rate, unmeasurable)
            if int(dce.header["DCENUM"]) == 0 and not cfg.keep_first_frame:
                log.info("%s: DCENUM 0 dropped (first-frame effect)", dce.path.name)
                continue
            mask[latent] |= BBMSK["LATENT"]
            mask[lasting] |= BBMSK["PERSISTENT_LATENT"]
            cards = bcd_header(dce, {
                "FLUXCONV": (prod.fluxconv, "[MJy/sr per DN/s] flux conversion"),
                "FLUXERR": (float(prod.error("fluxconv")), "[MJy/sr per DN/s] its 1 sigma (systematic)"),
                "CALID": (prod.calid, "calibration product set"),
                "CALFILE": (str(prod.meta.get("path", "")), "its file ('' if given in memory)"),
                "CREATOR": (software(), "software that made this file"),
                "CORROFF": (",".join(cfg.off) or "none", "corrections switched off")})
            cards += [("HISTORY", f"reprocess config {k} = {v!r}", "")
                      for k, v in dataclasses.asdict(cfg).items()]
            write_bcd_set(dce, cards, (("bcd", image.astype(np.float32), "MJy/sr"),
                                       ("bunc", unc.astype(np.float32), "MJy/sr"),
                                       ("bbmsk", mask.astype(np.int32), "")), stage)
            report.n_bcd += 1
            if progress is not None:
                progress(i + 1, len(dces))
        if on_commit is not None:
            on_commit(stage, report)
    log.info("wrote %d 24 um BCDs to %s", report.n_bcd, bcd_dir)
    return report
