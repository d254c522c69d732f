"""Simulate one Ge photometry observation (AOR): raw DCE files plus ``truth.h5``.

``simulate(cfg, out_dir)`` walks the DCE plan in time order: render the sky
through the DCE's WCS, add the stim flash and the dark, run the read-by-read
detector physics, write the raw file and record the truth.  The result only
depends on ``cfg`` (seed included): the same configuration gives
bit-identical files.
"""
from __future__ import annotations

import logging
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from calibration.instrument import ge_reads_per_dce

from .config import SimConfig, to_toml
from .detector import default_detector
from .ge_ga import STREAMS, CRState, DriftModel, simulate_ramps
from .pointing import plan_photometry
from .scene import make_scene
from .writers import TruthWriter, raw_name, write_raw

__all__ = ["simulate", "software_version"]

log = logging.getLogger(__name__)


def software_version() -> str:
    """Version string of this toolkit."""
    try:
        return f"mips-toolkit {version('mips-toolkit')}"
    except PackageNotFoundError:
        return "mips-toolkit (not installed)"


def _ramp_starts(band: int, nreads: int) -> np.ndarray:
    """First read of each ramp: one ramp, or two at 160 um for 10 MIPS-s DCEs [HB 2.4.3 /14]."""
    starts = np.zeros(nreads, dtype=bool)
    starts[0] = True
    if band == 160 and nreads == 80:
        starts[nreads // 2] = True
    return starts


def _raw_header(cfg: SimConfig, plan, spec, nreads: int, nramps: int, mjd: float) -> fits.Header:
    hdr = fits.Header()
    hdr["TELESCOP"] = "Spitzer"
    hdr["INSTRUME"] = "MIPS"
    hdr["CHNLNUM"] = (spec.chnlnum, "1=24um, 2=70um, 3=160um")
    hdr["AORKEY"] = (cfg.aorkey, "AOR key")
    hdr["EXPID"] = (plan.expid, "exposure id")
    hdr["DCENUM"] = (plan.dcenum, "DCE number within the exposure")
    hdr["AOT_TYPE"] = ("MipsPhot", "observation template")
    hdr["EXPTYPE"] = ("pht", "exposure type")
    hdr["FOVNAME"] = f"MIPS_{cfg.band}um_default_small_FOV1"
    hdr["SAMPTIME"] = (spec.read_time_s, "[s] time between reads")
    hdr["EXPTIME"] = (nreads * spec.read_time_s, "[s] effective integration time")
    hdr["NRAMPS"] = (nramps, "ramps (resets) in this DCE")
    hdr["MJD_OBS"] = (mjd, "[d] MJD at DCE start")
    hdr["DATE_OBS"] = (Time(mjd, format="mjd").isot, "UTC at DCE start")
    hdr["STIMFLSH"] = (bool(plan.stim), "T if the stim flash is on in this DCE")
    hdr["BUNIT"] = "DN"
    hdr.update(plan.wcs_header)
    hdr["ORIGIN"] = "mipssim"
    hdr["CREATOR"] = software_version()
    hdr["SIMSEED"] = (cfg.seed, "mipssim seed")
    return hdr


def simulate(cfg: SimConfig, out_dir: str | Path, *, overwrite: bool = False,
             progress=None) -> Path:
    """Simulate the observation ``cfg`` into ``out_dir`` (``raw/`` and ``truth.h5``).

    Parameters
    ----------
    cfg : SimConfig
    out_dir : path
        Created if needed; refuses to replace an existing observation unless ``overwrite``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each DCE.

    Returns
    -------
    Path of ``out_dir``.
    """
    out = Path(out_dir)
    raw_dir = out / "raw"
    if (out / "truth.h5").exists() or (raw_dir.exists() and any(raw_dir.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out}: already holds an observation (use --overwrite)")
        shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True, exist_ok=True)

    detector = default_detector(cfg.band, read_noise_dn=cfg.read_noise_dn)
    spec = detector.spec
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
    streams = {name: np.random.default_rng(s) for name, s in zip(STREAMS, seeds)}
    scene = make_scene(cfg, streams["scene"])
    drift = DriftModel.draw(streams["drift"], rms=cfg.drift_rms, min_period_s=cfg.drift_min_period_s,
                            max_period_s=cfg.drift_max_period_s)
    plans = plan_photometry(cfg)
    nreads = ge_reads_per_dce(cfg.exptime_mips_s)
    starts = _ramp_starts(cfg.band, nreads)
    cr_state = CRState(np.zeros(spec.shape))
    dark_dn_s = detector.dark_mips * spec.stim_dn_s * detector.stim_pattern
    stim_dn_s = spec.stim_dn_s * detector.stim_pattern
    flux_dn_s = spec.dn_s_per_mjysr * detector.flat

    truth = TruthWriter(out / "truth.h5", seed=cfg.seed, config_toml=to_toml(cfg),
                        software=software_version())
    try:
        truth.add_sources(scene.sources)
        prev_end = 0.0
        for plan in plans:
            cr_state.relax(plan.t_start_s - prev_end, cfg.cr_resp_tau_s)
            t_reads = plan.t_start_s + spec.read_time_s * np.arange(1, nreads + 1)
            prev_end = t_reads[-1]
            sky = scene.render(plan.wcs, spec.shape)
            current = flux_dn_s * sky
            if cfg.include_dark:
                current = current + dark_dn_s
            if plan.stim and cfg.include_stim:
                current = current + stim_dn_s
            ramp = simulate_ramps(current, t_reads_s=t_reads, ramp_starts=starts, detector=detector,
                                  cfg=cfg, drift=drift, cr_state=cr_state, streams=streams)
            mjd = cfg.mjd_start + plan.t_start_s / 86400.0
            name = raw_name(spec.chnlnum, cfg.aorkey, plan.expid, plan.dcenum)
            write_raw(raw_dir / name, ramp.raw,
                      _raw_header(cfg, plan, spec, nreads, int(starts.sum()), mjd))
            truth.add_dce(name[: -len("_raw.fits")], sky_mjysr=sky, slope_dn_s=ramp.slope_dn_s,
                          cr_events=ramp.cr_events, responsivity=ramp.responsivity,
                          attrs={"stim": bool(plan.stim), "t_start_s": plan.t_start_s,
                                 "mjd_obs": mjd, "read_time_s": spec.read_time_s,
                                 "gain_e_per_dn": cfg.gain_e_per_dn or spec.gain_e_per_dn})
            if progress is not None:
                progress(plan.index + 1, len(plans))
        truth.add_array("detector/read_noise_dn", detector.read_noise)
        truth.add_array("detector/pmask", detector.pmask)
        truth.add_array("detector/flat", detector.flat)
        truth.add_array("detector/stim_pattern", detector.stim_pattern)
        truth.add_array("detector/enl_beta", detector.enl_beta)
    except BaseException:
        truth.abort()
        raise
    truth.close()
    log.info("simulated %d DCEs of band %d into %s", len(plans), cfg.band, out)
    return out
